"""``MlflowClient.log_batch`` with 1,000 metrics per call: points per second, until durable.

Both sides build the ``Metric`` objects before the clock starts (10 keys, 100 points
each per batch), then call ``client.log_batch(run_id, metrics=batch)`` in a loop;
evtrack's timing ends after ``client.flush()``, MLflow's calls are durable on return.

    python benchmarks/bench_log_batch.py [--quick] [--no-mlflow]
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import (  # noqa: E402
    Row,
    TempRoot,
    emit,
    log,
    mlflow_python,
    parser,
    report_error,
    run_mlflow,
)
from _workload import BASE_TIMESTAMP_MS, batch_keys  # noqa: E402

SIZE = 1000


def _evtrack(root: str, batches: int, repeats: int) -> list[float]:
    import evtrack
    from evtrack.entities import Metric

    os.environ["EVTRACK_AUTO_COMPACT"] = "0"
    client = evtrack.MlflowClient(root)
    keys = batch_keys(SIZE)
    rates = []
    for _ in range(repeats):
        run_id = client.create_run("0").info.run_id
        data = [
            [Metric(k, float(j), BASE_TIMESTAMP_MS + b, b) for j, k in enumerate(keys)]
            for b in range(batches)
        ]
        t0 = time.perf_counter()
        for batch in data:
            client.log_batch(run_id, metrics=batch)
        client.flush()
        rates.append(SIZE * batches / (time.perf_counter() - t0))
        client.set_terminated(run_id)
    return rates


def main(argv: list[str] | None = None) -> list[Row]:
    args = parser(__doc__.splitlines()[0]).parse_args(argv)
    q = args.quick
    batches, repeats = (300, 2) if q else (1_000, 5)
    ml_batches = {"sqlite": 5 if q else 30, "file": 5 if q else 30}
    python = mlflow_python(args)
    print(f"log_batch: evtrack {batches} x {SIZE} points x {repeats}; MLflow {ml_batches} batches")

    with TempRoot("log-batch", args.keep) as tmp:
        rates = _evtrack(str(tmp.sub("evtrack")), batches, repeats)
        log(f"evtrack: best {max(rates):,.0f} points/s, all {[f'{r:,.0f}' for r in rates]}")
        ml = {}
        template = os.environ.get("EVTRACK_BENCH_MLFLOW_DB") or str(tmp.path / "template.db")
        for store in ("sqlite", "file"):
            res = run_mlflow(
                python,
                "log_batch",
                {
                    "store": store,
                    "root": str(tmp.sub(f"mlflow-{store}")),
                    "size": SIZE,
                    "batches": ml_batches[store],
                    "repeats": 1 if q else 2,
                    "template": template,
                },
                workdir=tmp.path,
                timeout=900,
                verbose=args.verbose,
            )
            if not report_error(f"MLflow {store}", res):
                ml[store] = max(res["rates"])
                log(f"MLflow {store}: {ml[store]:,.0f} points/s ({res['points']:,} points)")

    rows = [
        Row(
            f"log_batch, {SIZE:,} metrics per call, until durable",
            "/s",
            max(rates),
            ml.get("sqlite"),
            ml.get("file"),
            note=(
                f"points/s; evtrack {batches:,} calls + flush(), best of {repeats}; MLflow"
                f" {ml_batches['sqlite']} (sqlite) / {ml_batches['file']} (file) calls"
            ),
        )
    ]
    emit(rows, args, "log_batch")
    return rows


if __name__ == "__main__":
    main()
