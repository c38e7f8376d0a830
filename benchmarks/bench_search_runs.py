"""``search_runs`` over 10,000 runs with a filter, and how fast runs can be created.

Each run has 3 params, 3 metrics and 2 tags (``_workload.run_spec``); the filter is
``metrics.rmse < 0.5 and params.alpha = '0.3'`` (about 5 % of the runs match; both sides
must return the same number, printed as a cross-check). The call is
``MlflowClient().search_runs([experiment_id], filter, max_results=10000)`` on both sides:
the first call in a fresh process ("cold"), then the best of the next calls ("warm").
The first fresh process finds no saved run index (the runs were written, never searched);
a second one starts from the index the first saved (``store/log/index_cache.py``).

Creating the runs: the first runs go through the API (``create_run`` + ``log_batch`` +
``set_terminated``), which is timed; the rest are written in each system's own format,
because creating 10,000 runs through either API takes too long here (MLflow's sqlite
store does a few runs per second, and evtrack's ``create_run`` rereads the store, so its
rate falls as the store grows: see the "runs created" rows). evtrack's bulk runs are the
events its API writes, through its own writer, one segment per run (the API writes two:
``log_batch`` and ``set_terminated`` each flush).

    python benchmarks/bench_search_runs.py [--quick] [--no-mlflow]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid

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
from _workload import BASE_TIMESTAMP_MS, SEARCH_FILTER, expected_matches, run_spec  # noqa: E402

_COLD = r"""
import json, sys, time
import evtrack
uri, experiment_id, flt, warm_n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
client = evtrack.MlflowClient(uri)
times = []
for _ in range(1 + warm_n):
    t = time.perf_counter()
    runs = client.search_runs([experiment_id], flt, max_results=10_000)
    times.append(time.perf_counter() - t)
evtrack.set_tracking_uri(uri)
pandas_times = []
for _ in range(2):
    t = time.perf_counter()
    df = evtrack.search_runs([experiment_id], flt, max_results=10_000)
    pandas_times.append(time.perf_counter() - t)
print(json.dumps({"cold": times[0], "warm": times[1:], "matches": len(runs),
                  "pandas": pandas_times, "pandas_rows": len(df)}))
"""


def _api_runs(client, experiment_id: str, n: int, start: int = 0) -> list[float]:
    """Create runs start..start+n-1 through the API; the time of each."""
    from evtrack.entities import Metric, Param, RunTag

    times = []
    for i in range(start, start + n):
        spec = run_spec(i)
        t0 = time.perf_counter()
        run_id = client.create_run(experiment_id).info.run_id
        client.log_batch(
            run_id,
            metrics=[Metric(k, v, BASE_TIMESTAMP_MS, 0) for k, v in spec["metrics"].items()],
            params=[Param(k, v) for k, v in spec["params"].items()],
            tags=[RunTag(k, v) for k, v in spec["tags"].items()],
        )
        client.set_terminated(run_id)
        times.append(time.perf_counter() - t0)
    return times


def _bulk_runs(uri: str, experiment_id: str, location: str, start: int, stop: int) -> None:
    """Runs start..stop-1 as the events ``create_run`` + ``log_batch`` + ``set_terminated``
    write, through evtrack's own writer, one flush (segment) per run."""
    import evtrack
    from evtrack.clock import now_ms
    from evtrack.tracking.context import user_name

    client = evtrack.MlflowClient(uri)
    store, writer = client.store.layout, client.writer
    location = location.rstrip("/")
    user = user_name()
    for i in range(start, stop):
        spec = run_spec(i)
        run_id = uuid.uuid4().hex
        name = f"bulk-{i}"
        store.claim_run_id(run_id, experiment_id)
        t = now_ms()
        attrs = {
            "experiment_id": experiment_id,
            "run_name": name,
            "user_id": user,
            "status": "RUNNING",
            "start_time": str(t),
            "lifecycle_stage": "active",
            "artifact_uri": f"{location}/{run_id}/artifacts",
        }
        for key, value in attrs.items():
            writer.add(experiment_id, run_id, "run", key, value, time_ms=t)
        writer.add(experiment_id, run_id, "tag", "mlflow.runName", name, time_ms=t)
        for key, value in spec["params"].items():
            writer.add(experiment_id, run_id, "param", key, value, time_ms=t)
        for key, value in spec["tags"].items():
            writer.add(experiment_id, run_id, "tag", key, value, time_ms=t)
        buf = writer.metric_buffer(experiment_id, run_id)
        for key, value in spec["metrics"].items():
            buf.extend((key, value, 0, BASE_TIMESTAMP_MS))
        writer.add(experiment_id, run_id, "run", "status", "FINISHED", time_ms=t)
        writer.add(experiment_id, run_id, "run", "end_time", str(t), time_ms=t)
        writer.flush()
        release = getattr(writer, "release", None)  # what set_terminated does since 3dec43d
        if release is not None:
            release(experiment_id, run_id)


_BULK_CHUNK = 1000  # runs per worker process (see _bulk)


def _bulk(uri: str, experiment_id: str, start: int, stop: int) -> None:
    """Write runs start..stop-1 with ``_bulk_runs`` in worker processes, two at a time,
    1,000 runs each (two cores; and a writer older than 3dec43d visited every run it had
    ever buffered on each flush, which made one process writing 10,000 runs quadratic).
    """
    import evtrack

    location = evtrack.MlflowClient(uri).get_experiment(experiment_id).artifact_location
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "from bench_search_runs import _bulk_runs;"
        "_bulk_runs(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6]))"
    )
    here = os.path.dirname(os.path.abspath(__file__))
    chunks = [(a, min(a + _BULK_CHUNK, stop)) for a in range(start, stop, _BULK_CHUNK)]
    running: list[subprocess.Popen] = []

    def wait(proc: subprocess.Popen) -> None:
        if proc.wait():
            raise RuntimeError(f"bulk run writer exited {proc.returncode}")

    for a, b in chunks:
        if len(running) == 2:
            wait(running.pop(0))
        cmd = [sys.executable, "-c", code, here, uri, experiment_id, location, str(a), str(b)]
        running.append(subprocess.Popen(cmd))
    for proc in running:
        wait(proc)


def _search(uri: str, experiment_id: str, warm: int) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", _COLD, uri, experiment_id, SEARCH_FILTER, str(warm)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if out.returncode != 0:
        return {"error": " | ".join(out.stderr.strip().splitlines()[-3:])}
    return json.loads(out.stdout.strip().splitlines()[-1])


def _describe(label: str, r: dict) -> None:
    if "error" in r:
        log(f"{label}: failed: {r['error']}")
    else:
        log(
            f"{label}: cold {r['cold']:.3f} s, warm {min(r['warm']):.3f} s, {r['matches']} matches;"
            f" as pandas (warm) {min(r['pandas']):.3f} s"
        )


def main(argv: list[str] | None = None) -> list[Row]:
    args = parser(__doc__.splitlines()[0]).parse_args(argv)
    q = args.quick
    n_runs = 2_000 if q else 10_000
    n_api = 30 if q else 500
    warm = 2 if q else 3
    stores = ("sqlite",) if q else ("sqlite", "file")
    python = mlflow_python(args)
    expected = expected_matches(n_runs)
    print(
        f"search_runs: {n_runs:,} runs ({n_api} through the API), filter {SEARCH_FILTER!r},"
        f" {expected} expected matches; MLflow stores {stores}"
    )
    os.environ["EVTRACK_AUTO_COMPACT"] = "0"

    ev: dict[str, dict] = {}
    ml: dict[str, dict] = {}
    with TempRoot("search", args.keep) as tmp:
        import evtrack

        uri = str(tmp.sub("evtrack"))
        # Saved run indexes (store/log/index_cache.py) stay in this run's folder. The first
        # fresh process has none (the runs were written, never searched); a second one
        # starts from what the first saved.
        os.environ["EVTRACK_INDEX_CACHE_DIR"] = str(tmp.sub("index-cache"))
        client = evtrack.MlflowClient(uri)
        experiment_id = client.create_experiment("bench-search")
        api_times = _api_runs(client, experiment_id, n_api)
        tail = api_times[-max(1, n_api // 10) :]
        api_rate = n_api / sum(api_times)
        api_first = len(api_times[:10]) / sum(api_times[:10])
        api_last = len(tail) / sum(tail)
        log(
            f"evtrack API: {api_rate:.1f} runs/s over {n_api} runs (first 10: {api_first:.1f}/s,"
            f" last {len(tail)}: {api_last:.1f}/s)"
        )
        t0 = time.perf_counter()
        _bulk(uri, experiment_id, n_api, n_runs)
        bulk_s = time.perf_counter() - t0
        n_files = len(os.listdir(client.store.layout.events_dir(experiment_id)))
        log(
            f"evtrack bulk: {n_runs - n_api:,} runs in {bulk_s:.1f} s (2 processes);"
            f" {n_files:,} segment files"
        )

        ev["raw"] = _search(uri, experiment_id, warm)
        _describe("evtrack, uncompacted", ev["raw"])
        ev["raw_saved"] = _search(uri, experiment_id, 1)
        _describe("evtrack, uncompacted, saved index", ev["raw_saved"])
        compaction = compaction_module()
        compact_s = None
        if compaction is not None:
            from evtrack.store.log.layout import get_store

            t0 = time.perf_counter()
            try:
                compaction.compact_experiment(get_store(uri), experiment_id)
                compact_s = time.perf_counter() - t0
                log(f"evtrack compact_experiment: {compact_s:.2f} s")
                ev["compacted"] = _search(uri, experiment_id, warm)
                _describe("evtrack, compacted", ev["compacted"])
                ev["compacted_saved"] = _search(uri, experiment_id, 1)
                _describe("evtrack, compacted, saved index", ev["compacted_saved"])
            except Exception as exc:  # noqa: BLE001 - report, do not stop the suite
                log(f"evtrack compaction failed: {type(exc).__name__}: {exc}")

        template = os.environ.get("EVTRACK_BENCH_MLFLOW_DB") or str(tmp.path / "template.db")
        for store in stores:
            res = run_mlflow(
                python,
                "search_load",
                {
                    "store": store,
                    "root": str(tmp.sub(f"mlflow-{store}")),
                    "n_runs": n_runs,
                    "n_api": n_api,
                    "template": template,
                },
                workdir=tmp.path,
                timeout=1800,
                verbose=args.verbose,
            )
            if report_error(f"MLflow {store} (creating runs)", res):
                continue
            log(
                f"MLflow {store} API: {res['api_rate']:.1f} runs/s over {res['api_runs']} runs; bulk {res['bulk_s']:.1f} s"
            )
            read = run_mlflow(
                python,
                "search_read",
                {
                    "uri": res["uri"],
                    "experiment_id": res["experiment_id"],
                    "filter": SEARCH_FILTER,
                    "warm_repeats": warm if store == "sqlite" else 1,
                },
                workdir=tmp.path,
                timeout=1800,
                verbose=args.verbose,
            )
            if report_error(f"MLflow {store} search", read):
                ml[store] = {"api_rate": res["api_rate"]}
                continue
            ml[store] = {**read, "api_rate": res["api_rate"]}
            log(
                f"MLflow {store}: cold {read['cold']:.3f} s, warm {min(read['warm']):.3f} s, {read['matches']} matches"
            )

    def evv(name: str, field: str) -> float | None:
        r = ev.get(name)
        if not r or "error" in r:
            return None
        return min(r[field]) if isinstance(r[field], list) else r[field]

    def mlv(store: str, field: str) -> float | None:
        r = ml.get(store)
        if not r or field not in r:
            return None
        return min(r[field]) if isinstance(r[field], list) else r[field]

    target = "< 0.2 s" if n_runs == 10_000 else ""
    counts = {"evtrack": ev.get("raw", {}).get("matches")}
    counts.update({f"MLflow {s}": ml[s].get("matches") for s in ml})
    check = ", ".join(f"{k} {v}" for k, v in counts.items() if v is not None)
    file_note = "" if "file" in stores else "; MLflow file store: full run only (~30 s a search)"
    rows = [
        Row(
            f"search_runs, {n_runs:,} runs, filter, first call in a fresh process",
            "s",
            evv("raw", "cold"),
            mlv("sqlite", "cold"),
            mlv("file", "cold"),
            note=f"evtrack uncompacted ({n_files:,} segment files); matches: {check} (expected {expected}){file_note}",
            target=target,
        ),
        Row(
            f"search_runs, {n_runs:,} runs, filter, first call, index saved by an earlier process",
            "s",
            evv("raw_saved", "cold"),
            mlv("sqlite", "cold"),
            mlv("file", "cold"),
            note="the previous row's process saved the run index (store/log/index_cache.py)",
        ),
        Row(
            f"search_runs, {n_runs:,} runs, filter, warm",
            "s",
            evv("raw", "warm"),
            mlv("sqlite", "warm"),
            mlv("file", "warm"),
            note="evtrack uncompacted",
            target=target,
        ),
    ]
    if "compacted" in ev:
        rows += [
            Row(
                f"search_runs, {n_runs:,} runs, compacted, first call in a fresh process",
                "s",
                evv("compacted", "cold"),
                mlv("sqlite", "cold"),
                mlv("file", "cold"),
                note=f"after compact_experiment ({compact_s:.1f} s); MLflow columns repeated",
                target=target,
            ),
            Row(
                f"search_runs, {n_runs:,} runs, compacted, first call, saved index",
                "s",
                evv("compacted_saved", "cold"),
                mlv("sqlite", "cold"),
                mlv("file", "cold"),
            ),
            Row(
                f"search_runs, {n_runs:,} runs, compacted, warm",
                "s",
                evv("compacted", "warm"),
                mlv("sqlite", "warm"),
                mlv("file", "warm"),
                target=target,
            ),
        ]
    best = "compacted" if "compacted" in ev else "raw"
    rows.append(
        Row(
            f"evtrack.search_runs → pandas, {n_runs:,} runs, warm",
            "s",
            evv(best, "pandas"),
            note=f"fluent API, DataFrame output ({best})",
        )
    )
    rows.append(
        Row(
            f"runs created through the API, first {n_api}",
            "/s",
            api_rate,
            mlv("sqlite", "api_rate"),
            mlv("file", "api_rate"),
            note=(
                f"create_run + log_batch(3 metrics, 3 params, 2 tags) + set_terminated."
                f" evtrack: first 10 at {api_first:.1f}/s, last {len(tail)} at {api_last:.1f}/s"
                " (create_run reads every experiment's events: the rate falls as the store grows)"
            ),
        )
    )
    emit(rows, args, "search_runs")
    return rows


if __name__ == "__main__":
    main()
