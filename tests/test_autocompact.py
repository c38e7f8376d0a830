"""A process's ended runs are compacted in batches in the background (``auto_compact_batch``).

Checked by doing it: sweeps through the client on every event-log backend, several
processes sweeping one experiment at once with a reader searching meanwhile, a process
killed mid-sweep; then exact counts and the same search answers as before compaction.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import evtrack
from evtrack.entities import Metric, Param, RunTag
from evtrack.store.log import compaction, snapshot
from evtrack.store.log.autocompact import ended_runs
from evtrack.store.log.layout import Store
from evtrack.store.log.maintenance import doctor
from evtrack.store.log.manifest import read_manifest
from evtrack.store.log.views import load_events

FILTER = "metrics.rmse < 0.5 and params.alpha = '0.3'"


def _sweep(client: evtrack.MlflowClient, experiment_id: str, n: int, first: int = 0) -> list[str]:
    ids = []
    for i in range(first, first + n):
        run_id = client.create_run(experiment_id).info.run_id
        client.log_batch(
            run_id,
            metrics=[Metric("rmse", (i % 10) / 10, 1_700_000_000_000 + i, 0)],
            params=[Param("alpha", f"0.{i % 4}")],
            tags=[RunTag("i", str(i))],
        )
        client.set_terminated(run_id)
        ids.append(run_id)
    return ids


def _answers(client: evtrack.MlflowClient, experiment_id: str) -> list[tuple]:
    runs = client.search_runs([experiment_id], FILTER, max_results=1000, order_by=["tags.i ASC"])
    return [
        (r.info.run_id, r.info.status, r.data.metrics, r.data.params, r.data.tags) for r in runs
    ]


def _identities(store: Store, experiment_id: str) -> list[tuple[str, int]]:
    t = load_events(store, [experiment_id])
    return sorted(zip(t["writer"].to_pylist(), t["seq"].to_pylist(), strict=True))


def test_ended_runs_are_compacted_in_batches(log_store_uri, monkeypatch):
    monkeypatch.setenv("EVTRACK_AUTO_COMPACT_BATCH", "10")
    client = evtrack.MlflowClient(log_store_uri)
    exp = client.create_experiment("sweep")
    store = client.store.layout
    ids = _sweep(client, exp, 25)
    assert len(ids) == 25
    running = client.create_run(exp).info.run_id  # never ends: never batched
    client.log_batch(running, params=[Param("alpha", "0.3")])
    ended_runs(store).wait()
    # Every ended run is covered or waits for a full batch (fewer than 10 wait; the
    # worker takes all that are pending when it starts a batch); the running one and
    # the experiment's own events ("_") stay uncovered.
    left = {s.scope for _, s in snapshot.take_snapshot(store, exp).segments}
    pending = ended_runs(store).pending(exp)
    assert left == {*pending, running, "_"} and len(pending) < 10
    batches = ended_runs(store).batches
    assert 1 <= batches <= 2
    assert len(read_manifest(store, exp).full) <= batches  # a file pair per batch, not per run
    before = _answers(client, exp)
    assert len(before) > 0
    assert _answers(evtrack.MlflowClient(log_store_uri), exp) == before
    assert doctor(store).ok


def test_batch_compaction_changes_no_answer(tmp_path, monkeypatch):
    uri = str(tmp_path / "store")
    monkeypatch.setenv("EVTRACK_AUTO_COMPACT", "false")
    client = evtrack.MlflowClient(uri)
    exp = client.create_experiment("sweep")
    ids = _sweep(client, exp, 30)
    store = client.store.layout
    before_ids, before = _identities(store, exp), _answers(client, exp)
    result = compaction.compact_runs(store, exp, ids[:17])
    assert result.runs == 17 and result.segments == 34 and not result.gave_up
    assert _identities(store, exp) == before_ids
    assert _answers(evtrack.MlflowClient(uri), exp) == before
    assert compaction.compact_runs(store, exp, ids[:17]).segments == 0  # nothing left to do
    assert compaction.compact_runs(store, exp, []).segments == 0


def test_off_switches(tmp_path, monkeypatch):
    for env in ({"EVTRACK_AUTO_COMPACT_BATCH": "0"}, {"EVTRACK_AUTO_COMPACT": "false"}):
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        uri = str(tmp_path / next(iter(env)))
        client = evtrack.MlflowClient(uri)
        exp = client.create_experiment("sweep")
        _sweep(client, exp, 120)
        ended_runs(client.store.layout).wait()
        assert read_manifest(client.store.layout, exp).version == 0
        for k in env:
            monkeypatch.delenv(k)


def test_object_store_compacts_from_what_it_wrote(s3_server, monkeypatch):
    """The segments of a batch were written by this process: no GET for them."""
    monkeypatch.setenv("EVTRACK_AUTO_COMPACT", "false")
    uri = s3_server.uri()
    client = evtrack.MlflowClient(uri)
    exp = client.create_experiment("sweep")
    ids = _sweep(client, exp, 3)
    store = client.store.layout
    paths = [p for p, s in snapshot.list_segments(store, exp) if s.scope in ids]
    blobs = {p: store.read_bytes(p) for p in paths}
    store.fs.rm(paths)  # gone from the bucket: only the remembered copies can answer
    assert snapshot.fetch(store, paths) == blobs


_SWEEPER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, sys.argv[4])
    import evtrack
    from test_autocompact import _sweep
    client = evtrack.MlflowClient(sys.argv[1])
    _sweep(client, sys.argv[2], int(sys.argv[3]), first=int(sys.argv[5]))
    print("done", flush=True)
    """
)


def _sweeper(uri: str, exp: str, n: int, first: int) -> subprocess.Popen:
    here = os.path.dirname(os.path.abspath(__file__))
    env = {**os.environ, "EVTRACK_AUTO_COMPACT_BATCH": "7"}
    cmd = [sys.executable, "-c", _SWEEPER, uri, exp, str(n), here, str(first)]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True)


def test_sweeping_processes_and_a_reader_lose_nothing(tmp_path):
    uri = str(tmp_path / "store")
    client = evtrack.MlflowClient(uri)
    exp = client.create_experiment("sweep")
    procs = [_sweeper(uri, exp, 60, first) for first in (0, 1000, 2000)]
    seen = 0
    while any(p.poll() is None for p in procs):
        reader = evtrack.MlflowClient(uri)
        runs = reader.search_runs([exp], "", max_results=1000)
        assert len(runs) >= seen  # never goes back while segments are covered
        seen = len(runs)
        for r in runs:
            assert r.info.status in ("RUNNING", "FINISHED")
    for p in procs:
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0 and "done" in out
    store = Store(str(tmp_path / "store"))
    finished = client.search_runs([exp], "attributes.status = 'FINISHED'", max_results=1000)
    assert len(finished) == 180
    assert sorted(int(r.data.tags["i"]) for r in finished) == sorted(
        i for first in (0, 1000, 2000) for i in range(first, first + 60)
    )
    assert all(r.data.metrics == {"rmse": (int(r.data.tags["i"]) % 10) / 10} for r in finished)
    assert read_manifest(store, exp).version > 0  # the batches did land
    assert doctor(store).ok
    before = _identities(store, exp)
    compaction.compact_experiment(store, exp)
    assert _identities(store, exp) == before


def test_killed_sweeper_loses_nothing(tmp_path):
    uri = str(tmp_path / "store")
    client = evtrack.MlflowClient(uri)
    exp = client.create_experiment("sweep")
    proc = _sweeper(uri, exp, 400, 0)
    store = Store(str(tmp_path / "store"))
    deadline = time.monotonic() + 60
    while read_manifest(store, exp).version < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    runs = client.search_runs([exp], "", max_results=1000)
    # killed between claiming a run id and its first segment: a warning, nothing lost
    assert not [f for f in doctor(store).findings if f.severity == "error"]
    finished = [r for r in runs if r.info.status == "FINISHED"]
    assert finished and all(
        r.data.metrics == {"rmse": (int(r.data.tags["i"]) % 10) / 10} for r in finished
    )
    before = _identities(store, exp)
    compaction.compact_experiment(store, exp)
    assert _identities(store, exp) == before
    assert len(client.search_runs([exp], "", max_results=1000)) == len(runs)


@pytest.mark.parametrize("batch", [1, 3])
def test_small_batches(tmp_path, monkeypatch, batch):
    monkeypatch.setenv("EVTRACK_AUTO_COMPACT_BATCH", str(batch))
    client = evtrack.MlflowClient(str(tmp_path / "s"))
    exp = client.create_experiment("sweep")
    ids = _sweep(client, exp, 6)
    batcher = ended_runs(client.store.layout)
    batcher.wait()
    left = {s.scope for _, s in snapshot.take_snapshot(client.store.layout, exp).segments}
    assert left & set(ids) == set(batcher.pending(exp)) and len(batcher.pending(exp)) < batch


def test_runs_of_many_events_are_not_batched(tmp_path, monkeypatch):
    """A long run is a few large segments, cheap to read: batching those (an import of
    long histories) would cost more than it saves."""
    monkeypatch.setenv("EVTRACK_AUTO_COMPACT_BATCH", "2")
    monkeypatch.setenv("EVTRACK_AUTO_COMPACT_MIN_EVENTS", "50")
    client = evtrack.MlflowClient(str(tmp_path / "s"))
    exp = client.create_experiment("long")
    for _ in range(4):
        run_id = client.create_run(exp).info.run_id
        client.log_batch(run_id, metrics=[Metric("m", float(i), 0, i) for i in range(60)])
        client.set_terminated(run_id)
    batcher = ended_runs(client.store.layout)
    batcher.wait()
    assert batcher.pending(exp) == [] and batcher.batches == 0
    assert read_manifest(client.store.layout, exp).version == 0
    short = _sweep(client, exp, 2)  # runs of a few events still are
    batcher.wait()
    assert batcher.batches == 1
    left = {s.scope for _, s in snapshot.take_snapshot(client.store.layout, exp).segments}
    assert not left & set(short)


def test_a_due_batch_finishes_at_exit_on_an_object_store(s3_server):
    """A process that ends its last full batch of runs and exits at once: the batch is
    compacted before the interpreter tears down s3fs's session and DuckDB (a daemon
    thread joined from an exit hook found both gone, and the batch was lost)."""
    uri = s3_server.uri()
    client = evtrack.MlflowClient(uri)
    exp = client.create_experiment("sweep")
    client.flush()
    proc = _sweeper(uri, exp, 14, 0)  # batches of 7: the second is due as the process exits
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0 and "done" in out
    store = Store(uri)
    left = {s.scope for _, s in snapshot.take_snapshot(store, exp).segments}
    assert left <= {"_"}  # every run's segments covered
    finished = client.search_runs([exp], "attributes.status = 'FINISHED'", max_results=100)
    assert len(finished) == 14
