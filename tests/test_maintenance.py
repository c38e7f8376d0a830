"""gc and doctor: what is deleted when, what is reported, what --repair rebuilds."""

from __future__ import annotations

import json
import os

import pytest
from click.testing import CliRunner

import evtrack
from evtrack.cli.main import main
from evtrack.store.log import compaction
from evtrack.store.log.maintenance import doctor, gc
from evtrack.store.log.manifest import list_versions, read_manifest
from evtrack.store.log.snapshot import list_segments
from evtrack.store.log.views import load_events


@pytest.fixture
def store_with_runs(log_store_uri, monkeypatch):
    monkeypatch.setenv("EVTRACK_AUTO_COMPACT", "false")
    evtrack.set_tracking_uri(log_store_uri)
    client = evtrack.MlflowClient(log_store_uri)
    exp = client.create_experiment("gc")
    ids = []
    for i in range(3):
        with evtrack.start_run(experiment_id=exp) as run:
            evtrack.log_param("i", i)
            evtrack.log_text("hello", "notes/a.txt")
            for s in range(50):
                evtrack.log_metric("m", s, step=s)
        ids.append(run.info.run_id)
    return client, exp, ids


def _count(store, exp):
    return load_events(store, [exp]).num_rows


def test_gc_deletes_replaced_segments_only_after_the_grace_period(store_with_runs):
    client, exp, _ = store_with_runs
    store = client.store.layout
    n = _count(store, exp)
    compaction.compact_experiment(store, exp)
    segments = len(list_segments(store, exp))
    assert segments > 0
    report = gc(store, grace_seconds=3600)
    assert report.segments_deleted == 0 and len(list_segments(store, exp)) == segments
    report = gc(store, grace_seconds=0)
    assert report.segments_deleted == segments
    assert list_segments(store, exp) == []
    assert read_manifest(store, exp).coverage.count() == 0  # coverage pruned with them
    assert _count(store, exp) == n
    assert doctor(store).ok


def test_gc_removes_old_manifests_but_keeps_recent_ones(store_with_runs):
    client, exp, ids = store_with_runs
    store = client.store.layout
    for run_id in ids:
        compaction.compact_run(store, exp, run_id)
    for _ in range(12):
        client.log_metric(ids[0], "extra", 1.0)
        client.flush()
        compaction.compact_run(store, exp, ids[0])
    before = list_versions(store, exp)
    report = gc(store, grace_seconds=0)
    after = list_versions(store, exp)
    assert report.manifests_deleted > 0 and len(after) >= 10 and after[-1] >= before[-1]
    assert report.compacted_files_deleted > 0
    assert doctor(store).ok


def test_gc_purges_deleted_runs_with_their_artifacts(store_with_runs):
    client, exp, (a, b, c) = store_with_runs
    store = client.store.layout
    compaction.compact_run(store, exp, a)
    art = client.get_run(a).info.artifact_uri
    client.delete_run(a)
    client.delete_run(b)
    report = gc(store, older_than_seconds=3600, grace_seconds=3600)
    assert report.runs_deleted == []  # deleted just now: not older than an hour
    report = gc(store, grace_seconds=3600)  # as `mlflow gc`: every deleted run
    assert sorted(report.runs_deleted) == sorted([a, b])
    events = load_events(store, [exp])
    assert set(events["run_id"].drop_null().to_pylist()) == {c}
    assert store.experiment_of_run(a) is None
    import fsspec

    fs, path = fsspec.core.url_to_fs(art, **store.storage_options)
    assert not fs.exists(path)
    assert [r.info.run_id for r in client.search_runs([exp], run_view_type=3)] == [c]
    assert doctor(store).ok


def test_doctor_finds_and_repairs_missing_compacted_file(tmp_path, monkeypatch):
    monkeypatch.setenv("EVTRACK_AUTO_COMPACT", "false")
    uri = str(tmp_path / "s")
    evtrack.set_tracking_uri(uri)
    with evtrack.start_run() as run:
        evtrack.log_metric("m", 1.0)
    client = evtrack.MlflowClient(uri)
    store, exp = client.store.layout, run.info.experiment_id
    n = _count(store, exp)
    compaction.compact_run(store, exp, run.info.run_id)
    (full,) = read_manifest(store, exp).full
    os.remove(f"{tmp_path}/s/experiments/{exp}/compacted/{full.name}")
    report = doctor(store)
    assert [f.kind for f in report.problems] == ["missing_file"]
    repaired = doctor(store, repair=True)
    assert repaired.ok and all(f.repaired for f in repaired.findings if f.severity != "info")
    assert doctor(store).ok
    store.cache = type(store.cache)()
    assert _count(store, exp) == n


def test_doctor_repairs_claims(tmp_path):
    uri = str(tmp_path / "s")
    client = evtrack.MlflowClient(uri)
    exp = client.create_experiment("named")
    run = client.create_run(exp)
    client.flush()
    store = client.store.layout
    store.claim_name("ghost", exp)  # a rename that crashed before releasing
    os.remove(f"{tmp_path}/s/runs/{run.info.run_id}.json")
    kinds = {f.kind for f in doctor(store).problems}
    assert kinds == {"stale_name_claim", "missing_run_claim", "orphan_segment"}
    doctor(store, repair=True)
    assert doctor(store).ok
    assert store.name_owner("ghost") is None
    assert store.experiment_of_run(run.info.run_id) == exp


def test_cli_compact_gc_doctor(tmp_path, monkeypatch):
    monkeypatch.setenv("EVTRACK_AUTO_COMPACT", "false")
    uri = str(tmp_path / "s")
    evtrack.set_tracking_uri(uri)
    with evtrack.start_run() as run:
        evtrack.log_metric("m", 1.0)
    runner = CliRunner()
    base = ["--tracking-uri", uri]
    out = runner.invoke(main, [*base, "compact", "--run", run.info.run_id])
    assert out.exit_code == 0 and "manifest 1" in out.output, out.output
    out = runner.invoke(main, [*base, "compact", "--all"])
    assert out.exit_code == 0, out.output
    out = runner.invoke(main, [*base, "gc", "--older-than", "30d", "--grace", "0s"])
    assert out.exit_code == 0 and "segments" in out.output, out.output
    out = runner.invoke(main, [*base, "doctor", "--format", "json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["ok"] is True
    out = runner.invoke(main, [*base, "gc", "--older-than", "soon"])
    assert out.exit_code == 2
