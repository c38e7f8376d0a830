"""Single ``log_metric`` calls per second from one Python thread, until durable.

evtrack: N calls of ``evtrack.log_metric("loss", 0.5, step=i)`` in an active run, then
``evtrack.flush()``; the flush is inside the timing, so every point is in a segment file
when the clock stops. MLflow: N calls of ``mlflow.log_metric`` (``synchronous=True``,
its default, each durable when it returns), for a bounded N.

Also measured: the bare Python floor (an empty function with the same signature), each
call durable on its own (``synchronous=True`` on both sides), MLflow's
``synchronous=False`` + ``flush_async_logging()``, evtrack with ``EVTRACK_FSYNC=1``, and
``end_run()`` after a million points, with and without compaction when evtrack has it.

    python benchmarks/bench_log_metric.py [--quick] [--no-mlflow]
"""

from __future__ import annotations

import os
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
    summary,
)


def _floors(n: int) -> tuple[float, float]:
    """Calls/s of two stand-ins called exactly like ``evtrack.log_metric``: an empty
    function (Python's call cost), and the least a buffering logger must do (take a
    timestamp, append the point to a list)."""

    buf: list = []
    now = time.time

    class Empty:
        @staticmethod
        def log_metric(key, value, step=None, synchronous=None, timestamp=None, run_id=None):
            return None

    class Minimal:
        @staticmethod
        def log_metric(key, value, step=None, synchronous=None, timestamp=None, run_id=None):
            buf.extend((key, value, step, int(now() * 1000)))

    rates = []
    for m in (Empty(), Minimal()):
        best = 0.0
        for _ in range(3):
            buf.clear()
            t0 = time.perf_counter()
            for i in range(n):
                m.log_metric("loss", 0.5, step=i)
            best = max(best, n / (time.perf_counter() - t0))
        rates.append(best)
    buf.clear()
    return rates[0], rates[1]


def _tuple_floor(n: int) -> tuple[float, float]:
    """Issue 13's floor: a Python function appending a ``(key, value, step, time_ns)``
    tuple to a list. Best calls/s of 3, by wall clock and by process CPU time."""
    buf: list = []
    now_ns = time.time_ns

    def floor(key, value, step=None):
        buf.append((key, value, step, now_ns()))

    wall = cpu = 0.0
    for _ in range(3):
        buf.clear()
        t0, c0 = time.perf_counter(), time.process_time()
        for i in range(n):
            floor("loss", 0.5, step=i)
        wall = max(wall, n / (time.perf_counter() - t0))
        cpu = max(cpu, n / (time.process_time() - c0))
    buf.clear()
    return wall, cpu


_CPU_RATES: list[float] = []


def _evtrack_calls(n: int, repeats: int, *, compact: bool) -> tuple[list[float], list[float]]:
    """Durable rates of ``n`` calls + flush, and the times of the ``end_run()`` after each."""
    import evtrack

    os.environ["EVTRACK_AUTO_COMPACT"] = "1" if compact else "0"
    rates, ends = [], []
    for _ in range(repeats):
        evtrack.start_run()
        t0, c0 = time.perf_counter(), time.process_time()
        for i in range(n):
            evtrack.log_metric("loss", 0.5, step=i)
        evtrack.flush()
        rates.append(n / (time.perf_counter() - t0))
        _CPU_RATES.append(n / (time.process_time() - c0))  # both threads' CPU time
        t0 = time.perf_counter()
        evtrack.end_run()
        ends.append(time.perf_counter() - t0)
    return rates, ends


def _evtrack_synchronous(n: int) -> float:
    import evtrack

    os.environ["EVTRACK_AUTO_COMPACT"] = "0"
    evtrack.start_run()
    t0 = time.perf_counter()
    for i in range(n):
        evtrack.log_metric("loss", 0.5, step=i, synchronous=True)
    rate = n / (time.perf_counter() - t0)
    evtrack.end_run()
    return rate


def main(argv: list[str] | None = None) -> list[Row]:
    args = parser(__doc__.splitlines()[0]).parse_args(argv)
    q = args.quick
    n, repeats = (1_000_000, 2) if q else (2_000_000, 5)
    n_sync = 200 if q else 2_000
    n_ml = {"sqlite": 100 if q else 2_000, "file": 1_000 if q else 5_000}
    python = mlflow_python(args)
    print(f"log_metric: evtrack {n:,} calls x {repeats}; MLflow {n_ml} calls", flush=True)

    rows: list[Row] = []
    with TempRoot("log-metric", args.keep) as tmp:
        import evtrack

        empty, minimal = _floors(n // 2)
        log(
            f"Python floor: empty function {empty:,.0f}/s, timestamp + list.extend {minimal:,.0f}/s"
        )

        tuple_wall, tuple_cpu = _tuple_floor(n // 2)
        log(f"floor, (key, value, step, time_ns) tuple append: {tuple_wall:,.0f}/s wall")
        evtrack.set_tracking_uri(str(tmp.sub("evtrack")))
        _CPU_RATES.clear()
        rates, ends = _evtrack_calls(n, repeats, compact=False)
        log(
            f"evtrack until durable / tuple floor: {max(rates) / tuple_wall:.3f}x wall, "
            f"{max(_CPU_RATES) / tuple_cpu:.3f}x process CPU time"
        )
        log(f"evtrack calls + flush: best {max(rates):,.0f}/s, all {[f'{r:,.0f}' for r in rates]}")
        log(f"evtrack end_run (no compaction): {summary(ends)}")
        sync_rate = _evtrack_synchronous(n_sync)
        log(f"evtrack synchronous=True: {sync_rate:,.0f} calls/s")

        fsync_rates = fsync_sync = None
        if not q:
            os.environ["EVTRACK_FSYNC"] = "1"
            evtrack.set_tracking_uri(str(tmp.sub("evtrack-fsync")))
            fsync_rates, _ = _evtrack_calls(n, 2, compact=False)
            fsync_sync = _evtrack_synchronous(n_sync // 4)
            os.environ.pop("EVTRACK_FSYNC")
            log(
                f"evtrack EVTRACK_FSYNC=1: {max(fsync_rates):,.0f}/s buffered, {fsync_sync:,.0f}/s synchronous=True"
            )

        compaction = compaction_module()
        compact_ends = None
        if compaction is not None:
            evtrack.set_tracking_uri(str(tmp.sub("evtrack-compact")))
            _, compact_ends = _evtrack_calls(n, 1 if q else 3, compact=True)
            log(f"evtrack end_run with auto-compaction: {summary(compact_ends)}")

        ml: dict[tuple[str, bool], float] = {}
        template = os.environ.get("EVTRACK_BENCH_MLFLOW_DB") or str(tmp.path / "template.db")
        for store in ("sqlite", "file"):
            res = run_mlflow(
                python,
                "log_metric",
                {
                    "store": store,
                    "root": str(tmp.sub(f"mlflow-{store}")),
                    "n": n_ml[store],
                    "modes": [True] if q else [True, False],
                    "template": template,
                },
                workdir=tmp.path,
                timeout=900,
                verbose=args.verbose,
            )
            if report_error(f"MLflow {store}", res):
                continue
            for mode, sync in (("sync", True), ("async", False)):
                if mode in res:
                    ml[(store, sync)] = max(res[mode])
                    log(
                        f"MLflow {store} synchronous={sync}: {ml[(store, sync)]:,.0f} calls/s ({res['n']:,} calls)"
                    )

    rows.append(
        Row(
            "log_metric, 1 thread, until durable (calls + flush)",
            "/s",
            max(rates),
            ml.get(("sqlite", True)),
            ml.get(("file", True)),
            note=(
                f"evtrack: {n:,} calls then flush(), best of {repeats}; MLflow:"
                f" {n_ml['sqlite']:,} (sqlite) / {n_ml['file']:,} (file) calls, each durable"
                f" on return. Python floor for the same call: {empty / 1e6:.2g} M/s to an"
                f" empty function, {minimal / 1e6:.2g} M/s to one that takes a timestamp and"
                " appends to a list"
            ),
            target="≥ 500 k/s",
            extra={"floor_empty": empty, "floor_minimal": minimal, "all": rates},
        )
    )
    rows.append(
        Row(
            "log_metric until durable / Python tuple-append floor",
            "x",
            max(rates) / tuple_wall,
            note=(
                f"floor: a function appending (key, value, step, time_ns()) to a list,"
                f" {tuple_wall / 1e6:.2g} M/s; by process CPU time (both threads, steadier"
                f" on a shared machine) {max(_CPU_RATES) / tuple_cpu:.3f}x"
            ),
            target="≥ 0.35×",
        )
    )
    rows.append(
        Row(
            "log_metric(synchronous=True), each call durable",
            "/s",
            sync_rate,
            ml.get(("sqlite", True)),
            ml.get(("file", True)),
            note=f"evtrack writes one segment file per call ({n_sync:,} calls, no fsync)",
        )
    )
    if ("sqlite", False) in ml or ("file", False) in ml:
        rows.append(
            Row(
                "log_metric, MLflow synchronous=False + flush",
                "/s",
                max(rates),
                ml.get(("sqlite", False)),
                ml.get(("file", False)),
                note="evtrack column: its default (buffered) mode, the figure of the first row",
            )
        )
    if fsync_rates is not None:
        rows.append(
            Row(
                "log_metric + flush with EVTRACK_FSYNC=1",
                "/s",
                max(fsync_rates),
                note=f"and synchronous=True with fsync: {fsync_sync:,.0f} calls/s",
            )
        )
    rows.append(
        Row(
            f"end_run() after {n:,} points, no compaction",
            "s",
            min(ends),
            note="after flush(): what is left is the run's status events",
        )
    )
    if compact_ends is not None:
        rows.append(
            Row(
                f"end_run() after {n:,} points, EVTRACK_AUTO_COMPACT=1",
                "s",
                min(compact_ends),
                note="includes compacting the run's segments (evtrack.store.log.compaction)",
            )
        )
    emit(rows, args, "log_metric")
    return rows


if __name__ == "__main__":
    main()
