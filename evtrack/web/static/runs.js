// The runs table: selection (kept in the URL), folding of nested runs, keyboard
// navigation, and live refresh from the page's JSON twin.
(function () {
  "use strict";
  const ev = window.evtrack;
  const page = document.querySelector(".runs-page");
  if (!page) return;
  const body = document.getElementById("runs-body");
  const table = document.getElementById("runs");
  const data = JSON.parse(document.getElementById("page-data").textContent);
  const columns = data.columns.map((id) => {
    const dot = id.indexOf(".");
    return { id, kind: id.slice(0, dot), key: id.slice(dot + 1) };
  });
  const selected = new Set(data.selected);
  const expanded = new Set();
  let version = page.dataset.version;

  const runUrl = (id) => page.dataset.runUrl.replace("RUN_ID", encodeURIComponent(id));
  const jsonUrl = (params) => ev.withParams(Object.assign({ format: "json", sel: null }, params || {}));
  const rows = () => Array.from(body.querySelectorAll("tr[data-run-id]"));

  // -- selection ----------------------------------------------------------------------

  function syncSelection() {
    const ids = Array.from(selected);
    const joined = ids.join(",");
    history.replaceState(history.state, "", ev.withParams({ sel: joined }));
    document.getElementById("selection").textContent = `${ids.length} selected`;
    const compare = document.getElementById("compare");
    compare.href = ev.withParams({ runs: joined }, page.dataset.compareUrl);
    if (ids.length >= 2) compare.removeAttribute("aria-disabled");
    else compare.setAttribute("aria-disabled", "true");
    for (const a of document.querySelectorAll("a.keep-sel")) a.href = ev.withParams({ sel: joined }, a.href);
    for (const form of document.querySelectorAll("form[method=get]")) {
      if (!form.querySelector("[name=col], [name=filter]")) continue;
      let input = form.querySelector("input[type=hidden][name=sel]");
      if (!input && ids.length) {
        input = ev.el("input", { type: "hidden", name: "sel" });
        form.append(input);
      }
      if (input) input.value = joined;
    }
    for (const tr of rows()) {
      const on = selected.has(tr.dataset.runId);
      tr.classList.toggle("is-selected", on);
      const box = tr.querySelector("td.sel input");
      if (box) box.checked = on;
    }
  }

  body.addEventListener("change", (e) => {
    const box = e.target.closest("td.sel input");
    if (!box) return;
    if (box.checked) selected.add(box.value);
    else selected.delete(box.value);
    syncSelection();
  });
  document.getElementById("select-page").addEventListener("change", (e) => {
    for (const tr of rows()) {
      if (e.target.checked) selected.add(tr.dataset.runId);
      else selected.delete(tr.dataset.runId);
    }
    syncSelection();
  });
  document.getElementById("clear-selection").addEventListener("click", () => {
    selected.clear();
    document.getElementById("select-page").checked = false;
    syncSelection();
  });

  // -- rows from JSON (the same markup as runs.html) --------------------------------------

  function renderRow(r, depth) {
    const tr = ev.el("tr", { dataset: { runId: r.run_id, depth: String(depth) }, tabindex: "-1" });
    if (r.lifecycle_stage === "deleted") tr.className = "deleted";
    const name = r.run_name || r.run_id;
    const box = ev.el("input", { type: "checkbox", value: r.run_id, "aria-label": `Select ${name}` });
    box.checked = selected.has(r.run_id);
    tr.classList.toggle("is-selected", box.checked);
    tr.append(ev.el("td", { className: "sel" }, box));
    const nameCell = ev.el("td", { className: "name" });
    if (r.children) {
      nameCell.append(
        ev.el("button", { type: "button", className: "fold", "aria-expanded": "false", "aria-label": `Show ${r.children} child runs`, dataset: { children: String(r.children) } }, "▸")
      );
    } else {
      nameCell.append(ev.el("span", { className: "fold-space" }));
    }
    nameCell.append(ev.el("a", { href: runUrl(r.run_id) }, name));
    if (r.children) nameCell.append(" ", ev.el("span", { className: "muted kids" }, r.children));
    tr.append(nameCell);
    tr.append(ev.el("td", {}, ev.statusNode(r.status)));
    tr.append(ev.el("td", {}, ev.timeNode(r.start_time)));
    tr.append(ev.el("td", { className: "num" }, ev.fmtDuration(r.duration_ms)));
    tr.append(ev.el("td", { className: "user" }, r.user_id || ""));
    for (const col of columns) {
      const value = r.values[col.id];
      const text = ev.fmtValue(value);
      tr.append(ev.el("td", { className: col.kind === "metrics" ? "num" : "", title: value === undefined || value === null ? null : text }, text));
    }
    return tr;
  }

  // -- folding nested runs -----------------------------------------------------------------

  function descendants(tr) {
    const depth = Number(tr.dataset.depth);
    const out = [];
    for (let next = tr.nextElementSibling; next && Number(next.dataset.depth) > depth; next = next.nextElementSibling) out.push(next);
    return out;
  }

  async function setFolded(tr, open) {
    const button = tr.querySelector(".fold");
    if (!button) return;
    const isOpen = button.getAttribute("aria-expanded") === "true";
    if (open === isOpen) return;
    if (!open) {
      for (const child of descendants(tr)) {
        if (child.dataset.runId) expanded.delete(child.dataset.runId);
        child.remove();
      }
      expanded.delete(tr.dataset.runId);
      button.setAttribute("aria-expanded", "false");
      return;
    }
    button.setAttribute("aria-expanded", "true");
    expanded.add(tr.dataset.runId);
    const res = await ev.fetchJSON(jsonUrl({ parent: tr.dataset.runId, page: 1, per_page: 1000 }));
    const depth = Number(tr.dataset.depth) + 1;
    let after = tr;
    for (const r of res.rows) {
      const row = renderRow(r, depth);
      after.after(row);
      after = row;
    }
    if (res.total > res.rows.length) {
      const filter = `tags.mlflow.parentRunId = '${tr.dataset.runId}'`;
      const more = ev.el("tr", { dataset: { depth: String(depth) }, className: "more-row" },
        ev.el("td", { colspan: String(6 + columns.length) },
          ev.el("a", { href: ev.withParams({ filter, page: null }) }, `All ${res.total} child runs…`)));
      after.after(more);
    }
    ev.localizeTimes(body);
    for (const child of descendants(tr)) {
      if (child.dataset.runId && expanded.has(child.dataset.runId)) {
        const b = child.querySelector(".fold");
        if (b) { b.setAttribute("aria-expanded", "false"); await setFolded(child, true); }
      }
    }
  }

  body.addEventListener("click", (e) => {
    const button = e.target.closest(".fold");
    if (!button) return;
    const tr = button.closest("tr");
    setFolded(tr, button.getAttribute("aria-expanded") !== "true");
  });

  // -- keyboard ------------------------------------------------------------------------------

  function focusRow(tr) {
    if (!tr) return;
    for (const other of body.querySelectorAll("tr[tabindex='0']")) other.tabIndex = -1;
    tr.tabIndex = 0;
    tr.focus();
  }

  table.addEventListener("keydown", (e) => {
    const tr = e.target.closest("tbody tr[data-run-id]");
    if (!tr || e.altKey || e.ctrlKey || e.metaKey) return;
    const list = rows();
    const i = list.indexOf(tr);
    const onRow = e.target === tr;
    switch (e.key) {
      case "ArrowDown": case "j": focusRow(list[Math.min(i + 1, list.length - 1)]); break;
      case "ArrowUp": case "k": focusRow(list[Math.max(i - 1, 0)]); break;
      case "Home": focusRow(list[0]); break;
      case "End": focusRow(list[list.length - 1]); break;
      case "ArrowRight": case "l": setFolded(tr, true); break;
      case "ArrowLeft": case "h": {
        const button = tr.querySelector(".fold");
        if (button && button.getAttribute("aria-expanded") === "true") setFolded(tr, false);
        else {
          const depth = Number(tr.dataset.depth);
          for (let j = i - 1; j >= 0; j--) if (Number(list[j].dataset.depth) < depth) { focusRow(list[j]); break; }
        }
        break;
      }
      case "Enter":
        if (!onRow) return;
        location.href = tr.querySelector("td.name a").href;
        break;
      case " ": case "x": {
        if (!onRow) return;
        const box = tr.querySelector("td.sel input");
        box.checked = !box.checked;
        box.dispatchEvent(new Event("change", { bubbles: true }));
        break;
      }
      default: return;
    }
    e.preventDefault();
  });
  body.addEventListener("focusin", (e) => {
    const tr = e.target.closest("tr[data-run-id]");
    if (tr && e.target === tr) focusRow(tr);
  });

  document.addEventListener("keydown", (e) => {
    const typing = e.target.closest("input, select, textarea, [contenteditable]");
    if (typing || e.altKey || e.ctrlKey || e.metaKey) return;
    const click = (id) => { const a = document.getElementById(id); if (a && a.href) location.href = a.href; };
    if (e.key === "/") { document.getElementById("filter").focus(); e.preventDefault(); }
    else if (e.key === "n") click("next-page");
    else if (e.key === "p") click("prev-page");
    else if (e.key === "c" && selected.size >= 2) click("compare");
  });

  // -- column picker: type to narrow the list ---------------------------------------------

  const pickerFilter = document.querySelector(".picker-filter");
  if (pickerFilter) {
    pickerFilter.addEventListener("input", () => {
      const needle = pickerFilter.value.toLowerCase();
      for (const label of document.querySelectorAll(".picker .pick")) {
        label.hidden = needle && !label.textContent.toLowerCase().includes(needle);
      }
    });
    pickerFilter.addEventListener("keydown", (e) => { if (e.key === "Enter") e.preventDefault(); });
  }

  // -- live refresh --------------------------------------------------------------------------

  async function refresh() {
    const res = await ev.fetchJSON(jsonUrl({}));
    const focusedId = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.runId : null;
    const fresh = res.rows.map((r) => renderRow(r, 0));
    if (fresh.length) body.replaceChildren(...fresh);
    else body.replaceChildren(ev.el("tr", { className: "empty-row" }, ev.el("td", { colspan: String(6 + columns.length) }, "No runs.")));
    if (fresh.length) fresh[0].tabIndex = 0;
    const reopen = Array.from(expanded);
    expanded.clear();
    for (const id of reopen) {
      const tr = body.querySelector(`tr[data-run-id="${CSS.escape(id)}"]`);
      if (tr) await setFolded(tr, true);
    }
    ev.localizeTimes(body);
    const total = document.getElementById("total");
    total.textContent = `${res.total} run${res.total === 1 ? "" : "s"}${res.query.filter ? " match" : ""}`;
    table.setAttribute("aria-rowcount", String(res.total));
    if (focusedId) {
      const tr = body.querySelector(`tr[data-run-id="${CSS.escape(focusedId)}"]`);
      if (tr) focusRow(tr);
    }
    page.dataset.version = res.version;
    ev.liveStatus(`Updated ${ev.fmtTime(Date.now()).slice(11)}`);
  }

  ev.live(page.dataset.changesUrl, async () => {
    const v = await ev.fetchJSON(page.dataset.versionUrl);
    if (v.version === version) return;
    version = v.version;
    await refresh();
  });

  syncSelection();
  page.dataset.ready = "1";
  ev.readyAt = performance.now(); // when the table became interactive (benchmarks read it)
})();
