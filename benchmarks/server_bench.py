"""evtrack server vs ``mlflow server`` on the same machine, in the same run (loopback only).

    python benchmarks/server_bench.py [--seconds 5] [--workers 2] [--loaders 3]

1. REST ``log-batch`` points/s: ``--loaders`` processes post prebuilt bodies (1000
   metrics each) over keep-alive connections for ``--seconds``; only 200s are counted.
2. The stock mlflow client (from tests/mlflow_venv.py's venv) against both servers:
   ``MlflowClient.log_batch`` of 1000 points in a loop, and single ``log_metric`` calls.
3. evtrack's own client over HTTP: ``log_metric`` in a loop, then ``end_run`` (durable).
4. ``get-history`` latency of a 10,000-point metric, and RSS per server (all processes).

MLflow runs with its defaults (``mlflow server``, sqlite backend, same worker count).
Every loop is bounded in time; every process is stopped at the end.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, ROOT)

from evtrack.server.testing import ServerProcess, free_port  # noqa: E402


def _post(conn, path, body):
    conn.request("POST", path, body, {"Content-Type": "application/json"})
    resp = conn.getresponse()
    data = resp.read()
    return resp.status, data


def _rest(url, method, path, payload=None):
    req = urllib.request.Request(
        url + path,
        data=json.dumps(payload).encode() if payload is not None else None,
        method=method,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read() or b"{}")


def _loader(url, run_id, seconds, out, idx):
    host = url.split("//", 1)[1]
    conn = http.client.HTTPConnection(host, timeout=60)
    ts = int(time.time() * 1000)
    bodies = [
        json.dumps(
            {
                "run_id": run_id,
                "metrics": [
                    {"key": f"m{k % 10}", "value": k * 0.5, "timestamp": ts, "step": b * 1000 + k}
                    for k in range(1000)
                ],
            }
        )
        for b in range(20)
    ]
    points = 0
    deadline = time.monotonic() + seconds
    i = 0
    while time.monotonic() < deadline:
        status, _ = _post(conn, "/api/2.0/mlflow/runs/log-batch", bodies[i % len(bodies)])
        i += 1
        if status == 200:
            points += 1000
    out[idx] = points


def rest_log_batch(url, seconds, loaders):
    exp = _rest(url, "POST", "/api/2.0/mlflow/experiments/create", {"name": f"bench-{time.time()}"})
    run = _rest(
        url,
        "POST",
        "/api/2.0/mlflow/runs/create",
        {"experiment_id": exp["experiment_id"], "start_time": 1},
    )
    run_id = run["run"]["info"]["run_id"]
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Array("q", loaders)
    procs = [
        ctx.Process(target=_loader, args=(url, run_id, seconds, out, i)) for i in range(loaders)
    ]
    t = time.monotonic()
    for p in procs:
        p.start()
    for p in procs:
        p.join(seconds + 120)
    elapsed = time.monotonic() - t
    return sum(out) / max(elapsed - 1.0, seconds), run_id  # ~1 s is process start-up


STOCK_CLIENT = r"""
import json, sys, time
from mlflow import MlflowClient
from mlflow.entities import Metric
seconds = float(sys.argv[1])
c = MlflowClient()
exp = c.create_experiment(f"stock-{time.time()}")
run = c.create_run(exp)
rid = run.info.run_id
ts = int(time.time() * 1000)
points, i = 0, 0
deadline = time.monotonic() + seconds
t = time.monotonic()
while time.monotonic() < deadline:
    c.log_batch(rid, metrics=[Metric(f"m{k % 10}", k * 0.5, ts, i * 1000 + k) for k in range(1000)])
    points += 1000
    i += 1
batch_rate = points / (time.monotonic() - t)
n, t = 0, time.monotonic()
deadline = t + seconds / 2
while time.monotonic() < deadline:
    c.log_metric(rid, "single", 1.0, timestamp=ts, step=n)
    n += 1
single_rate = n / (time.monotonic() - t)
print("RESULT " + json.dumps({"log_batch_pts_s": batch_rate, "log_metric_req_s": single_rate}))
"""

EVTRACK_CLIENT = r"""
import json, sys, time
import numpy, pyarrow  # imported before timing
import evtrack
n = int(sys.argv[1])
evtrack.set_experiment(f"evclient-{time.time()}")
run = evtrack.start_run()
t = time.monotonic()
for i in range(n):
    evtrack.log_metric("loss", i * 0.5, step=i)
evtrack.end_run()
print("RESULT " + json.dumps({"pts_s": n / (time.monotonic() - t)}))
"""


def _script(python, code, url, *args, timeout=600):
    proc = subprocess.run(
        [python, "-c", code, *map(str, args)],
        env={
            **os.environ,
            "MLFLOW_TRACKING_URI": url,
            "EVTRACK_TRACKING_URI": url,
            "PYTHONWARNINGS": "ignore",
        },
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT ") :])


def history_latency(url, run_id, key="m0", repeats=5):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        with urllib.request.urlopen(
            f"{url}/api/2.0/mlflow/metrics/get-history?run_id={run_id}&metric_key={key}&max_results=10000",
            timeout=120,
        ) as r:
            r.read()
        times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]


def rss_mb(pid):
    """Resident memory of a process and its children, in MiB."""
    total = 0
    pids = [pid]
    try:
        out = subprocess.run(["pgrep", "-g", str(os.getpgid(pid))], capture_output=True, text=True)
        pids = [int(p) for p in out.stdout.split()] or [pid]
    except (OSError, ValueError):
        pass
    for p in pids:
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024, len(pids)


class MlflowServer:
    def __init__(self, python, workdir, workers):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        mlflow_bin = os.path.join(os.path.dirname(python), "mlflow")
        self.cmd = [
            mlflow_bin,
            "server",
            "--backend-store-uri",
            f"sqlite:///{workdir}/mlflow.db",
            "--artifacts-destination",
            f"{workdir}/mlartifacts",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            str(workers),
        ]
        self.proc = None

    def __enter__(self):
        self.proc = subprocess.Popen(
            self.cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=1):
                    return self
            except OSError:
                time.sleep(0.2)
        raise TimeoutError("mlflow server did not start")

    def __exit__(self, *exc):
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--loaders", type=int, default=3)
    ap.add_argument("--evtrack-points", type=int, default=2_000_000)
    ap.add_argument("--skip-mlflow", action="store_true")
    args = ap.parse_args()
    results = {}
    work = tempfile.mkdtemp(prefix="evtrack-server-bench-")
    try:
        srv = ServerProcess(os.path.join(work, "evstore"), ["--workers", str(args.workers)])
        with srv as url:
            rate, run_id = rest_log_batch(url, args.seconds, args.loaders)
            results["evtrack REST log-batch pts/s"] = rate
            results["evtrack get-history 10k pts (s)"] = history_latency(url, run_id)
            results["evtrack server RSS MiB (processes)"] = rss_mb(srv.proc.pid)
            results["evtrack client over HTTP pts/s"] = _script(
                sys.executable, EVTRACK_CLIENT, url, args.evtrack_points
            )["pts_s"]
            python = None
            if not args.skip_mlflow:
                import mlflow_venv

                python = str(mlflow_venv.ensure_mlflow_venv())
                stock = _script(python, STOCK_CLIENT, url, args.seconds)
                results["stock mlflow client -> evtrack: log_batch pts/s"] = stock[
                    "log_batch_pts_s"
                ]
                results["stock mlflow client -> evtrack: log_metric req/s"] = stock[
                    "log_metric_req_s"
                ]
        if python:
            with MlflowServer(python, work, args.workers) as ml:
                rate, run_id = rest_log_batch(ml.url, args.seconds, args.loaders)
                results["mlflow REST log-batch pts/s"] = rate
                results["mlflow get-history 10k pts (s)"] = history_latency(ml.url, run_id)
                results["mlflow server RSS MiB (processes)"] = rss_mb(ml.proc.pid)
                stock = _script(python, STOCK_CLIENT, ml.url, args.seconds)
                results["stock mlflow client -> mlflow: log_batch pts/s"] = stock["log_batch_pts_s"]
                results["stock mlflow client -> mlflow: log_metric req/s"] = stock[
                    "log_metric_req_s"
                ]
            results["REST log-batch speed-up (evtrack / mlflow)"] = (
                results["evtrack REST log-batch pts/s"] / results["mlflow REST log-batch pts/s"]
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    width = max(map(len, results))
    for k, v in results.items():
        if isinstance(v, tuple):
            v = f"{v[0]:.0f} MiB in {v[1]} processes"
        elif isinstance(v, float):
            v = f"{v:,.3f}" if v < 100 else f"{v:,.0f}"
        print(f"{k.ljust(width)}  {v}")


if __name__ == "__main__":
    main()
