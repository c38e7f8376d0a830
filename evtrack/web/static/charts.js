// Metric charts with uPlot, for the run page (one series) and the compare page (one
// series per run). The server downsamples (M4) to about the chart's pixel width, so
// a chart never holds more than a few thousand points; selecting a range with the
// mouse fetches that range again at full detail, double-click goes back.
(function () {
  "use strict";
  const ev = window.evtrack;
  const root = document.querySelector(".run-page, .compare-page");
  const grid = document.getElementById("charts");
  if (!root || !grid || typeof uPlot === "undefined") return;
  const cfg = JSON.parse(document.getElementById("page-data").textContent);
  const isRun = root.classList.contains("run-page");
  const defs = isRun
    ? cfg.series.map((s) => Object.assign({ start: cfg.start_time }, s))
    : cfg.series.map((id, i) => ({ run_id: id, label: cfg.labels[i] || id, color: cfg.colors[i], start: cfg.start_times[i] }));
  const metricUrl = (runId) => root.dataset.metricUrl.replace("RUN_ID", encodeURIComponent(runId));
  const settings = { x: cfg.charts.x, log: !!cfg.charts.log, smooth: Number(cfg.charts.smooth) || 0 };
  const charts = new Map();
  ev.charts = charts;
  const HEIGHT = 240;

  // -- formatting ----------------------------------------------------------------------

  function compact(v) {
    if (v === null || v === undefined) return "";
    const a = Math.abs(v);
    if (a >= 1e9) return `${+(v / 1e9).toPrecision(3)}G`;
    if (a >= 1e6) return `${+(v / 1e6).toPrecision(3)}M`;
    if (a >= 1e4) return `${+(v / 1e3).toPrecision(3)}k`;
    if (a !== 0 && a < 1e-3) return v.toExponential(1);
    return String(+v.toPrecision(4));
  }
  function xLabel() {
    return { step: "step", relative: "time", wall: "time" }[settings.x];
  }
  function xLegend(v) {
    if (v === null || v === undefined) return "—";
    if (settings.x === "wall") return ev.fmtTime(v * 1000);
    if (settings.x === "relative") return ev.fmtDuration(v * 1000);
    return String(v);
  }
  function themeColors() {
    const cs = getComputedStyle(document.documentElement);
    return { text: cs.getPropertyValue("--muted").trim(), grid: cs.getPropertyValue("--grid").trim() };
  }

  // -- smoothing: exponential moving average, debiased as in TensorBoard -------------------

  function ema(ys, alpha) {
    if (!alpha) return ys;
    const out = new Array(ys.length);
    let last = 0;
    let n = 0;
    for (let i = 0; i < ys.length; i++) {
      const y = ys[i];
      if (y === null || !isFinite(y)) {
        out[i] = null;
        continue;
      }
      last = last * alpha + (1 - alpha) * y;
      n += 1;
      out[i] = last / (1 - Math.pow(alpha, n));
    }
    return out;
  }

  // -- data ------------------------------------------------------------------------------------

  function plotData(chart) {
    const positive = (ys) => (settings.log ? ys.map((y) => (y !== null && y > 0 ? y : null)) : ys);
    const results = chart.results;
    if (defs.length === 1) {
      const r = results[0];
      const data = [r.x, positive(ema(r.y, settings.smooth))];
      if (settings.smooth > 0) data.push(positive(r.y));
      return data;
    }
    const tables = results.map((r) => [r.x, positive(ema(r.y, settings.smooth))]);
    return uPlot.join(tables);
  }

  function describe(chart) {
    const results = chart.results;
    const drawn = results.reduce((n, r) => n + r.x.length, 0);
    const total = results.reduce((n, r) => n + (r.total || 0), 0);
    const down = results.some((r) => r.downsampled);
    const fig = chart.fig;
    fig.dataset.points = String(drawn);
    fig.dataset.total = String(total);
    const fmt = (n) => n.toLocaleString("en-US");
    let text = total === 0 ? "no points" : down ? `${fmt(drawn)} of ${fmt(total)} points` : `${fmt(total)} point${total === 1 ? "" : "s"}`;
    if (chart.range) text += " · zoomed (double-click to reset)";
    const errors = results.filter((r) => r.error).map((r) => r.error);
    if (errors.length) text += ` · ${errors[0]}`;
    fig.querySelector(".chart-info").textContent = text;
  }

  // -- uPlot ---------------------------------------------------------------------------------

  function options(chart) {
    const c = themeColors();
    // Few points: draw them, a line alone would not show a single one.
    const dots = { show: chart.results.every((r) => r.x.length <= 60), size: 5 };
    const axis = { stroke: c.text, grid: { stroke: c.grid, width: 1 }, ticks: { stroke: c.grid, width: 1 } };
    const series = [{ label: xLabel(), value: (u, v) => xLegend(v) }];
    for (const d of defs) {
      series.push({
        label: d.label,
        stroke: d.color,
        width: 1.5,
        spanGaps: false,
        points: dots,
        value: (u, v) => (v === null || v === undefined ? "—" : ev.fmtValue(v)),
      });
    }
    if (defs.length === 1 && settings.smooth > 0) {
      series.push({ label: "raw", stroke: defs[0].color + "55", width: 1, points: { show: false }, value: (u, v) => (v == null ? "—" : ev.fmtValue(v)) });
    }
    return {
      width: Math.max(200, chart.box.clientWidth || 500),
      height: HEIGHT,
      scales: { x: { time: settings.x === "wall" }, y: { distr: settings.log ? 3 : 1 } },
      axes: [
        Object.assign({}, axis, settings.x === "wall" ? {} : { values: (u, splits) => splits.map((v) => (settings.x === "relative" ? ev.fmtDuration(v * 1000) : compact(v))) }),
        Object.assign({}, axis, { size: 62, values: (u, splits) => splits.map(compact) }),
      ],
      series,
      cursor: { drag: { x: true, y: false, setScale: false }, sync: { key: "evtrack-" + settings.x } },
      legend: { live: true },
      hooks: {
        setSelect: [
          (u) => {
            if (u.select.width < 4) return;
            const lo = u.posToVal(u.select.left, "x");
            const hi = u.posToVal(u.select.left + u.select.width, "x");
            u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
            zoom(chart, [lo, hi]);
          },
        ],
      },
    };
  }

  function draw(chart) {
    const data = plotData(chart);
    const few = chart.results.every((r) => r.x.length <= 60);
    const signature = JSON.stringify([settings.x, settings.log, settings.smooth > 0, few]);
    if (chart.plot && chart.signature === signature) {
      chart.plot.setData(data, !chart.range);
    } else {
      if (chart.plot) chart.plot.destroy();
      chart.box.replaceChildren();
      chart.plot = new uPlot(options(chart), data, chart.box);
      chart.signature = signature;
      chart.plot.over.addEventListener("dblclick", () => zoom(chart, null));
    }
    if (chart.range) chart.plot.setScale("x", { min: chart.range[0], max: chart.range[1] });
    describe(chart);
    chart.fig.dataset.ready = "1";
  }

  async function load(chart) {
    const ratio = Math.min(window.devicePixelRatio || 1, 2);
    const width = Math.max(64, Math.round((chart.box.clientWidth || 600) * ratio));
    const [lo, hi] = chart.range || [null, null];
    const seq = (chart.seq = (chart.seq || 0) + 1);
    chart.fig.dataset.loading = "1";
    const results = await Promise.all(
      defs.map((d) =>
        ev
          .fetchJSON(ev.withParams({ key: chart.key, x: settings.x, width, lo, hi }, metricUrl(d.run_id)))
          .catch((e) => ({ error: e.message, x: [], y: [], total: 0 }))
      )
    );
    if (seq !== chart.seq) return; // a newer request (zoom, refresh) superseded this one
    delete chart.fig.dataset.loading;
    chart.results = results;
    draw(chart);
  }

  function zoom(chart, range) {
    chart.range = range;
    return load(chart);
  }

  // -- charts on the page ------------------------------------------------------------------

  const visible = new IntersectionObserver(
    (entries) => {
      for (const entry of entries) {
        if (!entry.isIntersecting) continue;
        const chart = charts.get(entry.target.dataset.key);
        visible.unobserve(entry.target);
        if (chart && !chart.results) load(chart);
      }
    },
    { rootMargin: "300px" }
  );
  const resized = new ResizeObserver((entries) => {
    for (const entry of entries) {
      const chart = charts.get(entry.target.closest(".chart").dataset.key);
      const width = Math.round(entry.contentRect.width);
      if (chart && chart.plot && width > 0 && Math.abs(width - chart.plot.width) > 2) {
        chart.plot.setSize({ width, height: HEIGHT });
      }
    }
  });

  function addChart(fig) {
    const chart = { key: fig.dataset.key, fig, box: fig.querySelector(".chart-box"), range: null, plot: null, results: null };
    charts.set(chart.key, chart);
    visible.observe(fig);
    resized.observe(chart.box);
    return chart;
  }
  for (const fig of grid.querySelectorAll("figure.chart")) addChart(fig);

  function redrawAll(refetch) {
    for (const chart of charts.values()) {
      if (!chart.results) continue;
      if (refetch) load(chart);
      else draw(chart);
    }
  }

  // -- controls (kept in the URL) -------------------------------------------------------------

  function saveSettings() {
    const url = ev.withParams({
      x: settings.x === "step" ? null : settings.x,
      log: settings.log ? 1 : null,
      smooth: settings.smooth ? settings.smooth : null,
    });
    history.replaceState(history.state, "", url);
  }
  const form = document.querySelector("[data-chart-controls]");
  if (form) {
    form.addEventListener("submit", (e) => e.preventDefault());
    form.elements.x.addEventListener("change", () => {
      settings.x = form.elements.x.value;
      for (const chart of charts.values()) {
        chart.range = null;
        if (chart.plot) chart.plot.destroy();
        chart.plot = null;
      }
      saveSettings();
      redrawAll(true);
    });
    form.elements.log.addEventListener("change", () => {
      settings.log = form.elements.log.checked;
      saveSettings();
      redrawAll(false);
    });
    let frame = 0;
    form.elements.smooth.addEventListener("input", () => {
      settings.smooth = Number(form.elements.smooth.value);
      form.elements.smooth_out.value = settings.smooth.toFixed(2);
      cancelAnimationFrame(frame);
      frame = requestAnimationFrame(() => redrawAll(false));
    });
    form.elements.smooth.addEventListener("change", saveSettings);
    form.querySelector("[data-reset-zoom]").addEventListener("click", () => {
      for (const chart of charts.values()) if (chart.range) zoom(chart, null);
    });
  }
  window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => {
    for (const chart of charts.values()) chart.signature = null;
    redrawAll(false);
  });

  // -- live: a running run's charts and latest values --------------------------------------------

  function updateFacts(info) {
    const status = document.getElementById("run-status");
    if (status) status.replaceChildren(ev.statusNode(info.status));
    const end = document.getElementById("run-end");
    if (end) end.replaceChildren(ev.timeNode(info.end_time));
    const duration = document.getElementById("run-duration");
    if (duration) duration.textContent = ev.fmtDuration(info.duration_ms);
  }

  function updateMetricsTable(metrics) {
    const body = document.querySelector("#metrics-table tbody");
    if (!body) return;
    for (const m of metrics) {
      let tr = body.querySelector(`tr[data-key="${CSS.escape(m.key)}"]`);
      const value = ev.fmtValue(m.value);
      if (!tr) {
        const placeholder = body.querySelector("td.muted");
        if (placeholder) placeholder.closest("tr").remove();
        tr = ev.el("tr", { dataset: { key: m.key } }, ev.el("th", { scope: "row" }, m.key), ev.el("td", { className: "num" }), ev.el("td", { className: "num" }));
        body.append(tr);
      }
      const [, valueCell, stepCell] = tr.children;
      if (valueCell.textContent !== value) {
        valueCell.textContent = value;
        stepCell.textContent = String(m.step);
      }
      if (!charts.has(m.key) && !new URL(location.href).searchParams.get("charts")) {
        const fig = ev.el("figure", { className: "chart", dataset: { key: m.key } },
          ev.el("figcaption", {}, ev.el("span", { className: "chart-title" }, m.key), " ", ev.el("span", { className: "chart-info muted", "aria-live": "polite" })),
          ev.el("div", { className: "chart-box" }));
        const none = grid.querySelector(".no-charts");
        if (none) none.remove();
        grid.append(fig);
        addChart(fig);
        const count = document.querySelector(".charts-panel h2 .count");
        if (count) count.textContent = String(charts.size);
      }
    }
  }

  if (isRun) {
    let version = root.dataset.version;
    ev.live(root.dataset.changesUrl, async () => {
      const v = await ev.fetchJSON(root.dataset.versionUrl);
      if (v.version === version) {
        if (v.run.status === "RUNNING") updateFacts(v.run);
        return;
      }
      version = v.version;
      root.dataset.version = v.version;
      updateFacts(v.run);
      updateMetricsTable(v.metrics);
      await Promise.all(Array.from(charts.values()).filter((c) => c.results).map((c) => load(c)));
      ev.liveStatus(`Updated ${ev.fmtTime(Date.now()).slice(11)}`);
    });
    // A running run's duration grows without a request: counted here, from its start.
    const start = Number(cfg.start_time);
    const duration = document.getElementById("run-duration");
    if (duration && isFinite(start) && start > 0) {
      setInterval(() => {
        const status = document.querySelector("#run-status .status");
        if (!document.hidden && status && status.textContent === "RUNNING") {
          duration.textContent = ev.fmtDuration(Math.max(0, Date.now() - start));
        }
      }, 1000);
    }
  }
  root.dataset.ready = "1";
})();
