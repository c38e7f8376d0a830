"""Array logging: ``evtrack.log_metric_series(key, values, steps)`` points per second.

One call logs a whole NumPy series (float64 values, int64 steps) in an active run; the
timing ends after ``evtrack.flush()``, so the points are in a Parquet segment. MLflow
has no array form: its column is its fastest bulk path, ``log_batch`` with 1,000
metrics per call (as in ``bench_log_batch.py``).

    python benchmarks/bench_log_series.py [--quick] [--no-mlflow]
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
from _workload import BASE_TIMESTAMP_MS  # noqa: E402


def _series(n: int, repeats: int, with_timestamps: bool) -> tuple[list[float], str | None]:
    import numpy as np

    import evtrack

    values = np.random.default_rng(0).random(n)
    steps = np.arange(n, dtype=np.int64)
    stamps = np.full(n, BASE_TIMESTAMP_MS, dtype=np.int64) if with_timestamps else None
    rates = []
    evtrack.start_run()
    try:
        for r in range(repeats):
            t0 = time.perf_counter()
            if with_timestamps:
                evtrack.log_metric_series(f"series{r}", values, steps, stamps)
            else:
                evtrack.log_metric_series(f"series{r}", values, steps)
            evtrack.flush()
            rates.append(n / (time.perf_counter() - t0))
    except Exception as exc:  # noqa: BLE001 - report, do not stop the suite
        return rates, f"{type(exc).__name__}: {exc}"
    finally:
        evtrack.end_run()
    return rates, None


def main(argv: list[str] | None = None) -> list[Row]:
    args = parser(__doc__.splitlines()[0]).parse_args(argv)
    q = args.quick
    n, repeats = (5_000_000, 2) if q else (10_000_000, 5)
    python = mlflow_python(args)
    print(f"log_metric_series: {n:,} points x {repeats}")

    os.environ["EVTRACK_AUTO_COMPACT"] = "0"
    rows: list[Row] = []
    with TempRoot("log-series", args.keep) as tmp:
        import evtrack

        evtrack.set_tracking_uri(str(tmp.sub("evtrack")))
        rates, error = _series(n, repeats, with_timestamps=False)
        if error:
            log(f"evtrack log_metric_series(key, values, steps): failed: {error}")
        else:
            log(
                f"evtrack (values, steps): best {max(rates):,.0f} points/s, all {[f'{r:,.0f}' for r in rates]}"
            )
        ts_rates, ts_error = _series(n, repeats, with_timestamps=True)
        if ts_error:
            log(f"evtrack log_metric_series(key, values, steps, timestamps): failed: {ts_error}")
        else:
            log(f"evtrack (values, steps, timestamps): best {max(ts_rates):,.0f} points/s")

        ml = {}
        template = os.environ.get("EVTRACK_BENCH_MLFLOW_DB") or str(tmp.path / "template.db")
        for store in ("sqlite", "file"):
            res = run_mlflow(
                python,
                "log_batch",
                {
                    "store": store,
                    "root": str(tmp.sub(f"mlflow-{store}")),
                    "size": 1000,
                    "batches": 5 if q else 30,
                    "template": template,
                },
                workdir=tmp.path,
                timeout=900,
                verbose=args.verbose,
            )
            if not report_error(f"MLflow {store} log_batch", res):
                ml[store] = max(res["rates"])
                log(f"MLflow {store} log_batch: {ml[store]:,.0f} points/s")

    rows.append(
        Row(
            "log_metric_series (NumPy values + steps), until durable",
            "/s",
            max(rates) if rates and not error else None,
            ml.get("sqlite"),
            ml.get("file"),
            note=(
                f"points/s, {n:,} points per call + flush(), best of {repeats}; MLflow has no"
                " array form: its columns are log_batch (1,000 metrics per call)"
                + (f". evtrack FAILED: {error}" if error else "")
            ),
            target="≥ 10 M/s",
            extra={"mlflow_from": "log_batch"},
        )
    )
    rows.append(
        Row(
            "log_metric_series with explicit timestamps",
            "/s",
            max(ts_rates) if ts_rates and not ts_error else None,
            note=(
                f"evtrack FAILED: {ts_error}"
                if ts_error
                else "values, steps and timestamps as NumPy arrays"
            ),
        )
    )
    emit(rows, args, "array logging")
    return rows


if __name__ == "__main__":
    main()
