"""``get_metric_history`` of 1,000,000 points (and of 100,000), cold and warm.

evtrack: ``MlflowClient().get_metric_history_arrow(run_id, key)`` (an Arrow table) and
``get_metric_history`` (a list of ``Metric``, MLflow's return type). "Cold" is the first
call in a fresh process (``import evtrack`` done, but nothing else: pyarrow and DuckDB
load inside the call; the OS page cache is warm, as it is right after a run). "Warm" is
the best of the next calls in the same process.

The histories: 1 M points in one segment (logged at once), 100 k (50 k with --quick) in one,
and 1 M points in 1,000 segments of 1,000 points (what a long training run that flushes
every second leaves behind), read before and after compaction when evtrack has it.

MLflow: ``MlflowClient().get_metric_history`` on the same points, loaded in MLflow's own
format (SQL rows, or the file store's metric file); see ``_mlflow_side.py``. Its file
store pages through the history 25,000 points at a time and re-reads the whole file for
each page, so 1 M points there take many minutes: it is measured at 100 k points.

    python benchmarks/bench_metric_history.py [--quick] [--no-mlflow]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import (  # noqa: E402
    Row,
    TempRoot,
    compaction_module,
    emit,
    log,
    mlflow_python,
    parser,
    report_error,
    run_mlflow,
)
from _workload import BASE_TIMESTAMP_MS  # noqa: E402

KEY = "loss"

_COLD = r"""
import json, sys, time
t0 = time.perf_counter()
import evtrack
t1 = time.perf_counter()
client = evtrack.MlflowClient(sys.argv[1])
run_id = sys.argv[2]
if sys.argv[4] == "preload":  # separate the libraries' import time from the read itself
    import numpy, pyarrow, pyarrow.compute, pyarrow.parquet, duckdb  # noqa: F401
    try:
        import pandas  # noqa: F401  (pyarrow imports it on first use when it is installed)
    except ImportError:
        pass
t2 = time.perf_counter()
table = client.get_metric_history_arrow(run_id, "loss")
t3 = time.perf_counter()
n = table.num_rows
del table
warm = []
for _ in range(int(sys.argv[3])):
    t = time.perf_counter()
    client.get_metric_history_arrow(run_id, "loss")
    warm.append(time.perf_counter() - t)
t = time.perf_counter()
history = client.get_metric_history(run_id, "loss")
list_s = time.perf_counter() - t
print(json.dumps({"import": t1 - t0, "cold": t3 - t2, "warm": warm, "list": list_s,
                  "points": n, "list_points": len(history)}))
"""

_COLD_LIST = r"""
import json, sys, time
import evtrack
client = evtrack.MlflowClient(sys.argv[1])
t = time.perf_counter()
history = client.get_metric_history(sys.argv[2], "loss")
print(json.dumps({"cold_list": time.perf_counter() - t, "points": len(history)}))
"""


def _values(n: int):
    import numpy as np

    steps = np.arange(n, dtype=np.int64)
    values = ((steps * 2654435761) % 1_000_003) / 1_000_003.0  # _workload.history_value
    stamps = BASE_TIMESTAMP_MS + steps
    return values, steps, stamps


def _log_run(n: int, segments: int) -> str:
    """A run holding ``n`` points of ``loss`` in ``segments`` segments; its id."""
    import evtrack

    values, steps, stamps = _values(n)
    run = evtrack.start_run()
    client = evtrack.MlflowClient()
    per = n // segments
    for s in range(segments):
        sl = slice(s * per, n if s == segments - 1 else (s + 1) * per)
        client.log_metric_series(run.info.run_id, KEY, values[sl], steps[sl], stamps[sl])
        client.flush()
    evtrack.end_run()
    return run.info.run_id


def _read(uri: str, run_id: str, warm: int, cold_list: bool = True, preload: bool = False) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", _COLD, uri, run_id, str(warm), "preload" if preload else "-"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1:]}
    res = json.loads(out.stdout.strip().splitlines()[-1])
    if not cold_list:
        return res
    out = subprocess.run(
        [sys.executable, "-c", _COLD_LIST, uri, run_id], capture_output=True, text=True, timeout=600
    )
    if out.returncode == 0:
        res.update(json.loads(out.stdout.strip().splitlines()[-1]))
    return res


def _describe(label: str, r: dict) -> None:
    if "error" in r:
        log(f"{label}: failed: {r['error']}")
        return
    log(
        f"{label}: import evtrack {r['import']:.3f} s; arrow cold {r['cold']:.3f} s, warm"
        f" {min(r['warm']):.3f} s; list warm {r['list']:.3f} s, cold {r.get('cold_list', float('nan')):.3f} s"
        f" ({r['points']:,} points)"
    )


def main(argv: list[str] | None = None) -> list[Row]:
    args = parser(__doc__.splitlines()[0]).parse_args(argv)
    q = args.quick
    warm = 3 if q else 5
    big, small = 1_000_000, (50_000 if q else 100_000)
    ml_points = {"sqlite": small if q else big, "file": small}
    python = mlflow_python(args)
    print(f"get_metric_history: evtrack {big:,} and {small:,} points; MLflow {ml_points}")
    os.environ["EVTRACK_AUTO_COMPACT"] = "0"

    ev: dict[str, dict] = {}
    ml: dict[tuple[str, int], dict] = {}
    with TempRoot("history", args.keep) as tmp:
        import evtrack

        uri = str(tmp.sub("evtrack"))
        evtrack.set_tracking_uri(uri)
        ids = {"1M": _log_run(big, 1), "100k": _log_run(small, 1)}
        if not q:
            ids["1M/1000"] = _log_run(big, 1000)
        for name, run_id in ids.items():
            ev[name] = _read(uri, run_id, warm, cold_list=not q or name == "100k")
            _describe(f"evtrack {name}", ev[name])
        ev["1M preload"] = _read(uri, ids["1M"], 1, cold_list=False, preload=True)
        if "error" not in ev["1M preload"]:
            log(
                f"evtrack 1M, libraries imported beforehand: arrow cold {ev['1M preload']['cold']:.3f} s"
            )
        compaction = compaction_module()
        if compaction is not None:
            from evtrack.store.log.layout import get_store

            t0 = time.perf_counter()
            compaction.compact_experiment(get_store(uri), "0")
            log(f"evtrack compact_experiment: {time.perf_counter() - t0:.2f} s")
            for name in ("1M", "1M/1000") if not q else ("1M",):
                ev[name + " compacted"] = _read(uri, ids[name], warm, cold_list=not q)
                _describe(f"evtrack {name} compacted", ev[name + " compacted"])

        template = os.environ.get("EVTRACK_BENCH_MLFLOW_DB") or str(tmp.path / "template.db")
        for store in ("sqlite", "file"):
            sizes = sorted({small, ml_points[store]})
            for n in sizes:
                label = f"MLflow {store} {n:,} points"
                res = run_mlflow(
                    python,
                    "history_load",
                    {
                        "store": store,
                        "root": str(tmp.sub(f"mlflow-{store}-{n}")),
                        "n": n,
                        "template": template,
                    },
                    workdir=tmp.path,
                    timeout=900,
                    verbose=args.verbose,
                )
                if report_error(label + " (load)", res):
                    continue
                res = run_mlflow(
                    python,
                    "history_read",
                    {
                        "uri": res["uri"],
                        "run_id": res["run_id"],
                        "warm_repeats": 1 if q or n == big else 2,
                    },
                    workdir=tmp.path,
                    timeout=1800,
                    verbose=args.verbose,
                )
                if report_error(label, res):
                    continue
                ml[(store, n)] = res
                log(
                    f"{label}: cold {res['cold']:.2f} s, warm {min(res['warm']):.2f} s ({res['points']:,} points)"
                )

    def evv(name: str, field: str) -> float | None:
        r = ev.get(name)
        if not r or "error" in r or field not in r:
            return None
        return min(r[field]) if isinstance(r[field], list) else r[field]

    def mlv(store: str, n: int, field: str) -> float | None:
        r = ml.get((store, n))
        if not r:
            return None
        return min(r[field]) if isinstance(r[field], list) else r[field]

    mnote = "MLflow: get_metric_history (a list of Metric; it has no Arrow form)"
    if ("sqlite", big) not in ml:
        mnote += f"; MLflow not measured at 1 M points{' (--quick)' if q else ''}: see the {small // 1000} k rows"
    else:
        mnote += "; MLflow file store not measured at 1 M points (it re-reads the file per 25 k-point page)"
    rows = [
        Row(
            "get_metric_history_arrow, 1 M points, first call in a fresh process",
            "s",
            evv("1M", "cold"),
            mlv("sqlite", big, "cold"),
            None,
            note=f"evtrack: one segment; `import evtrack` before it: {evv('1M', 'import') or 0:.2f} s. {mnote}",
            target="< 0.2 s",
        ),
        Row(
            "get_metric_history_arrow, 1 M points, fresh process, libraries already imported",
            "s",
            evv("1M preload", "cold"),
            note="numpy, pyarrow (+compute, parquet), duckdb, pandas imported before the clock:"
            " what is left is reading and decoding the segment",
            target="< 0.2 s",
        ),
        Row(
            "get_metric_history_arrow, 1 M points, warm",
            "s",
            evv("1M", "warm"),
            mlv("sqlite", big, "warm"),
            None,
            note=mnote,
            target="< 0.2 s",
        ),
        Row(
            "get_metric_history (list of Metric), 1 M points, cold",
            "s",
            evv("1M", "cold_list"),
            mlv("sqlite", big, "cold"),
            None,
        ),
        Row(
            "get_metric_history (list of Metric), 1 M points, warm",
            "s",
            evv("1M", "list"),
            mlv("sqlite", big, "warm"),
            None,
        ),
        Row(
            f"get_metric_history (list of Metric), {small // 1000} k points, cold",
            "s",
            evv("100k", "cold_list"),
            mlv("sqlite", small, "cold"),
            mlv("file", small, "cold"),
        ),
        Row(
            f"get_metric_history (list of Metric), {small // 1000} k points, warm",
            "s",
            evv("100k", "list"),
            mlv("sqlite", small, "warm"),
            mlv("file", small, "warm"),
        ),
    ]
    if "1M/1000" in ev:
        rows += [
            Row(
                "get_metric_history_arrow, 1 M points in 1,000 segments, cold",
                "s",
                evv("1M/1000", "cold"),
                note="uncompacted: a long run that flushed every second",
            ),
            Row(
                "get_metric_history_arrow, 1 M points in 1,000 segments, warm",
                "s",
                evv("1M/1000", "warm"),
            ),
        ]
    if "1M compacted" in ev:
        rows += [
            Row(
                "get_metric_history_arrow, 1 M points, compacted, cold",
                "s",
                evv("1M compacted", "cold"),
            ),
            Row(
                "get_metric_history_arrow, 1 M points, compacted, warm",
                "s",
                evv("1M compacted", "warm"),
            ),
        ]
    if "1M/1000 compacted" in ev:
        rows += [
            Row(
                "get_metric_history_arrow, 1 M points from 1,000 segments, compacted, cold",
                "s",
                evv("1M/1000 compacted", "cold"),
            ),
            Row(
                "get_metric_history_arrow, 1 M points from 1,000 segments, compacted, warm",
                "s",
                evv("1M/1000 compacted", "warm"),
            ),
        ]
    # --quick skips some cases; a row with no figure at all says nothing.
    rows = [
        r for r in rows if any(v is not None for v in (r.evtrack, r.mlflow_sqlite, r.mlflow_file))
    ]
    emit(rows, args, "get_metric_history")
    return rows


if __name__ == "__main__":
    main()
