"""Compaction and read-path figures, on a local folder and on moto's S3 server.

    python benchmarks/compaction_bench.py            # local + S3 (starts moto itself)
    python benchmarks/compaction_bench.py --no-s3
    EVTRACK_BENCH_RUNS=2000 python benchmarks/compaction_bench.py   # smaller

Prints: time to compact a run of 1,000,000 points; metric history of that run;
search over N runs (default 10,000) with 10 % of the runs uncompacted and after
compaction, cold (fresh caches) and warm, with the storage requests per query.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
os.environ["EVTRACK_AUTO_COMPACT"] = "false"

import evtrack  # noqa: E402
from evtrack.search import compile_search_runs  # noqa: E402
from evtrack.store.log import compaction  # noqa: E402
from evtrack.store.log.layout import Store, _TableCache  # noqa: E402
from evtrack.store.log.maintenance import gc  # noqa: E402
from evtrack.store.log.views import connect, load_events  # noqa: E402
from evtrack.store.log.writer import Writer  # noqa: E402

RUNS = int(os.environ.get("EVTRACK_BENCH_RUNS", "10000"))


def t(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - start, out


class Counter:
    """Counts listings and reads on a store's filesystem."""

    def __init__(self, store: Store) -> None:
        self.n = {"list": 0, "get": 0}
        fs = store.fs
        for name, kind in (("ls", "list"), ("cat", "get"), ("cat_file", "get")):
            real = getattr(fs, name)

            def wrapped(*a, _real=real, _kind=kind, **k):
                self.n[_kind] += len(a[0]) if _kind == "get" and isinstance(a[0], list) else 1
                return _real(*a, **k)

            setattr(fs, name, wrapped)
        if store.is_local:
            import os as _os

            real_listdir = _os.listdir

            def listdir(p, _real=real_listdir):
                self.n["list"] += 1
                return _real(p)

            self._restore = (_os, real_listdir)
            _os.listdir = listdir

    def reset(self):
        self.n = {"list": 0, "get": 0}


def million_point_run(uri: str) -> None:
    client = evtrack.MlflowClient(uri)
    exp = client.create_experiment("million")
    run_id = client.create_run(exp).info.run_id
    for chunk in range(10):  # ten flushes of 100,000 points, as a training job would
        steps = np.arange(chunk * 100_000, (chunk + 1) * 100_000)
        client.log_metric_series(run_id, "loss", np.sin(steps / 1000.0), steps=steps)
        client.flush()
    store = client.store.layout
    secs, res = t(compaction.compact_run, store, exp, run_id)
    print(f"  compact a run of 1,000,000 points: {secs:.3f} s ({res.segments} segments)")
    store.cache = _TableCache()
    secs, hist = t(client.get_metric_history_arrow, run_id, "loss")
    print(f"  metric history, 1,000,000 points, cold: {secs:.3f} s ({hist.num_rows} rows)")
    secs, hist = t(client.get_metric_history_arrow, run_id, "loss")
    print(f"  metric history, 1,000,000 points, warm: {secs:.3f} s")


def make_runs(store: Store, exp: str, first: int, n: int) -> None:
    """n runs as a tracking job writes them: attributes, 3 params, 2 tags, 3 metrics."""
    w = Writer(store)
    now = int(time.time() * 1000)
    for i in range(first, first + n):
        run_id = f"{i:032x}"
        for key, value in (
            ("experiment_id", exp),
            ("run_name", f"run-{i}"),
            ("user_id", "bench"),
            ("status", "FINISHED"),
            ("start_time", str(now + i)),
            ("end_time", str(now + i + 10)),
            ("lifecycle_stage", "active"),
        ):
            w.add(exp, run_id, "run", key, value, time_ms=now + i)
        for key in ("alpha", "beta", "layers"):
            w.add(exp, run_id, "param", key, str(i % 7), time_ms=now + i)
        w.add(exp, run_id, "tag", "team", "abc"[i % 3], time_ms=now + i)
        w.add(exp, run_id, "tag", "mlflow.runName", f"run-{i}", time_ms=now + i)
        buf = w.metric_buffer(exp, run_id)
        for step in range(3):
            buf.extend(("rmse", (i % 1000) / 1000 + step, step, now + i))
            buf.extend(("acc", 1 - (i % 1000) / 1000, step, now + i))
        if i % 500 == 499:
            w.flush()
    w.flush()


def search(store: Store, exp: str, history: bool) -> int:
    from evtrack.tracking.client import MlflowClient

    sql, params, _ = compile_search_runs(
        [exp], "metrics.rmse < 2.5 and params.alpha = '3'", 1, 1000, ["metrics.rmse ASC"], None
    )
    con = connect(load_events(store, [exp], history=history))
    ids = [r[0] for r in con.execute(sql, params).fetchall()]
    return len(MlflowClient._runs_from(None, con, ids[:1000]))


def search_figures(label: str, store: Store, exp: str, counter: Counter) -> None:
    for history in (False, True):
        store.cache = _TableCache()
        counter.reset()
        secs, n = t(search, store, exp, history)
        reqs = dict(counter.n)
        warm, _ = t(search, store, exp, history)
        kind = "reduced (history=False)" if not history else "full (history=True) "
        print(
            f"  {label:34s} {kind}: cold {secs:.3f} s, warm {warm:.3f} s, {n} hits, requests {reqs}"
        )


def bench_store(uri: str, local_src: str | None = None) -> None:
    store = Store(uri)
    store.ensure()
    counter = Counter(store)
    exp = "1"
    if local_src is None:
        store.ensure_experiment_dir(exp, {"name": "bench"})
        cut = RUNS - RUNS // 10
        make_runs(store, exp, 0, cut)
        secs, res = t(compaction.compact_experiment, store, exp)
        print(f"  compact_experiment of {cut} runs: {secs:.2f} s")
        make_runs(store, exp, cut, RUNS - cut)
    search_figures(f"{RUNS} runs, 10% uncompacted", store, exp, counter)
    secs, _ = t(gc, store, grace_seconds=0)
    search_figures("  ... after gc", store, exp, counter)
    secs, res = t(compaction.compact_experiment, store, exp)
    print(f"  compact_experiment (10% runs new): {secs:.2f} s")
    search_figures(f"{RUNS} runs, all compacted", store, exp, counter)
    gc(store, grace_seconds=0)
    search_figures("  ... after gc", store, exp, counter)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--no-s3", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        print("local folder")
        million_point_run(os.path.join(tmp, "million"))
        bench_store(os.path.join(tmp, "runs"))
        if args.no_s3:
            return
        from s3_server import configure_s3fs, start_server

        server = start_server()
        try:
            configure_s3fs(server.endpoint)
            import s3fs

            s3fs.S3FileSystem().mkdir(server.bucket)
            print("moto S3 server on 127.0.0.1 (~100 requests/s: request counts matter)")
            million_point_run(server.uri("million"))
            # upload a store with 10% of runs uncompacted and covered segments collected
            src = os.path.join(tmp, "s3src")
            local = Store("file://" + src)
            local.ensure()
            local.ensure_experiment_dir("1", {"name": "bench"})
            cut = RUNS - RUNS // 10
            make_runs(local, "1", 0, cut)
            compaction.compact_experiment(local, "1")
            gc(local, grace_seconds=0)
            make_runs(local, "1", cut, RUNS - cut)
            uri = server.uri("runs")
            fs = s3fs.S3FileSystem()
            secs, _ = t(fs.put, src + "/", uri[len("s3://") :], recursive=True)
            print(f"  (uploaded the store in {secs:.0f} s)")
            bench_store(uri, local_src=src)
        finally:
            server.process.terminate()


if __name__ == "__main__":
    main()
