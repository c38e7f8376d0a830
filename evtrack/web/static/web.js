// evtrack web view: helpers shared by every page.
// Rule: values from the store only ever reach the DOM through textContent and
// attribute setters, never through innerHTML.
(function () {
  "use strict";
  const ev = (window.evtrack = window.evtrack || {});

  ev.pollMs = Number(document.body.dataset.pollMs) || 3000;

  /** el("td", {className: "num", title: "x"}, "text", childNode...) */
  ev.el = function (tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "className") node.className = value;
      else if (key === "dataset") Object.assign(node.dataset, value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  };

  /** The URL ``base`` (default: this page) with some query parameters set or removed. */
  ev.withParams = function (params, base) {
    const url = new URL(base || location.href, location.href);
    for (const [key, value] of Object.entries(params)) {
      if (value === null || value === undefined || value === "") url.searchParams.delete(key);
      else url.searchParams.set(key, String(value));
    }
    return url.pathname + url.search;
  };

  ev.fetchJSON = async function (url) {
    const resp = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
    let body = null;
    try {
      body = await resp.json();
    } catch (e) {
      body = null;
    }
    if (!resp.ok) {
      const err = new Error((body && body.message) || resp.statusText);
      err.status = resp.status;
      err.body = body;
      throw err;
    }
    return body;
  };

  /** Call ``fn`` every ``ms`` while the tab is visible; stop while it is hidden. */
  ev.poll = function (fn, ms) {
    let timer = null;
    let running = false;
    const tick = async () => {
      timer = null;
      if (document.hidden || running) return;
      running = true;
      try {
        await fn();
      } catch (e) {
        ev.liveStatus("Live update failed: " + e.message, false);
      } finally {
        running = false;
      }
      schedule();
    };
    const schedule = () => {
      if (timer === null && !document.hidden) timer = setTimeout(tick, ms);
    };
    document.addEventListener("visibilitychange", () => {
      if (document.hidden) {
        if (timer !== null) clearTimeout(timer);
        timer = null;
      } else if (timer === null) {
        tick();
      }
    });
    ev.polling = () => timer !== null || running;
    schedule();
  };

  /**
   * Run ``fn`` whenever the server pushes a change on the event stream ``url``
   * (Server-Sent Events): an idle page sends no request at all. Calls never overlap;
   * changes that arrive during a call make one more call after it. A hidden tab closes
   * its stream (freeing the server's slot) and catches up when shown again. If the
   * server refuses the stream (503 past its cap, or live updates off), fall back to
   * ``ev.poll(fn, ev.pollMs)``.
   */
  ev.live = function (url, fn) {
    if (!url || typeof EventSource === "undefined") {
      ev.liveMode = "poll";
      return ev.poll(fn, ev.pollMs);
    }
    let running = false;
    let again = false;
    const run = async () => {
      if (running) {
        again = true;
        return;
      }
      running = true;
      try {
        do {
          again = false;
          await fn();
        } while (again);
      } catch (e) {
        ev.liveStatus("Live update failed: " + e.message, false);
      } finally {
        running = false;
      }
    };
    let source = null;
    let opened = false;
    let fallen = false;
    const open = () => {
      source = new EventSource(url);
      ev.liveSource = source;
      source.addEventListener("change", run);
      source.onopen = () => {
        ev.liveMode = "push";
        if (opened) run(); // reconnected: catch up on what happened meanwhile
        opened = true;
      };
      source.onerror = () => {
        if (source.readyState === EventSource.CLOSED && !fallen) {
          fallen = true; // refused for good: the browser will not retry
          source = null;
          ev.liveMode = "poll";
          ev.poll(fn, ev.pollMs);
        }
      };
    };
    document.addEventListener("visibilitychange", () => {
      if (fallen) return;
      if (document.hidden) {
        if (source) source.close();
        source = null;
      } else if (!source) {
        opened = true; // the reopened stream's onopen catches up
        open();
      }
    });
    if (!document.hidden) open();
    else opened = true;
  };

  ev.liveStatus = function (text, fresh) {
    const node = document.getElementById("live");
    if (!node) return;
    node.hidden = false;
    node.textContent = text;
    node.classList.toggle("fresh", fresh !== false);
  };

  const pad = (n, w) => String(n).padStart(w || 2, "0");

  ev.fmtTime = function (ms) {
    if (ms === null || ms === undefined) return "—";
    const d = new Date(Number(ms));
    return (
      `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
      `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`
    );
  };

  /** Same text as the server's fmt_duration. */
  ev.fmtDuration = function (ms) {
    if (ms === null || ms === undefined) return "—";
    ms = Math.max(0, Math.trunc(ms));
    if (ms < 1000) return `${ms}ms`;
    let s = ms / 1000;
    if (s < 60) return `${s.toFixed(1)}s`;
    s = Math.trunc(s);
    let m = Math.trunc(s / 60);
    s %= 60;
    if (m < 60) return `${m}m ${pad(s)}s`;
    let h = Math.trunc(m / 60);
    m %= 60;
    if (h < 48) return `${h}h ${pad(m)}m`;
    const d = Math.trunc(h / 24);
    h %= 24;
    return `${d}d ${pad(h)}h`;
  };

  /** Same text as the server's fmt_value (Python's "%.6g" for floats). */
  ev.fmtValue = function (v) {
    if (v === null || v === undefined) return "";
    if (typeof v !== "number") return String(v);
    if (!isFinite(v)) return isNaN(v) ? "NaN" : v > 0 ? "Infinity" : "-Infinity";
    if (Number.isInteger(v) && Math.abs(v) < 1e15) return String(v);
    const exp = Math.floor(Math.log10(Math.abs(v)));
    if (exp < -4 || exp >= 6) {
      let [mant, e] = v.toExponential(5).split("e");
      if (mant.includes(".")) mant = mant.replace(/0+$/, "").replace(/\.$/, "");
      const sign = e[0] === "-" ? "-" : "+";
      return `${mant}e${sign}${pad(e.replace(/^[-+]/, ""))}`;
    }
    let s = v.toPrecision(6);
    if (s.includes(".")) s = s.replace(/0+$/, "").replace(/\.$/, "");
    return s;
  };

  /** Rewrite server-rendered UTC times in the reader's time zone. */
  ev.localizeTimes = function (root) {
    for (const node of (root || document).querySelectorAll("time[data-ms]")) {
      node.title = node.textContent;
      node.textContent = ev.fmtTime(Number(node.dataset.ms));
    }
  };

  ev.timeNode = function (ms) {
    if (ms === null || ms === undefined) return ev.el("span", { className: "muted" }, "—");
    return ev.el("time", { datetime: new Date(ms).toISOString(), dataset: { ms: String(ms) } }, ev.fmtTime(ms));
  };

  ev.statusNode = function (status) {
    return ev.el("span", { className: `status status-${String(status || "unknown").toLowerCase()}` }, status || "?");
  };

  document.addEventListener("DOMContentLoaded", () => {
    ev.localizeTimes(document);
    for (const select of document.querySelectorAll("select[data-autosubmit]")) {
      select.addEventListener("change", () => select.form.submit());
    }
    // Compare page: show only the rows that differ (kept in the URL).
    const onlyDiff = document.getElementById("only-diff");
    if (onlyDiff) {
      onlyDiff.addEventListener("change", () => {
        document.getElementById("diff").classList.toggle("only-diff", onlyDiff.checked);
        history.replaceState(history.state, "", ev.withParams({ only_diff: onlyDiff.checked ? 1 : null }));
      });
    }
  });
})();
