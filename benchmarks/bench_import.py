"""Importing an MLflow sqlite store, and stock mlflow logging through the plugin.

1. An MLflow sqlite store with RUNS runs x METRICS keys x STEPS points (issue 12's figure:
   1,000 x 10 x 1,000 = 10 M points; ``--quick``: 20 x 10 x 1,000 = 200 k) is read by
   MLflow itself (``get_metric_history`` for every run and key; at full size the first
   ``--mlflow-runs`` runs, 100 by default, since MLflow's ~15-40 k points/s would take
   over five minutes for all) and imported by ``evtrack import``
   (``evtrack.migrate.import_mlflow``): points/s side by side, for the import itself and
   for the whole call including the side-by-side counts (which read the evtrack store
   back). The runs are made through MLflow's API, their points inserted with SQL into the
   database MLflow created (its own schema and indexes).
2. Stock ``mlflow`` (the plugin venv: MLflow + this checkout as its plugin) logging the
   same points with ``mlflow.log_metric`` under ``MLFLOW_ENABLE_ASYNC_LOGGING=true``, and
   with ``MlflowClient.log_batch``, into ``evtrack:///…`` vs MLflow's own ``sqlite:///…``.

Prints figures; asserts nothing. ``python benchmarks/bench_import.py --quick``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from _common import REPO, Row, TempRoot, emit, log, mlflow_python, parser, run_mlflow

LOG_SCRIPT = """
import json, os, sys, time, mlflow
from mlflow import MlflowClient
from mlflow.entities import Metric
n, mode = int(sys.argv[1]), sys.argv[2]
mlflow.set_experiment("plugin-bench")
client = MlflowClient()
t0 = time.perf_counter()
with mlflow.start_run() as run:
    if mode == "log_metric":
        for i in range(n):
            mlflow.log_metric("loss", i * 0.5, step=i)
    else:
        ts = int(time.time() * 1000)
        for lo in range(0, n, 1000):
            client.log_batch(run.info.run_id, metrics=[
                Metric("loss", i * 0.5, ts, i) for i in range(lo, min(n, lo + 1000))])
mlflow.flush_async_logging()
seconds = time.perf_counter() - t0
got = len(client.get_metric_history(run.info.run_id, "loss"))
print(json.dumps({"seconds": seconds, "points": got}))
"""


def plugin_python() -> str | None:
    path = REPO / "tests" / "mlflow_plugin_venv.py"
    sys.path.insert(0, str(REPO / "tests"))
    spec = importlib.util.spec_from_file_location("_evtrack_plugin_venv", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
        return str(module.ensure_plugin_venv())
    except Exception as exc:  # noqa: BLE001 - the import figures stand without it
        print(f"  plugin side skipped: {exc}")
        return None


def log_through_plugin(python: str, uri: str, n: int, mode: str, cwd: Path) -> dict:
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "MLFLOW_ENABLE_ASYNC_LOGGING": "true"}
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(
        [python, "-c", textwrap.dedent(LOG_SCRIPT), str(n), mode],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=None)
    p.add_argument("--metrics", type=int, default=10)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--log-points", type=int, default=None, help="points logged via the plugin")
    p.add_argument(
        "--mlflow-runs",
        type=int,
        default=None,
        help="runs MLflow reads for its rate (default: all with --quick, else 100)",
    )
    args = p.parse_args()
    # --quick stays under ~2 minutes: MLflow reads ~10 k points/s and its sqlite store
    # takes ~80 stock log_metric calls/s on this machine, so those sides bound the sizes.
    runs = args.runs or (20 if args.quick else 1000)
    log_points = args.log_points or (2_000 if args.quick else 100_000)
    total = runs * args.metrics * args.steps
    rows: list[Row] = []
    py = mlflow_python(args)
    if py is None:
        print("bench_import needs the MLflow venv (the source store is written by MLflow).")
        return
    with TempRoot("bench-import", args.keep) as tmp:
        log(f"building an MLflow sqlite store: {runs} runs x {args.metrics} x {args.steps}")
        made = run_mlflow(
            py,
            "import_load",
            {
                "root": str(tmp.sub("mlflow")),
                "runs": runs,
                "metrics": args.metrics,
                "steps": args.steps,
            },
            workdir=tmp.sub("work"),
            timeout=3600,
            verbose=args.verbose,
        )
        if "error" in made:
            print("cannot build the source:", made["error"])
            return
        mlflow_runs = args.mlflow_runs or (None if args.quick else 100)
        read = run_mlflow(
            py,
            "import_read",
            {"uri": made["uri"], "max_runs": mlflow_runs},
            workdir=tmp.sub("work"),
            timeout=3600,
        )
        from evtrack.migrate import import_mlflow

        log("evtrack import ...")
        t0 = time.perf_counter()
        report = import_mlflow(made["uri"], str(tmp.sub("evtrack") / "store"), artifacts=False)
        seconds = time.perf_counter() - t0
        assert report.counts["metric points"] == (total, total), report.counts
        ml_rate = read["points"] / read["seconds"] if "seconds" in read else None
        sampled = "" if mlflow_runs is None else f" (MLflow timed on {read.get('runs')} runs)"
        rows.append(
            Row(
                f"import {total:,} points of an MLflow sqlite store",
                "/s",
                report.points_per_second,
                ml_rate,
                note="evtrack import (copy) vs MLflow get_metric_history" + sampled,
                target=">= 1 M/s",
                extra={"seconds": report.seconds},
            )
        )
        rows.append(
            Row(
                f"import {total:,} points + the side-by-side counts",
                "/s",
                total / seconds,
                ml_rate,
                note="the whole import_mlflow call: start-up, copy, then reading the "
                "evtrack store back to count" + sampled,
                extra={"seconds": seconds, "count_seconds": report.count_seconds},
            )
        )
        ppy = plugin_python()
        if ppy is not None:
            for mode in ("log_metric", "log_batch"):
                n = log_points if mode == "log_metric" else log_points * 10
                ev = log_through_plugin(
                    ppy,
                    f"evtrack://{tmp.sub('ev-' + mode)}/store",
                    n,
                    mode,
                    tmp.sub("work"),
                )
                ml = log_through_plugin(
                    ppy,
                    f"sqlite:///{tmp.sub('ml-' + mode)}/mlflow.db",
                    n,
                    mode,
                    tmp.sub("work"),
                )
                label = f"stock mlflow {mode} x {n:,} points (async logging)"
                rows.append(
                    Row(
                        label,
                        "/s",
                        ev["points"] / ev["seconds"] if "seconds" in ev else None,
                        ml["points"] / ml["seconds"] if "seconds" in ml else None,
                        note="evtrack:// (plugin) vs sqlite://",
                    )
                )
    emit(rows, args, "bench_import: MLflow -> evtrack, and stock mlflow through the plugin")


if __name__ == "__main__":
    main()
