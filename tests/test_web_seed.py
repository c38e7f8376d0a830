"""Stores and a server for the web view's tests, screenshots and benchmark (no tests here).

:func:`seed_demo` logs what a new user would have after the quickstart and the wine
example: a few experiments, nested runs, histories, tags, a description, artifacts of
every previewable kind, and values that try to inject script into the page.
:func:`seed_many_runs` writes a large experiment quickly, straight through the writer.
:class:`UIProcess` runs the real ``evtrack ui`` command on a free loopback port.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import subprocess
import sys
import threading
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import evtrack
from evtrack.tracking.client import MlflowClient

#: Every payload sets window.__xss if it ever runs; tests assert it stays undefined.
XSS = {
    "name": '<img src=x onerror="window.__xss=1">',
    "tag": "<script>window.__xss=1</script>",
    "param": '"><svg onload="window.__xss=1">',
    "note": "<b>bold?</b><img src=x onerror=window.__xss=1>",
    "metric": "acc<script>window.__xss=1</script>",
    "file": "<svg onload=window.__xss=1>",
    "html": "<html><body><script>window.__xss=1; parent.__xss=1</script>hi</body></html>",
    "svg": (
        '<svg xmlns="http://www.w3.org/2000/svg" width="40" height="40" '
        'onload="window.__xss=1"><script>window.__xss=1</script>'
        '<rect width="40" height="40" fill="teal"/></svg>'
    ),
}

MLMODEL = """artifact_path: model
flavors:
  python_function:
    env:
      conda: conda.yaml
      virtualenv: python_env.yaml
    loader_module: mlflow.sklearn
    model_path: model.pkl
    predict_fn: predict
    python_version: 3.11.7
  sklearn:
    code: null
    pickled_model: model.pkl
    serialization_format: cloudpickle
    sklearn_version: 1.5.0
mlflow_version: 2.14.0
model_uuid: 3b0c1f7e9d2a4c6f8e1a2b3c4d5e6f70
run_id: {run_id}
signature:
  inputs: '[{{"type": "double", "name": "alcohol"}}, {{"type": "double", "name": "pH"}}]'
  outputs: '[{{"type": "double"}}]'
utc_time_created: '2024-05-01 12:00:00.000000'
"""


@dataclass
class Demo:
    uri: str
    wine: str = ""
    quick: str = ""
    runs: dict[str, str] = field(default_factory=dict)  # label -> run id


def _png(width: int = 240, height: int = 120) -> bytes:
    """A small PNG line chart, drawn pixel by pixel (no imaging library needed)."""
    import struct
    import zlib

    ys = [
        int(height / 2 - (height / 2 - 8) * math.sin(x / width * 4 * math.pi)) for x in range(width)
    ]
    rows = []
    for y in range(height):
        row = bytearray([0])  # filter type 0 per scanline
        for x in range(width):
            on_line = abs(ys[x] - y) <= 1
            grid = x % 40 == 0 or y % 30 == 0
            row += bytes(
                (47, 111, 222) if on_line else (225, 229, 236) if grid else (255, 255, 255)
            )
        rows.append(bytes(row))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"".join(rows)))
        + chunk(b"IEND", b"")
    )


def _history(
    client: MlflowClient,
    run_id: str,
    key: str,
    n: int,
    start: float,
    rate: float,
    t0: int,
    seed: int,
) -> None:
    rng = random.Random(seed)
    floor = start * 0.4
    values = [
        floor + (start - floor) * math.exp(-rate * i) + rng.uniform(-0.02, 0.02) * start
        for i in range(n)
    ]
    client.log_metric_series(run_id, key, values, list(range(n)), [t0 + 1000 * i for i in range(n)])


def seed_demo(uri: str) -> Demo:
    """The demo store (about two seconds)."""
    client = MlflowClient(uri)
    demo = Demo(uri)
    t0 = 1_714_560_000_000  # 2024-05-01 10:40 UTC
    demo.quick = client.create_experiment("quickstart")
    demo.wine = client.create_experiment(
        "wine-quality", tags={"mlflow.note.content": "ElasticNet on the UCI wine data"}
    )
    rng = random.Random(7)

    # quickstart: three plain runs
    for i in range(3):
        run = client.create_run(demo.quick, start_time=t0 + i * 60_000, run_name=f"quick-{i}")
        rid = run.info.run_id
        client.log_param(rid, "lr", str(0.1 / (i + 1)))
        _history(client, rid, "loss", 50, 1.0, 0.05 * (i + 1), t0 + i * 60_000, i)
        client.set_terminated(rid, "FINISHED", end_time=t0 + i * 60_000 + 50_000)
        demo.runs[f"quick-{i}"] = rid

    # wine: a sweep (parent + children), plain runs, a failed one, a running one
    parent = client.create_run(demo.wine, start_time=t0, run_name="sweep")
    pid = parent.info.run_id
    demo.runs["sweep"] = pid
    client.set_tag(
        pid,
        "mlflow.note.content",
        "Grid over alpha and l1_ratio.\nBest child is logged as best_rmse.",
    )
    client.log_param(pid, "search", "grid")
    best = 1.0
    for i, (alpha, l1) in enumerate([(0.1, 0.1), (0.1, 0.5), (0.5, 0.5), (1.0, 0.9)]):
        child = client.create_run(
            demo.wine,
            start_time=t0 + 1000 + i * 30_000,
            run_name=f"en-a{alpha}-l{l1}",
            tags={"mlflow.parentRunId": pid},
        )
        cid = child.info.run_id
        client.log_batch(
            cid,
            params=[
                evtrack.entities.Param("alpha", str(alpha)),
                evtrack.entities.Param("l1_ratio", str(l1)),
                evtrack.entities.Param("model", "elasticnet"),
            ],
        )
        rmse = 0.6 + 0.25 * alpha + 0.05 * l1 + rng.uniform(0, 0.03)
        best = min(best, rmse)
        _history(client, cid, "rmse", 200, 1.6, 0.03 + 0.01 * i, t0 + i * 30_000, 10 + i)
        client.log_metric(cid, "rmse", rmse, timestamp=t0 + 300_000, step=200)
        client.log_metric(cid, "r2", 0.4 - 0.2 * alpha, timestamp=t0 + 300_000, step=200)
        client.set_terminated(cid, "FINISHED", end_time=t0 + 1000 + i * 30_000 + 25_000)
        demo.runs[f"child-{i}"] = cid
    client.log_metric(pid, "best_rmse", best, timestamp=t0 + 300_000, step=0)
    client.set_terminated(pid, "FINISHED", end_time=t0 + 200_000)

    for i, model in enumerate(["random-forest", "gbm", "ridge"]):
        run = client.create_run(
            demo.wine, start_time=t0 + 400_000 + i * 90_000, run_name=f"{model}-{i}"
        )
        rid = run.info.run_id
        client.log_batch(
            rid,
            params=[
                evtrack.entities.Param("model", model),
                evtrack.entities.Param("n_estimators", str(100 * (i + 1))),
                evtrack.entities.Param("max_depth", str(4 + 2 * i)),
            ],
        )
        client.set_tag(rid, "team", "vision" if i % 2 else "tabular")
        _history(client, rid, "rmse", 300, 1.4, 0.02 + 0.01 * i, t0 + 400_000 + i * 90_000, 20 + i)
        _history(client, rid, "mae", 300, 1.0, 0.025, t0 + 400_000 + i * 90_000, 30 + i)
        client.log_metric(rid, "r2", 0.55 + 0.05 * i, timestamp=t0 + 700_000, step=300)
        status = "FAILED" if model == "ridge" else "FINISHED"
        client.set_terminated(rid, status, end_time=t0 + 400_000 + i * 90_000 + 80_000)
        demo.runs[model] = rid

    # artifacts of every kind on the random-forest run
    rid = demo.runs["random-forest"]
    client.log_text(rid, MLMODEL.format(run_id=rid), "model/MLmodel")
    client.log_text(
        rid,
        "name: wine\nchannels: [conda-forge]\ndependencies:\n  - python=3.11\n  - scikit-learn\n",
        "model/conda.yaml",
    )
    client.log_bytes(rid, b"\x80\x04\x95pickled-model-bytes\x00\x01", "model/model.pkl")
    client.log_dict(
        rid, {"rmse": 0.61, "r2": 0.55, "confusion": [[50, 3], [4, 43]]}, "metrics.json"
    )
    client.log_text(
        rid,
        "fixed acidity,volatile acidity,alcohol,quality\n7.4,0.70,9.4,5\n7.8,0.88,9.8,5\n11.2,0.28,9.8,6\n",
        "data/sample.csv",
    )
    client.log_text(rid, "epoch 1 loss 0.9\nepoch 2 loss 0.7\n", "logs/train.log")
    client.log_bytes(rid, _png(), "plots/residuals.png")
    client.log_text(rid, XSS["html"], "report.html")
    client.log_text(rid, XSS["svg"], "plots/evil.svg")
    client.log_text(rid, XSS["tag"] + "\n" + XSS["name"], "notes.txt")

    # values that try to inject script, on a run of their own
    run = client.create_run(demo.wine, start_time=t0 + 800_000, run_name=XSS["name"])
    rid = run.info.run_id
    demo.runs["xss"] = rid
    client.log_param(rid, "payload", XSS["param"])
    client.log_param(rid, "model", XSS["tag"])
    client.set_tag(rid, "team", XSS["tag"])
    client.set_tag(rid, "mlflow.note.content", XSS["note"])
    # Key rules refuse these characters, but a store is just files: the view must not
    # trust keys either, so write such events the way a foreign writer could.
    client.writer.add(demo.wine, rid, "param", XSS["param"], "1", time_ms=t0 + 800_000)
    client.writer.add(demo.wine, rid, "tag", XSS["tag"], XSS["note"], time_ms=t0 + 800_000)
    client.writer.metric_buffer(demo.wine, rid).extend((XSS["metric"], 1.0, 0, t0 + 800_000))
    client.log_metric(rid, "rmse", 0.9, step=0, timestamp=t0 + 800_000)
    client.log_text(rid, XSS["tag"], "xss/" + _safe_name(client, XSS["file"]) + ".txt")
    client.set_terminated(rid, "FINISHED", end_time=t0 + 810_000)

    # one run still running (the live-update tests log to it)
    run = client.create_run(demo.wine, run_name="live")  # started now
    demo.runs["live"] = run.info.run_id
    client.log_param(run.info.run_id, "model", "online")
    client.log_metric(run.info.run_id, "rmse", 1.2, step=0)
    client.flush()
    return demo


def _safe_name(client: MlflowClient, wanted: str) -> str:
    """``wanted`` if the artifact path rules accept it, else a name close to it."""
    from evtrack.errors import InvalidParameterValue
    from evtrack.tracking import validation

    try:
        validation.check_artifact_path(wanted + ".txt")
        return wanted
    except InvalidParameterValue:
        return "".join(c for c in wanted if c.isalnum() or c in "<>= ._-") or "payload"


def seed_many_runs(
    uri: str, n: int, experiment: str = "big", metrics: int = 3, params: int = 3
) -> str:
    """An experiment with ``n`` finished runs, written in bulk (tens of thousands a minute).

    Goes through the writer directly (the events a client would write, without a read
    per run); one segment per run, as separate processes logging would leave.
    """
    client = MlflowClient(uri)
    experiment_id = client.create_experiment(experiment)
    exp = client.get_experiment(experiment_id)
    writer, store = client.writer, client.store.layout
    rng = random.Random(n)
    t0 = 1_714_560_000_000
    for i in range(n):
        run_id = uuid.uuid4().hex
        start = t0 + i * 1000
        store.claim_run_id(run_id, experiment_id)
        attrs = {
            "experiment_id": experiment_id,
            "run_name": f"run-{i:06d}",
            "user_id": "bench",
            "status": "FINISHED",
            "start_time": str(start),
            "end_time": str(start + 500 + i % 1000),
            "lifecycle_stage": "active",
            "artifact_uri": f"{exp.artifact_location}/{run_id}/artifacts",
        }
        for key, value in attrs.items():
            writer.add(experiment_id, run_id, "run", key, value, time_ms=start)
        writer.add(experiment_id, run_id, "tag", "mlflow.runName", attrs["run_name"], time_ms=start)
        for p in range(params):
            writer.add(
                experiment_id,
                run_id,
                "param",
                f"p{p}",
                str(rng.choice([0.01, 0.1, 0.5, 1.0])),
                time_ms=start,
            )
        buf = writer.metric_buffer(experiment_id, run_id)
        for m in range(metrics):
            buf.extend((f"m{m}", rng.random(), 0, start))
        if i % 5000 == 4999:
            writer.flush()
    writer.flush()
    return experiment_id


class UIProcess:
    """``evtrack ui --port 0`` in a subprocess; ``url`` is where it listens."""

    ROOT = Path(__file__).resolve().parent.parent

    def __init__(self, uri: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("EVTRACK_")}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(self.ROOT), env.get("PYTHONPATH")]))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "evtrack.cli", "--tracking-uri", uri, "ui", "--port", "0"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        line = self.proc.stdout.readline()
        match = re.search(r"http://[\d.]+:\d+/", line)
        if not match:
            self.proc.kill()
            raise RuntimeError(f"evtrack ui did not start: {line}{self.proc.stdout.read()}")
        self.first_line = line
        self.url = match.group(0).rstrip("/")
        # keep draining its output so the pipe never fills up
        self._drain = threading.Thread(target=self.proc.stdout.read, daemon=True)
        self._drain.start()

    def get(self, path: str) -> tuple[float, bytes]:
        """(seconds, body) of one GET."""
        import time

        started = time.perf_counter()
        with urllib.request.urlopen(self.url + path, timeout=600) as resp:
            body = resp.read()
        return time.perf_counter() - started, body

    def json(self, path: str) -> dict:
        return json.loads(self.get(path)[1])

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(20)
        self._drain.join(10)
        self.proc.stdout.close()


if __name__ == "__main__":  # python tests/test_web_seed.py DIR: a demo store to look at
    import sys

    target = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.getcwd(), "evruns-demo")
    d = seed_demo(target)
    print(json.dumps({"uri": target, "wine": d.wine, "runs": d.runs}, indent=2))
