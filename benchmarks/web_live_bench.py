"""Benchmark of the live web view: from a flush in another process to the point on an
open chart, and the requests an idle page makes.

    python benchmarks/web_live_bench.py [--quick] [--trials 20] [--idle 10] [--tabs 5]

``evtrack ui``'s server (waitress, :func:`evtrack.web.server.make_server`) runs in a
subprocess that prints every request it receives, so requests are counted at the
server. Headless Chromium opens a run page; a writer process logs one point at a time
with ``synchronous=True`` and prints the wall clock when the call returned (the point
is durable); the page records the wall clock when its chart shows the new point. Both
clocks are the same machine's. Figures:

* **flush → on screen**: median and worst of ``--trials`` points (target: < 1 s);
* **idle requests**: requests the server received during ``--idle`` seconds with
  ``--tabs`` run pages open and nothing logged, with live push (target: 0) and, for
  comparison, with push turned off (pages poll every 3 s).

Needs Chromium (``/usr/bin/chromium`` or ``$EVTRACK_CHROMIUM``) and playwright.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from helpers import subprocess_env  # noqa: E402 - tests/ is on the path only now
from required import chromium_path, playwright_sync_api  # noqa: E402
from test_web_live import waitress_server  # noqa: E402

from evtrack.tracking.client import MlflowClient  # noqa: E402

WRITER = """
import sys, time
from evtrack.tracking.client import MlflowClient

client = MlflowClient(sys.argv[1])
run_id = sys.argv[2]
print("ready", flush=True)
for line in sys.stdin:
    step = int(line)
    client.log_metric(run_id, "loss", 1.0 / (step + 1), step=step, synchronous=True)
    print(time.time() * 1000, flush=True)
"""

# Records when the chart's point count changes (dataset.total), in wall-clock ms.
WATCH_CHART = """
() => {
  window.__seen = {};
  const fig = document.querySelector("figure[data-key='loss']");
  new MutationObserver(() => {
    const total = fig.dataset.total;
    if (!(total in window.__seen)) window.__seen[total] = Date.now();
  }).observe(fig, { attributes: true, attributeFilter: ["data-total"] });
}
"""

READY = """
() => { const f = document.querySelector("figure[data-key='loss']");
  return f && f.dataset.ready === '1' && !!window.evtrack.liveMode }
"""


def make_store(workdir: Path) -> tuple[str, str]:
    uri = str(workdir / "store")
    client = MlflowClient(uri)
    exp = client.create_experiment("live-bench")
    run = client.create_run(exp, run_name="training").info.run_id
    client.log_metric(run, "loss", 1.0, step=0)
    client.flush()
    return uri, run


def latency(browser, uri: str, run: str, trials: int) -> list[float]:
    server = waitress_server(uri)
    writer = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(WRITER), uri, run],
        env=subprocess_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout.readline().strip() == "ready"
        page = browser.new_page()
        page.goto(f"{server.url}/runs/{run}")
        page.wait_for_function(READY, timeout=30_000)
        mode = page.evaluate("window.evtrack.liveMode")
        page.evaluate(WATCH_CHART)
        total = int(page.eval_on_selector("figure[data-key='loss']", "f => f.dataset.total"))
        out = []
        for step in range(1, trials + 1):
            writer.stdin.write(f"{step}\n")
            writer.stdin.flush()
            flushed = float(writer.stdout.readline())
            total += 1
            page.wait_for_function(f"() => '{total}' in window.__seen", timeout=30_000)
            shown = page.evaluate(f"window.__seen['{total}']")
            out.append((shown - flushed) / 1000)
            page.wait_for_timeout(200)  # let the page settle between points
        page.close()
        print(f"  live mode on the page: {mode}")
        return out
    finally:
        writer.stdin.close()
        writer.wait(timeout=30)
        server.stop()


def idle_requests(browser, uri: str, run: str, seconds: float, tabs: int, live: bool) -> int:
    server = waitress_server(uri, live=live)
    try:
        pages = [browser.new_page() for _ in range(tabs)]
        for page in pages:
            page.goto(f"{server.url}/runs/{run}")
            page.wait_for_function(READY, timeout=30_000)
        pages[0].wait_for_timeout(1_000)  # stragglers: favicon, prefetches
        before = len(server.requests())
        pages[0].wait_for_timeout(seconds * 1000)
        count = len(server.requests()) - before
        for page in pages:
            page.close()
        return count
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="5 trials, 5 s idle, 3 tabs")
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of idle counting")
    parser.add_argument("--tabs", type=int, default=5)
    args = parser.parse_args()
    if args.quick:
        args.trials, args.idle, args.tabs = 5, 5.0, 3
    sync_api = playwright_sync_api() if _has_browser() else None
    if sync_api is None:
        print("no Chromium/playwright here: nothing to measure")
        return
    with tempfile.TemporaryDirectory() as tmp, sync_api.sync_playwright() as p:
        uri, run = make_store(Path(tmp))
        browser = p.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        print(f"flush -> point on screen, {args.trials} points, one at a time:")
        secs = latency(browser, uri, run, args.trials)
        print(
            f"  median {statistics.median(secs) * 1000:.0f} ms, worst {max(secs) * 1000:.0f} ms, "
            f"best {min(secs) * 1000:.0f} ms (target < 1000 ms)"
        )
        print(f"requests at the server in {args.idle:g} s idle, {args.tabs} run pages open:")
        pushed = idle_requests(browser, uri, run, args.idle, args.tabs, live=True)
        print(f"  live push (SSE):      {pushed} requests")
        polled = idle_requests(browser, uri, run, args.idle, args.tabs, live=False)
        print(f"  push off (poll 3 s):  {polled} requests")
        browser.close()


def _has_browser() -> bool:
    import importlib.util
    import os

    return importlib.util.find_spec("playwright") is not None and os.path.exists(chromium_path())


if __name__ == "__main__":
    main()
