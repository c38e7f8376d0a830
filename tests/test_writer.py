"""The writer under failure, forks and shutdown, done for real: a real server process
that refuses segments, forked and spawned children, encoders that fail, filesystems
without an atomic create. Counts are exact."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request

import fsspec
import pytest
from fsspec.implementations.memory import MemoryFileSystem
from helpers import ROOT, subprocess_env

import evtrack
from evtrack.errors import InvalidParameterValue, SegmentRefused
from evtrack.server.testing import free_port
from evtrack.store.log import segments
from evtrack.store.log.layout import Store, get_store
from evtrack.store.log.writer import Writer, get_writer


def metric_count(uri: str, run_id: str, key: str) -> int:
    return len(evtrack.MlflowClient(uri).get_metric_history(run_id, key))


# -- a server that refuses segments ----------------------------------------------------

_SERVER = """
import sys
from werkzeug.serving import make_server
from evtrack.server import create_app
app = create_app(sys.argv[1], max_ingest_bytes=int(sys.argv[3]))
make_server("127.0.0.1", int(sys.argv[2]), app, threaded=True).serve_forever()
"""


@pytest.fixture
def small_server(tmp_path):
    """A real ``evtrack`` server process whose ingest limit is 16 KiB."""
    store = str(tmp_path / "server-store")
    port = free_port()
    env = subprocess_env()
    proc = subprocess.Popen(
        [sys.executable, "-c", _SERVER, store, str(port), str(16 * 1024)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            with urllib.request.urlopen(url + "/health", timeout=1) as resp:
                if resp.status == 200:
                    break
        except OSError:
            time.sleep(0.05)
    else:
        proc.kill()
        raise RuntimeError("server did not start")
    yield url, store
    proc.terminate()
    proc.wait(timeout=30)


def test_a_refused_segment_fails_alone_and_large_ones_are_split(small_server, tmp_path):
    url, store = small_server
    code = textwrap.dedent(
        """
        import json, numpy as np, evtrack
        from evtrack.errors import SegmentRefused
        out = {}
        evtrack.set_experiment("refusals")
        a = evtrack.start_run(run_name="a")
        # One event larger than the server's 16 KiB limit (6000 chars, each \\uXXXX-escaped
        # in JSON): it can be neither stored nor split.
        try:
            evtrack.log_param("huge", "\\u0394" * 6000)
            out["param"] = "accepted"
        except SegmentRefused as exc:
            out["param"] = [type(exc).__name__, exc.error_code, exc.retryable, exc.events]
        for i in range(300):
            evtrack.log_metric("after", float(i), step=i)
        # A series far over the limit: split into pieces that fit.
        evtrack.log_metric_series("series", np.arange(50_000, dtype="float64"))
        evtrack.end_run()
        with evtrack.start_run(run_name="b") as b:
            evtrack.log_param("ok", "1")
            for i in range(200):
                evtrack.log_metric("b", float(i), step=i)
        evtrack.flush()  # nothing left to report
        out["a"], out["b"] = a.info.run_id, b.info.run_id
        print("RESULT " + json.dumps(out))
        """
    )
    env = subprocess_env(url, EVTRACK_SPOOL_DIR=str(tmp_path / "spool"))
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout.split("RESULT ", 1)[1])
    assert res["param"] == ["SegmentRefused", "INVALID_PARAMETER_VALUE", False, 1]
    assert "refused segment" in proc.stderr and "Not retried" in proc.stderr
    client = evtrack.MlflowClient(store)
    assert metric_count(store, res["a"], "after") == 300
    series = client.get_metric_history(res["a"], "series")
    assert [m.value for m in series] == [float(i) for i in range(50_000)]
    assert metric_count(store, res["b"], "b") == 200
    assert client.get_run(res["b"]).data.params == {"ok": "1"}
    assert "huge" not in client.get_run(res["a"]).data.params
    assert client.get_run(res["a"]).info.status == "FINISHED"
    # The refused segment is kept for `evtrack sync`, not lost without a trace.
    spooled = [f for _, _, files in os.walk(tmp_path / "spool") for f in files]
    assert len(spooled) == 1 and spooled[0].endswith(".jsonl")


class _Flaky:
    """A sink that fails transiently ``fail`` times, then refuses run "bad" for good."""

    is_local = False
    uri = "flaky://"

    def __init__(self, fail: int) -> None:
        self.fail = fail
        self.stored: list[str] = []

    def events_dir(self, experiment_id: str) -> str:
        return experiment_id

    def put(self, path: str, data: bytes, *, create_only: bool = False) -> None:
        if self.fail:
            self.fail -= 1
            from evtrack.store.rest.transport import ServerUnreachable

            raise ServerUnreachable("down for now")
        if "/bad." in path:
            raise InvalidParameterValue("run 'bad' is not accepted")
        self.stored.append(path)


def test_transient_errors_keep_events_and_permanent_ones_go_to_their_run_only():
    sink = _Flaky(fail=2)
    w = Writer(sink)  # type: ignore[arg-type]
    try:
        w.add("1", "bad", "tag", "t", "x")
        w.add("1", "good", "tag", "t", "y")
        for _ in range(2):  # down: the error is retryable and nothing is lost
            with pytest.raises(Exception) as info:
                w.flush()
            assert info.value.retryable is True
            assert len(w._pending) == 2
        w.flush("good")  # the good run is stored; its caller hears nothing of "bad"
        assert [p.split("/")[1].split(".")[0] for p in sink.stored] == ["good"]
        w.add("1", "good", "tag", "t2", "z")
        w.flush()  # later segments are not held up by the refused one
        assert len(sink.stored) == 2 and not w._pending
        with pytest.raises(SegmentRefused) as refused:
            w.flush("bad")
        assert refused.value.retryable is False and refused.value.events == 1
        w.flush("bad")  # reported once
    finally:
        w.close()


# -- encoding failures and buffer ownership ------------------------------------------


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_a_failed_encoding_puts_every_event_back(tmp_path, monkeypatch, fmt):
    uri = str(tmp_path / "s")
    client = evtrack.MlflowClient(uri)
    run = client.create_run("0")
    rid = run.info.run_id
    n = 10 if fmt == "jsonl" else 2000
    client.flush()
    client.set_tag(rid, "t", "v", synchronous=False)  # buffered: encoded with the points
    name = "encode_jsonl_rows" if fmt == "jsonl" else "encode"
    real = getattr(segments, name)
    calls = []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise MemoryError("simulated")
        return real(*args, **kwargs)

    monkeypatch.setattr(segments, name, failing)
    for i in range(n):
        client.log_metric(rid, "m", float(i), step=i)
    with pytest.raises(MemoryError):
        client.flush()
    client.log_metric(rid, "m", float(n), step=n)  # logged while the buffers were out
    client.flush()
    history = client.get_metric_history(rid, "m")
    assert [m.step for m in history] == list(range(n + 1))
    con_rows = client.sql(f"select writer, seq from events where run_id = '{rid}'").fetchall()
    assert len(con_rows) == len(set(con_rows))  # every event once, identities unique
    assert client.get_run(rid).data.tags["t"] == "v"


def test_a_held_buffer_is_never_dropped(tmp_path):
    uri = str(tmp_path / "s")
    evtrack.set_tracking_uri(uri)
    client = evtrack.MlflowClient(uri)
    with evtrack.start_run() as run:
        rid, eid = run.info.run_id, run.info.experiment_id
        buf = run._buf
        client.writer.release(eid, rid)  # another caller asks to forget it: still held
        assert client.writer._metrics[(eid, rid)] is buf
        evtrack.log_metric("m", 1.0)
    assert (eid, rid) not in client.writer._metrics  # ended: the empty list is gone
    client.log_metric(rid, "m", 2.0, step=1)  # a late point gets a fresh buffer
    assert metric_count(uri, rid, "m") == 2


# -- forks and multiprocessing ---------------------------------------------------------


def _log_in_child(n: int) -> None:
    for i in range(n):
        evtrack.log_metric("child", float(i), step=i)


def _log_one(i: int) -> int:
    evtrack.log_metric("pool", float(i), step=i)
    return os.getpid()


def _resume_in_worker(uri: str, run_id: str) -> None:
    evtrack.set_tracking_uri(uri)
    evtrack.start_run(run_id=run_id)  # never ended: the worker's exit must flush


def test_metrics_logged_in_forked_children_are_stored(tmp_path):
    uri = str(tmp_path / "s")
    evtrack.set_tracking_uri(uri)
    ctx = multiprocessing.get_context("fork")
    with evtrack.start_run() as run:
        evtrack.log_metric("parent", 1.0)
        evtrack.get_run(run.info.run_id)  # the parent has read (DuckDB) before forking
        procs = [ctx.Process(target=_log_in_child, args=(100,)) for _ in range(3)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
            assert p.exitcode == 0
        pool = ctx.Pool(2)
        pids = pool.map(_log_one, range(50))
        pool.close()
        pool.join()
    assert len(set(pids)) >= 1
    assert metric_count(uri, run.info.run_id, "child") == 300
    assert metric_count(uri, run.info.run_id, "pool") == 50
    assert metric_count(uri, run.info.run_id, "parent") == 1


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_metrics_logged_in_spawned_pool_workers_are_stored(tmp_path, method):
    uri = str(tmp_path / "s")
    client = evtrack.MlflowClient(uri)
    rid = client.create_run("0").info.run_id
    client.flush()
    ctx = multiprocessing.get_context(method)
    env_path = os.environ.get("PYTHONPATH", "")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env_path]))
    try:
        pool = ctx.Pool(2, initializer=_resume_in_worker, initargs=(uri, rid))
        pool.map(_log_one, range(40))
        pool.close()
        pool.join()
    finally:
        os.environ["PYTHONPATH"] = env_path
    assert metric_count(uri, rid, "pool") == 40


def test_the_compaction_connection_is_not_inherited(tmp_path):
    from evtrack.store.log import compaction

    uri = str(tmp_path / "s")
    client = evtrack.MlflowClient(uri)
    rid = client.create_run("0").info.run_id
    client.log_metric(rid, "m", 1.0)
    client.flush()
    compaction.compact_run(client.store.layout, "0", rid)
    assert compaction._DB
    parent_db = compaction._DB[0]
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: a fresh connection, the parent's kept aside
        ok = not compaction._DB and compaction._INHERITED[-1] is parent_db
        compaction.sort_events(_events(client))
        ok = ok and compaction._DB and compaction._DB[0] is not parent_db
        os.write(w, b"1" if ok else b"0")
        os._exit(0)
    os.close(w)
    assert os.read(r, 1) == b"1"
    os.waitpid(pid, 0)
    os.close(r)


def _read_in_child(uri: str, run_id: str, key: str) -> None:
    client = evtrack.MlflowClient(uri)
    n = len(client.get_metric_history(run_id, key))
    sys.exit(0 if n == 3 and client.get_run(run_id).data.metrics[key] == 2.0 else 1)


def test_a_forked_child_reads_after_its_parent_did(tmp_path):
    """The parent's DuckDB connection is inherited; destroying it in the child hung (and
    before that crashed): the child must open its own and leave the parent's alone."""
    uri = str(tmp_path / "s")
    client = evtrack.MlflowClient(uri)
    rid = client.create_run("0").info.run_id
    for i in range(3):
        client.log_metric(rid, "m", float(i), step=i)
    assert client.get_run(rid).data.metrics == {"m": 2.0}  # the parent has read
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_read_in_child, args=(uri, rid, "m")) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0


def _events(client):
    from evtrack.store.log.views import load_events

    return load_events(client.store.layout, ["0"])


# -- create-only writes ------------------------------------------------------------------


class RacyFileSystem(MemoryFileSystem):
    """A filesystem whose create-only write is a check, then a write (fsspec's default)."""

    protocol = "racyfs"
    store: dict = {}
    pseudo_dirs = [""]


def test_a_filesystem_without_atomic_create_is_refused_at_open(monkeypatch):
    fsspec.register_implementation("racyfs", RacyFileSystem, clobber=True)
    with pytest.raises(InvalidParameterValue, match="no atomic create-only"):
        Store("racyfs://bucket/store")
    monkeypatch.setenv("EVTRACK_ALLOW_NON_ATOMIC_CREATE", "1")
    store = Store("racyfs://bucket/store")  # an explicit opt-in, with a warning
    store.put(store.path("x"), b"1", create_only=True)
    with pytest.raises(FileExistsError):
        store.put(store.path("x"), b"2", create_only=True)


def test_create_only_is_atomic_under_concurrency(log_store_uri):
    store = get_store(log_store_uri)
    path = store.path("claims", "one.json")
    winners: list[int] = []
    barrier = threading.Barrier(8)

    def claim(i: int) -> None:
        barrier.wait()
        try:
            store.put(path, str(i).encode(), create_only=True)
            winners.append(i)
        except FileExistsError:
            pass

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1
    assert store.read_bytes(path) == str(winners[0]).encode()
    store.close()


# -- closing -----------------------------------------------------------------------------


def test_closing_a_store_flushes_and_stops_its_writer(tmp_path):
    uri = str(tmp_path / "s")
    store = get_store(uri)
    writer = get_writer(store)
    writer.add("0", "r1", "tag", "k", "v")
    thread = writer._thread
    assert thread is not None and thread.is_alive()
    store.close()
    assert not thread.is_alive()
    assert get_store(uri) is not store  # forgotten: a fresh store next time
    names = os.listdir(tmp_path / "s" / "experiments" / "0" / "events")
    assert len(names) == 1 and names[0].startswith("r1.")


def test_a_closed_http_sink_leaves_no_socket_open(small_server):
    url, _ = small_server
    code = textwrap.dedent(
        f"""
        import gc, warnings, evtrack
        warnings.simplefilter("error", ResourceWarning)
        evtrack.set_tracking_uri({url!r})
        with evtrack.start_run():
            evtrack.log_metric("m", 1.0)
        client = evtrack.MlflowClient()
        client.store.close()
        gc.collect()
        print("OK")
        """
    )
    env = subprocess_env(url, PYTHONWARNINGS="error::ResourceWarning")
    proc = subprocess.run(
        [sys.executable, "-X", "tracemalloc", "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0 and "OK" in proc.stdout, proc.stderr
    assert "ResourceWarning" not in proc.stderr, proc.stderr


def test_jsonl_and_parquet_segments_hold_the_same_events(tmp_path, monkeypatch):
    """The writer builds JSONL from Python and Parquet from Arrow buffers: same events."""
    from evtrack.store.log.segments import decode

    class Capture:
        is_local = True
        uri = "capture://"

        def __init__(self) -> None:
            self.got: list[tuple[str, bytes]] = []

        def events_dir(self, experiment_id: str) -> str:
            return experiment_id

        def put(self, path: str, data: bytes, *, create_only: bool = False) -> None:
            self.got.append((path, data))

    def fill(w: Writer) -> None:
        t = 1_700_000_000_000
        w.add("7", "r", "param", "p", "0.1", time_ms=t)
        w.add("7", "r", "tag", "gone", None, time_ms=t)  # a deleted tag: null text
        w.add("7", "r", "tag", "ünï", "çødé \u2603 \U0001f600", time_ms=t + 1)
        w.add("7", "r", "artifact", "a/b.txt", '{"size": 3}', value=1.0, time_ms=t)
        w.add("7", None, "experiment", "name", "e", time_ms=t)
        w.add_points(
            "7", "r", ["m", float("nan"), -5, 1, "m", float("inf"), 2**62, 2, "k", -0.0, 0, 3]
        )

    tables = {}
    for fmt, limit in (("jsonl", "512"), ("parquet", "0")):
        monkeypatch.setenv("EVTRACK_JSONL_MAX_EVENTS", limit)
        sink = Capture()
        w = Writer(sink)  # type: ignore[arg-type]
        w.id = "w1"
        fill(w)
        w.flush()
        assert {p.rsplit(".", 1)[1] for p, _ in sink.got} == {fmt}
        tables[fmt] = sorted(
            (row for p, data in sink.got for row in decode(data, fmt).to_pylist()),
            key=lambda r: (r["run_id"] or "", r["seq"]),
        )
        w.close()
    assert len(tables["jsonl"]) == 8
    for a, b in zip(tables["jsonl"], tables["parquet"], strict=True):
        assert a.keys() == b.keys()
        for k in a:
            same = a[k] == b[k] or (a[k] != a[k] and b[k] != b[k])  # NaN
            assert same, (k, a, b)
