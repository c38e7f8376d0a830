"""The store on a real S3 API (moto's server on 127.0.0.1): conditional PUTs, fresh
listings, request counts, storage_options, and no DuckDB httpfs."""

from __future__ import annotations

import pytest
from helpers import run_python, subprocess_env

import evtrack
from evtrack.store.log import compaction
from evtrack.store.log.layout import Store
from evtrack.store.log.views import load_events


@pytest.fixture
def s3_uri(s3_server) -> str:
    return s3_server.uri()


def test_create_only_put_is_a_conditional_put(s3_uri):
    store = Store(s3_uri)
    path = store.path("x", "claim.json")
    store.put(path, b"1", create_only=True)
    with pytest.raises(FileExistsError):
        store.put(path, b"2", create_only=True)
    assert store.read_bytes(path) == b"1"


def test_storage_options_are_passed_through(s3_server):
    import fsspec.config

    saved = dict(fsspec.config.conf.get("s3", {}))
    fsspec.config.conf["s3"].pop("endpoint_url", None)
    try:
        store = Store(
            s3_server.uri(), {"endpoint_url": s3_server.endpoint, "skip_instance_cache": True}
        )
        store.put(store.path("a"), b"ok", create_only=True)
        assert store.read_bytes(store.path("a")) == b"ok"
    finally:
        fsspec.config.conf["s3"] = saved


def test_a_reader_sees_other_processes_events_without_restarting(s3_uri):
    client = evtrack.MlflowClient(s3_uri)
    exp = client.create_experiment("live")
    run_id = client.create_run(exp).info.run_id
    client.flush()
    assert load_events(client.store.layout, [exp], run_id).num_rows > 0
    before = len(client.get_metric_history(run_id, "m"))
    code = (
        "import sys, evtrack\n"
        "c = evtrack.MlflowClient(sys.argv[1])\n"
        "c.log_metric(sys.argv[2], 'm', 1.0, step=1)\n"
        "c.flush()\n"
    )
    run_python(code, s3_uri, run_id, env=subprocess_env(s3_uri))
    assert len(client.get_metric_history(run_id, "m")) == before + 1


def test_search_lists_each_folder_once_and_never_needs_httpfs(s3_uri, monkeypatch):
    monkeypatch.setenv("EVTRACK_AUTO_COMPACT", "false")
    client = evtrack.MlflowClient(s3_uri)
    exp = client.create_experiment("count")
    runs = []
    for i in range(30):
        run_id = client.create_run(exp).info.run_id
        client.log_param(run_id, "i", str(i))
        client.log_metric(run_id, "m", float(i))
        runs.append(run_id)
    client.flush()
    store = client.store.layout
    compaction.compact_experiment(store, exp)
    client.log_metric(runs[0], "m", 100.0, step=1)  # one run with an uncompacted segment
    client.flush()
    calls = {"ls": 0, "cat": 0}
    real_ls, real_cat, real_cat_file = store.fs.ls, store.fs.cat, store.fs.cat_file

    def ls(*a, **k):
        calls["ls"] += 1
        return real_ls(*a, **k)

    def cat(*a, **k):
        calls["cat"] += 1
        return real_cat(*a, **k)

    def cat_file(*a, **k):
        calls["cat"] += 1
        return real_cat_file(*a, **k)

    monkeypatch.setattr(store.fs, "ls", ls)
    monkeypatch.setattr(store.fs, "cat", cat)
    monkeypatch.setattr(store.fs, "cat_file", cat_file)
    found = client.search_runs([exp], "metrics.m >= 29")
    assert {r.info.run_id for r in found} == {runs[0], runs[29]}
    # listings: the experiments folder, the manifest folder and the events folder, not 30
    assert calls["ls"] <= 4, calls
    assert calls["cat"] <= 6, calls
    import duckdb

    loaded = duckdb.sql(
        "select loaded from duckdb_extensions() where extension_name = 'httpfs'"
    ).fetchall()
    assert loaded in ([], [(False,)])
