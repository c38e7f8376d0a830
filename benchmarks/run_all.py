"""Run every benchmark, each in its own process, and print one table of figures.

    python benchmarks/run_all.py [--quick] [--no-mlflow] [--only log_metric,search_runs]

MLflow is measured side by side when its virtualenv exists (``python
tests/mlflow_venv.py`` builds it; ``--build-mlflow`` does it from here). See
``docs/benchmarks.md`` for what each figure means.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import (  # noqa: E402
    HERE,
    load_rows,
    machine,
    mlflow_python,
    mlflow_version,
    parser,
    print_table,
)

BENCHMARKS = (
    "cold_start",
    "log_metric",
    "log_batch",
    "log_series",
    "metric_history",
    "search_runs",
    "sweep",
)


def _load() -> str:
    try:
        return " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "?"


def main() -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--only", help=f"comma-separated subset of {', '.join(BENCHMARKS)}")
    args = p.parse_args()
    chosen = BENCHMARKS if not args.only else tuple(b.strip() for b in args.only.split(","))
    unknown = set(chosen) - set(BENCHMARKS)
    if unknown:
        p.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")

    python = mlflow_python(args)
    import evtrack

    print(f"machine: {machine()}; load average at start: {_load()}")
    print(f"evtrack {evtrack.__version__}; MLflow {mlflow_version(python) or 'not measured'}")
    print(f"mode: {'--quick' if args.quick else 'full'}\n", flush=True)

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="evtrack-bench-all-") as tmp:
        results = Path(tmp) / "rows.jsonl"
        env = dict(os.environ)
        # One empty, migrated MLflow sqlite database for the whole suite: each MLflow
        # store starts as a copy instead of running the schema migrations again.
        env["EVTRACK_BENCH_MLFLOW_DB"] = str(Path(tmp) / "mlflow-template.db")
        failed = []
        for name in chosen:
            cmd = [sys.executable, str(HERE / f"bench_{name}.py"), "--json", str(results)]
            if args.quick:
                cmd.append("--quick")
            if args.no_mlflow or python is None:
                cmd.append("--no-mlflow")
            elif name == "log_series":
                cmd.append("--no-mlflow")  # its MLflow columns come from log_batch, below
            if args.keep:
                cmd.append("--keep")
            if args.verbose:
                cmd.append("--verbose")
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, env=env)
            print(f"  ({name}: {time.perf_counter() - t0:.0f} s)\n", flush=True)
            if proc.returncode != 0:
                failed.append(name)
        rows = load_rows(str(results)) if results.exists() else []

    batch = next((r for r in rows if r.operation.startswith("log_batch")), None)
    for r in rows:
        if r.extra.get("mlflow_from") == "log_batch" and batch is not None:
            r.mlflow_sqlite = r.mlflow_sqlite or batch.mlflow_sqlite
            r.mlflow_file = r.mlflow_file or batch.mlflow_file

    print_table(rows, f"evtrack vs MLflow ({'--quick' if args.quick else 'full'} run, {machine()})")
    print(f"\ntotal {time.perf_counter() - started:.0f} s; load average at end: {_load()}")
    if failed:
        print(f"benchmarks that exited with an error: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
