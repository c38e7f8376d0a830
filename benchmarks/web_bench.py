"""Benchmark of the web view: the runs table at 10,000 and 50,000 runs, and chart data
for a metric of 10,000,000 points.

    python benchmarks/web_bench.py [--runs 10000 50000] [--points 10000000] [--workdir DIR]

Stores are generated once into ``--workdir`` (default: a temp folder kept between runs)
and reused. Each measurement starts a fresh ``evtrack ui`` process, so "cold" means
what a person meets first: the server reading the store. Times:

* **table, first render**: navigation start to ``DOMContentLoaded`` in headless
  Chromium (the rows are in the server's HTML);
* **table, interactive**: until the page's script has attached (``data-ready``), i.e.
  sorting, selection and keyboard work;
* sort / filter / next page: the same, for a click on a header, a filter, page 2;
* **chart data**: one ``/-/runs/<id>/metric`` request as a chart sends it (1,200 px
  wide), cold and warm, and a zoomed request.

Raw stores hold one segment per run (what thousands of separate processes leave);
compacted ones went through ``evtrack.store.log.compaction.compact_experiment`` (what a run's
end does by default). Targets (issue 5): 10,000-run table interactive < 1 s, 10 M-point
chart data < 0.3 s. Without Chromium only the HTTP times are reported.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from test_web_seed import UIProcess  # noqa: E402 - tests/ is on the path only now


def runs_store(workdir: Path, n: int, compacted: bool) -> tuple[str, str]:
    from test_web_seed import seed_many_runs

    raw = workdir / f"runs-{n}"
    if not (raw / "done.json").exists():
        shutil.rmtree(raw, ignore_errors=True)
        started = time.perf_counter()
        experiment_id = seed_many_runs(str(raw), n, metrics=5, params=5)
        (raw / "done.json").write_text(json.dumps({"experiment_id": experiment_id}))
        print(f"  generated {n} runs in {time.perf_counter() - started:.0f} s", flush=True)
    experiment_id = json.loads((raw / "done.json").read_text())["experiment_id"]
    if not compacted:
        return str(raw), experiment_id
    target = workdir / f"runs-{n}-compacted"
    if not (target / "done.json").exists():
        from evtrack.store.log.compaction import compact_experiment
        from evtrack.store.log.layout import get_store

        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(raw, target)
        started = time.perf_counter()
        compact_experiment(get_store(str(target)), experiment_id)
        print(f"  compacted {n} runs in {time.perf_counter() - started:.0f} s", flush=True)
    return str(target), experiment_id


def series_store(workdir: Path, n: int) -> tuple[str, str, str]:
    import numpy as np

    from evtrack.tracking.client import MlflowClient

    target = workdir / f"series-{n}"
    if not (target / "done.json").exists():
        shutil.rmtree(target, ignore_errors=True)
        client = MlflowClient(str(target))
        experiment_id = client.create_experiment("long")
        big = client.create_run(experiment_id, run_name="long").info.run_id
        small = client.create_run(experiment_id, run_name="short").info.run_id
        rng = np.random.default_rng(0)
        values = np.cumsum(rng.normal(size=n)) * 0.01
        values[n // 3] += 100.0
        client.log_metric_series(big, "loss", values, np.arange(n))
        client.log_metric_series(small, "loss", values[:1000], np.arange(1000))
        for run_id in (big, small):
            client.set_terminated(run_id)
        client.flush()
        done = {"big": big, "small": small, "max": float(values.max())}
        (target / "done.json").write_text(json.dumps(done))
    ids = json.loads((target / "done.json").read_text())
    return str(target), ids["big"], ids["small"], ids.get("max")


def browser_times(page, url: str) -> tuple[float, float]:
    """(first render, interactive) in seconds for a navigation to ``url``."""
    page.goto(url, wait_until="domcontentloaded", timeout=600_000)
    page.wait_for_selector(".runs-page[data-ready='1']", timeout=600_000)
    timing = page.evaluate(
        "() => [performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd,"
        " window.evtrack.readyAt]"
    )
    return timing[0] / 1000, timing[1] / 1000


def bench_table(workdir: Path, n: int, compacted: bool, browser) -> dict:
    uri, experiment_id = runs_store(workdir, n, compacted)
    ui = UIProcess(uri)
    out: dict = {"runs": n, "store": "compacted" if compacted else "raw segments"}
    try:
        base = f"{ui.url}/experiments/{experiment_id}"
        if browser is None:
            out["cold_http_s"], _ = ui.get(f"/experiments/{experiment_id}")
            warm = [ui.get(f"/experiments/{experiment_id}")[0] for _ in range(5)]
            out["warm_http_s"] = statistics.median(warm)
            return out
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        out["cold_render_s"], out["cold_interactive_s"] = browser_times(page, base)
        warm = [browser_times(page, base) for _ in range(5)]
        out["warm_render_s"] = statistics.median(w[0] for w in warm)
        out["warm_interactive_s"] = statistics.median(w[1] for w in warm)
        for label, query in [
            ("sort_by_metric_s", "?sort=-metrics.m0"),
            ("sort_by_param_s", "?sort=params.p1"),
            ("filter_s", "?filter=metrics.m0 < 0.5 and params.p1 = '0.1'"),
            ("page_50_s", "?page=50&per_page=100"),
        ]:
            out[label] = statistics.median(browser_times(page, base + query)[1] for _ in range(3))
        rows = page.eval_on_selector_all("#runs-body tr", "rs => rs.length")
        out["rows_on_page"] = rows
        page.close()
    finally:
        ui.stop()
    return out


def bench_chart(workdir: Path, n: int) -> dict:
    uri, big, small, top = series_store(workdir, n)
    ui = UIProcess(uri)
    try:
        path = "/-/runs/{}/metric?key=loss&width=1200"
        cold, body = ui.get(path.format(big))
        data = json.loads(body)
        warm = statistics.median(ui.get(path.format(big))[0] for _ in range(5))
        lo, hi = n // 3 - n // 100, n // 3 + n // 100
        zoom = statistics.median(
            ui.get(path.format(big) + f"&lo={lo}&hi={hi}")[0] for _ in range(5)
        )
        rel = statistics.median(ui.get(path.format(big) + "&x=relative")[0] for _ in range(3))
        ui.get(path.format(small))
        small_warm = statistics.median(ui.get(path.format(small))[0] for _ in range(5))
        return {
            "points": n,
            "points_sent": len(data["x"]),
            "spike_kept": max(y for y in data["y"] if y is not None) == top,
            "cold_s": cold,
            "warm_s": warm,
            "zoomed_warm_s": zoom,
            "relative_time_warm_s": rel,
            "1000_points_warm_s": small_warm,
        }
    finally:
        ui.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, nargs="*", default=[10_000, 50_000])
    parser.add_argument("--points", type=int, default=10_000_000)
    parser.add_argument(
        "--workdir", default=os.path.join(tempfile.gettempdir(), "evtrack-web-bench")
    )
    parser.add_argument("--no-browser", action="store_true")
    parser.add_argument(
        "--raw", action="store_true", help="also time stores that were never compacted"
    )
    args = parser.parse_args()
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    results: dict = {"tables": [], "chart": None}

    browser = None
    pw = None
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not args.no_browser and os.path.exists(chromium):
        try:
            from playwright.sync_api import sync_playwright

            pw = sync_playwright().start()
            browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        except ImportError:
            print("playwright not installed: HTTP times only")
    try:
        print(f"chart data, {args.points:,} points", flush=True)
        results["chart"] = bench_chart(workdir, args.points)
        print(json.dumps(results["chart"], indent=2), flush=True)
        for n in args.runs:
            for compacted in [True, False] if args.raw else [True]:
                print(f"runs table, {n:,} runs, {'compacted' if compacted else 'raw'}", flush=True)
                result = bench_table(workdir, n, compacted, browser)
                results["tables"].append(result)
                print(json.dumps(result, indent=2), flush=True)
    finally:
        if browser is not None:
            browser.close()
            pw.stop()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
