"""MLflow's side of the benchmarks; run with the MLflow virtualenv's python, never imported.

    <mlflow-venv>/bin/python benchmarks/_mlflow_side.py <operation> '<json params>'

prints one JSON line with the figures. Every operation works on the sqlite store
(``sqlite:///<root>/mlflow.db``) or the file store (``file://<root>/mlruns``, which
MLflow 3 refuses unless ``MLFLOW_ALLOW_FILE_STORE=true``), chosen by ``store``.

Bulk loading (``history_load``, and the runs of ``search_load`` past the ones created
through the API) writes MLflow's own storage format directly: SQL rows in the schema's
tables, or the file store's files. Loading a million points or ten thousand runs through
MLflow's API takes minutes to hours; what is timed there is the read, which goes through
MLflow's API as usual.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _workload import BASE_TIMESTAMP_MS, batch_keys, history_value, run_spec  # noqa: E402

os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")


def _uri(store: str, root: str) -> str:
    if store == "sqlite":
        return f"sqlite:///{root}/mlflow.db"
    return f"file://{root}/mlruns"


def _prepare(store: str, root: str, template: str | None) -> str:
    """The tracking URI, with a fresh store. A new sqlite database runs MLflow's schema
    migrations (seconds); with ``template`` they run once and later stores copy the file."""
    Path(root).mkdir(parents=True, exist_ok=True)
    uri = _uri(store, root)
    if store == "sqlite" and template:
        db = Path(root) / "mlflow.db"
        if Path(template).exists():
            shutil.copyfile(template, db)
        else:
            from mlflow import MlflowClient

            MlflowClient(uri).search_experiments()  # creates and migrates the database
            shutil.copyfile(db, template)
    return uri


def _rates(times: list[float], n: int) -> list[float]:
    return [n / t for t in times]


# -- writes ----------------------------------------------------------------------------


def op_log_metric(p: dict) -> dict:
    """``mlflow.log_metric`` calls from one thread: for each mode in ``modes``,
    ``synchronous=True`` (MLflow's default: durable when it returns) or
    ``synchronous=False`` followed by ``flush_async_logging()`` (inside the timing)."""
    import mlflow

    mlflow.set_tracking_uri(_prepare(p["store"], p["root"], p.get("template")))
    n = p["n"]
    out = {"n": n}
    for sync in p.get("modes", [True]):
        times = []
        for _ in range(p.get("repeats", 1)):
            mlflow.start_run()
            log_metric = mlflow.log_metric
            t0 = time.perf_counter()
            for i in range(n):
                log_metric("loss", 0.5, step=i, synchronous=sync)
            if not sync:
                mlflow.flush_async_logging()
            times.append(time.perf_counter() - t0)
            mlflow.end_run()
        out["sync" if sync else "async"] = _rates(times, n)
    return out


def op_log_batch(p: dict) -> dict:
    """``MlflowClient.log_batch`` with ``size`` metrics per call (Metric objects built
    beforehand, as on the evtrack side)."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    uri = _prepare(p["store"], p["root"], p.get("template"))
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    size, batches = p["size"], p["batches"]
    keys = batch_keys(size)
    times = []
    for _ in range(p.get("repeats", 1)):
        run_id = client.create_run("0").info.run_id
        data = [
            [Metric(k, float(j), BASE_TIMESTAMP_MS + b, b) for j, k in enumerate(keys)]
            for b in range(batches)
        ]
        t0 = time.perf_counter()
        for batch in data:
            client.log_batch(run_id, metrics=batch)
        times.append(time.perf_counter() - t0)
        client.set_terminated(run_id)
    return {"rates": _rates(times, size * batches), "points": size * batches}


# -- metric history --------------------------------------------------------------------


def op_history_load(p: dict) -> dict:
    """A run holding ``n`` points of ``loss`` (steps 0..n-1), loaded in MLflow's format."""
    from mlflow import MlflowClient

    uri = _prepare(p["store"], p["root"], p.get("template"))
    client = MlflowClient(uri)
    run = client.create_run("0")
    run_id = run.info.run_id
    client.set_terminated(run_id)
    n = p["n"]
    t0 = time.perf_counter()
    if p["store"] == "sqlite":
        con = sqlite3.connect(f"{p['root']}/mlflow.db")
        with con:
            con.executemany(
                "insert into metrics (key, value, timestamp, run_uuid, step, is_nan) "
                "values ('loss', ?, ?, ?, ?, 0)",
                ((history_value(s), BASE_TIMESTAMP_MS + s, run_id, s) for s in range(n)),
            )
            last = n - 1
            con.execute(
                "insert into latest_metrics (key, value, timestamp, step, is_nan, run_uuid) "
                "values ('loss', ?, ?, ?, 0, ?)",
                (history_value(last), BASE_TIMESTAMP_MS + last, last, run_id),
            )
        con.close()
    else:
        folder = Path(run.info.artifact_uri.replace("file://", "")).parent / "metrics"
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "loss", "w") as f:
            f.writelines(f"{BASE_TIMESTAMP_MS + s} {history_value(s)!r} {s}\n" for s in range(n))
    return {"uri": uri, "run_id": run_id, "load_s": time.perf_counter() - t0}


def op_history_read(p: dict) -> dict:
    """``MlflowClient.get_metric_history`` in this fresh process: first call, then warm."""
    from mlflow import MlflowClient

    client = MlflowClient(p["uri"])
    times = []
    count = None
    for _ in range(1 + p.get("warm_repeats", 2)):
        t0 = time.perf_counter()
        history = client.get_metric_history(p["run_id"], "loss")
        times.append(time.perf_counter() - t0)
        count = len(history)
        del history
    return {"cold": times[0], "warm": times[1:], "points": count}


# -- search ----------------------------------------------------------------------------


def _api_run(client, experiment_id: str, i: int) -> str:
    from mlflow.entities import Metric, Param, RunTag

    spec = run_spec(i)
    run_id = client.create_run(experiment_id).info.run_id
    client.log_batch(
        run_id,
        metrics=[Metric(k, v, BASE_TIMESTAMP_MS, 0) for k, v in spec["metrics"].items()],
        params=[Param(k, v) for k, v in spec["params"].items()],
        tags=[RunTag(k, v) for k, v in spec["tags"].items()],
    )
    client.set_terminated(run_id)
    return run_id


def _bulk_sqlite(db: str, template_run: str, start: int, stop: int) -> None:
    con = sqlite3.connect(db)
    cur = con.execute("select * from runs where run_uuid = ?", (template_run,))
    cols = [d[0] for d in cur.description]
    template = dict(zip(cols, cur.fetchone(), strict=True))
    spec_tags = set(run_spec(0)["tags"])
    base_tags = [
        (k, v)
        for k, v in con.execute("select key, value from tags where run_uuid = ?", (template_run,))
        if k not in spec_tags and k != "mlflow.runName"
    ]
    runs, params, tags, metrics, latest = [], [], [], [], []
    for i in range(start, stop):
        spec = run_spec(i)
        rid = uuid.uuid4().hex
        row = dict(template)
        row.update(
            run_uuid=rid,
            name=f"bulk-{i}",
            artifact_uri=template["artifact_uri"].replace(template_run, rid),
        )
        runs.append(tuple(row[c] for c in cols))
        params += [(k, v, rid) for k, v in spec["params"].items()]
        tags += [(k, v, rid) for k, v in base_tags]
        tags += [(k, v, rid) for k, v in spec["tags"].items()]
        tags.append(("mlflow.runName", f"bulk-{i}", rid))
        metrics += [(k, v, BASE_TIMESTAMP_MS, rid, 0, 0) for k, v in spec["metrics"].items()]
        latest += [(k, v, BASE_TIMESTAMP_MS, 0, 0, rid) for k, v in spec["metrics"].items()]
    with con:
        con.executemany(
            f"insert into runs ({', '.join(cols)}) values ({', '.join('?' * len(cols))})", runs
        )
        con.executemany("insert into params (key, value, run_uuid) values (?, ?, ?)", params)
        con.executemany("insert into tags (key, value, run_uuid) values (?, ?, ?)", tags)
        con.executemany(
            "insert into metrics (key, value, timestamp, run_uuid, step, is_nan)"
            " values (?, ?, ?, ?, ?, ?)",
            metrics,
        )
        con.executemany(
            "insert into latest_metrics (key, value, timestamp, step, is_nan, run_uuid)"
            " values (?, ?, ?, ?, ?, ?)",
            latest,
        )
    con.close()


def _bulk_file(run_dir: Path, template_run: str, start: int, stop: int) -> None:
    meta = (run_dir / "meta.yaml").read_text()
    tags_dir = run_dir / "tags"
    spec_tags = set(run_spec(0)["tags"])
    base_tags = {
        f.name: f.read_text()
        for f in tags_dir.iterdir()
        if f.name not in spec_tags and f.name != "mlflow.runName"
    }
    exp_dir = run_dir.parent
    name_line = next(ln for ln in meta.splitlines() if ln.startswith("run_name:"))
    for i in range(start, stop):
        spec = run_spec(i)
        rid = uuid.uuid4().hex
        d = exp_dir / rid
        for sub in ("params", "metrics", "tags", "artifacts"):
            (d / sub).mkdir(parents=True)
        (d / "meta.yaml").write_text(
            meta.replace(template_run, rid).replace(name_line, f"run_name: bulk-{i}")
        )
        for k, v in spec["params"].items():
            (d / "params" / k).write_text(v)
        for k, v in spec["metrics"].items():
            (d / "metrics" / k).write_text(f"{BASE_TIMESTAMP_MS} {v!r} 0\n")
        for k, v in {**base_tags, **spec["tags"], "mlflow.runName": f"bulk-{i}"}.items():
            (d / "tags" / k).write_text(v)


def op_search_load(p: dict) -> dict:
    """``n_runs`` runs in a new experiment: the first ``n_api`` through the API (timed:
    create_run + log_batch + set_terminated), the rest written in MLflow's format."""
    from mlflow import MlflowClient

    uri = _prepare(p["store"], p["root"], p.get("template"))
    client = MlflowClient(uri)
    experiment_id = client.create_experiment("bench-search")
    n_api, n_runs = min(p["n_api"], p["n_runs"]), p["n_runs"]
    t0 = time.perf_counter()
    first = None
    for i in range(n_api):
        rid = _api_run(client, experiment_id, i)
        first = first or rid
    api_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    if n_runs > n_api:
        if p["store"] == "sqlite":
            _bulk_sqlite(f"{p['root']}/mlflow.db", first, n_api, n_runs)
        else:
            run_dir = Path(client.get_run(first).info.artifact_uri.replace("file://", "")).parent
            _bulk_file(run_dir, first, n_api, n_runs)
    return {
        "uri": uri,
        "experiment_id": experiment_id,
        "api_runs": n_api,
        "api_rate": n_api / api_s if api_s else None,
        "bulk_s": time.perf_counter() - t0,
    }


def op_search_read(p: dict) -> dict:
    """``MlflowClient.search_runs`` with the filter, in this fresh process: first, then warm
    (``imports``: importing mlflow and making the client, before the first call)."""
    t_import = time.perf_counter()
    from mlflow import MlflowClient

    client = MlflowClient(p["uri"])
    imports = time.perf_counter() - t_import
    times, count = [], None
    for _ in range(1 + p.get("warm_repeats", 2)):
        t0 = time.perf_counter()
        runs = client.search_runs(
            [p["experiment_id"]], p["filter"], max_results=p.get("max_results", 10_000)
        )
        times.append(time.perf_counter() - t0)
        count = len(runs)
    return {"cold": times[0], "warm": times[1:], "matches": count, "imports": imports}


def op_import_load(p: dict) -> dict:
    """``runs`` runs (made through MLflow's API) with ``metrics`` keys of ``steps`` points
    each, the points written as rows of MLflow's sqlite schema (API logging of millions
    of points would take far longer than the import being measured)."""
    from mlflow import MlflowClient

    uri = _prepare("sqlite", p["root"], None)
    client = MlflowClient(uri)
    exp = client.create_experiment("import-bench")
    t0 = time.perf_counter()
    run_ids = []
    for i in range(p["runs"]):
        run = client.create_run(exp, run_name=f"r{i}", tags={"i": str(i)})
        client.log_param(run.info.run_id, "alpha", str(i / 10))
        client.set_terminated(run.info.run_id)
        run_ids.append(run.info.run_id)
    keys = [f"m{k}" for k in range(p["metrics"])]
    steps = p["steps"]
    con = sqlite3.connect(f"{p['root']}/mlflow.db")
    with con:
        for rid in run_ids:
            con.executemany(
                "insert into metrics (key, value, timestamp, run_uuid, step, is_nan) "
                "values (?, ?, ?, ?, ?, 0)",
                (
                    (k, history_value(s) + j, BASE_TIMESTAMP_MS + s, rid, s)
                    for j, k in enumerate(keys)
                    for s in range(steps)
                ),
            )
            con.executemany(
                "insert into latest_metrics (key, value, timestamp, step, is_nan, run_uuid) "
                "values (?, ?, ?, ?, 0, ?)",
                (
                    (k, history_value(steps - 1) + j, BASE_TIMESTAMP_MS + steps - 1, steps - 1, rid)
                    for j, k in enumerate(keys)
                ),
            )
    con.close()
    return {"uri": uri, "load_s": time.perf_counter() - t0}


def op_import_read(p: dict) -> dict:
    """MLflow reading every metric history of the store (get_metric_history per run, key);
    with ``max_runs``, only that many runs' (MLflow reads ~15 k points/s: 10 M points
    would take over ten minutes, so the full-size benchmark times a sample)."""
    from mlflow import MlflowClient
    from mlflow.entities import ViewType

    client = MlflowClient(p["uri"])
    exp = client.get_experiment_by_name("import-bench")
    limit = p.get("max_runs")
    t0 = time.perf_counter()
    points, seen, token = 0, 0, None
    while limit is None or seen < limit:
        runs = client.search_runs([exp.experiment_id], "", ViewType.ALL, 1000, page_token=token)
        for run in runs[: None if limit is None else limit - seen]:
            seen += 1
            for key in run.data.metrics:
                points += len(client.get_metric_history(run.info.run_id, key))
        token = runs.token
        if not token:
            break
    return {"points": points, "runs": seen, "seconds": time.perf_counter() - t0}


def op_sweep_step(p: dict) -> dict:
    """One point of the sweep curve: grow the store to ``n_runs`` runs, the last
    ``window`` through the API (timed), the rest written in MLflow's format; then the
    filtered search, warm (this process already read the store through the API).

    The first call (no ``uri``) makes the store and the experiment; later calls pass
    back ``uri``, ``experiment_id``, ``first`` and ``have`` from the previous result.
    """
    from mlflow import MlflowClient

    uri = p.get("uri") or _prepare(p["store"], p["root"], p.get("template"))
    client = MlflowClient(uri)
    experiment_id = p.get("experiment_id") or client.create_experiment("bench-sweep")
    have, first = p.get("have", 0), p.get("first")
    if first is None:
        first, have = _api_run(client, experiment_id, 0), 1
    target, window = p["n_runs"], p["window"]
    bulk_to = max(have, target - window)
    if bulk_to > have:
        if p["store"] == "sqlite":
            _bulk_sqlite(f"{p['root']}/mlflow.db", first, have, bulk_to)
        else:
            run_dir = Path(client.get_run(first).info.artifact_uri.replace("file://", "")).parent
            _bulk_file(run_dir, first, have, bulk_to)
        have = bulk_to
    t0 = time.perf_counter()
    for i in range(have, target):
        _api_run(client, experiment_id, i)
    api_s = time.perf_counter() - t0
    made = target - have
    times, count = [], None
    for _ in range(p.get("warm_repeats", 3)):
        t0 = time.perf_counter()
        runs = client.search_runs([experiment_id], p["filter"], max_results=p["max_results"])
        times.append(time.perf_counter() - t0)
        count = len(runs)
    return {
        "uri": uri,
        "experiment_id": experiment_id,
        "first": first,
        "have": target,
        "api_runs": made,
        "api_rate": made / api_s if api_s and made else None,
        "warm": times,
        "matches": count,
    }


OPS = {name[3:]: fn for name, fn in globals().items() if name.startswith("op_")}


def main() -> None:
    op, params = sys.argv[1], json.loads(sys.argv[2])
    import logging

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    import mlflow

    out = OPS[op](params)
    out["mlflow_version"] = mlflow.__version__
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
