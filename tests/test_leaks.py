"""Issue 8, bug 8: nothing a client, a store or a web view opens outlives its close.

Threads (the series prefetcher, the store watcher, the writer) stop when their owner is
closed, DuckDB cursors are closed after each read, and a process that opens and closes
each part exits cleanly under ``-X dev -W error::ResourceWarning``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from evtrack.store import registry
from evtrack.tracking.client import MlflowClient
from evtrack.web import create_app

ROOT = Path(__file__).resolve().parents[1]


def _threads(prefix: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(prefix) and t.is_alive()]


@pytest.fixture
def logged(tmp_path):
    uri = str(tmp_path / "store")
    client = MlflowClient(uri)
    run = client.create_run("0")
    for step in range(20):
        client.log_metric(run.info.run_id, "loss", 1.0 / (step + 1), step=step)
    client.set_terminated(run.info.run_id)
    yield uri, run.info.run_id
    registry.close_stores()


def test_web_state_close_stops_the_series_prefetcher(logged):
    uri, run_id = logged
    app = create_app(uri, live=False)
    web = app.extensions["evtrack_web"]
    exp = MlflowClient(uri).get_run(run_id).info.experiment_id
    assert app.test_client().get(f"/runs/{run_id}").status_code == 200  # prefetches
    assert _threads("evtrack-series")
    web.close()
    assert not _threads("evtrack-series")
    web.series.prefetch(exp, run_id, ["loss"])  # closed: starts no thread again
    assert not _threads("evtrack-series")
    assert web.series.get(exp, run_id, "loss").n == 20  # still answers on demand
    web.close()  # idempotent


def test_web_state_close_stops_the_watcher(logged):
    uri, run_id = logged
    app = create_app(uri, live=True, watch_interval=0.05)
    web = app.extensions["evtrack_web"]
    watcher = web.live.watcher
    watcher.subscribe(None, None).close()
    thread = watcher._lister if watcher.mode == "listing" else watcher._observer
    assert thread is not None and thread.is_alive()
    web.close()
    assert not thread.is_alive()


SCRIPT = r"""
import gc, sys, threading

from evtrack.store.registry import close_stores
from evtrack.tracking.client import MlflowClient
from evtrack.web import create_app

uri = sys.argv[1]
client = MlflowClient(uri)
exp = client.create_experiment("leaks")
run = client.create_run(exp)
for step in range(50):
    client.log_metric(run.info.run_id, "loss", step * 0.5, step=step)
client.log_param(run.info.run_id, "p", "1")
client.set_terminated(run.info.run_id)
assert client.get_run(run.info.run_id).data.params == {"p": "1"}
assert len(client.search_runs([exp])) == 1
assert len(client.get_metric_history(run.info.run_id, "loss")) == 50

app = create_app(uri, live=True, watch_interval=0.05)
web = app.extensions["evtrack_web"]
http = app.test_client()
for url in ("/", f"/experiments/{exp}", f"/runs/{run.info.run_id}",
            f"/-/runs/{run.info.run_id}/metric?key=loss"):
    http.get(url).close()
web.series.prefetch(exp, run.info.run_id, ["loss"])
sub = web.live.watcher.subscribe(exp, None)
sub.close()
web.close()
close_stores()
del client, app, web, http
gc.collect()
left = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
print("THREADS", left)
assert not left, left
"""


def test_open_and_close_everything_in_a_clean_subprocess(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": ""}
    proc = subprocess.run(
        [
            sys.executable,
            "-X",
            "dev",
            "-W",
            "error::ResourceWarning",
            "-c",
            textwrap.dedent(SCRIPT),
            str(tmp_path / "store"),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(tmp_path),
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "THREADS []" in proc.stdout
    assert "ResourceWarning" not in proc.stderr, proc.stderr
    assert "Exception ignored" not in proc.stderr, proc.stderr
