"""The run index saved on local disk (evtrack/store/log/index_cache.py): a fresh process
starts from what an earlier one folded, reads only the segments written since, and
never answers differently from a process without the saved index, whatever happened
to the store in between (new runs, changed and deleted runs, compaction, gc, a damaged
file, another store at the same URI). Each "process" here is a real child process."""

from __future__ import annotations

import json
import shutil
import time

import pytest
from helpers import run_python, subprocess_env

import evtrack
from evtrack.entities import Metric, Param, RunTag
from evtrack.store.log import index_cache, run_summary
from evtrack.store.log.compaction import compact_experiment
from evtrack.store.log.maintenance import gc
from evtrack.store.log.manifest import read_manifest

# A fresh process's search: every run with its data, the number of segment files it
# fetched, and whether pandas was imported on the way.
SEARCH = """
import json, sys
import evtrack
from evtrack.store.log import snapshot

fetched = []
real = snapshot.fetch
def counting(store, paths):
    fetched.extend(paths)
    return real(store, paths)
snapshot.fetch = counting

client = evtrack.MlflowClient(sys.argv[1])
runs = client.search_runs([sys.argv[2]], sys.argv[3], run_view_type=3, max_results=10000)
out = sorted(
    [r.info.run_id, r.info.run_name, r.info.status, r.info.lifecycle_stage, r.info.end_time,
     r.data.params, r.data.tags, r.data.metrics]
    for r in runs
)
segments = [p for p in fetched if "/events/" in p]
print("RESULT " + json.dumps({"runs": out, "fetched": len(segments),
                              "pandas": "pandas" in sys.modules}))
"""


class Fresh:
    """Searches in child processes, with the saved index and without it."""

    def __init__(self, uri: str, experiment_id: str, cache: str) -> None:
        self.uri, self.experiment_id, self.cache = uri, experiment_id, cache

    def search(self, flt: str = "", *, cache: bool = True) -> dict:
        env = subprocess_env(
            EVTRACK_INDEX_CACHE_DIR=self.cache if cache else "off", EVTRACK_AUTO_COMPACT="false"
        )
        out = run_python(SEARCH, self.uri, self.experiment_id, flt, env=env, timeout=120).stdout
        return json.loads(out.split("RESULT ", 1)[1])

    def check(self, flt: str = "") -> dict:
        """A search with the saved index; it must equal one without."""
        got = self.search(flt)
        assert got["runs"] == self.search(flt, cache=False)["runs"]
        assert not got["pandas"]
        return got


def _run(client, exp, i: int) -> str:
    run_id = client.create_run(exp, run_name=f"r{i}").info.run_id
    client.log_batch(
        run_id,
        metrics=[Metric("rmse", i / 10, 1, 0), Metric("rmse", 1 - i / 10, 2, 1)],
        params=[Param("alpha", str(i % 3))],
        tags=[RunTag("team", "a")],
    )
    client.set_terminated(run_id)
    return run_id


def _segments(client, exp) -> int:
    layout = client.store.layout
    return len(layout.listdir(layout.events_dir(exp)))


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path, monkeypatch):
    monkeypatch.setenv("EVTRACK_AUTO_COMPACT", "false")
    if request.param == "s3":
        from s3_server import new_s3_uri

        return new_s3_uri(request)
    return str(tmp_path / "store")


def test_a_fresh_process_folds_only_what_is_new(store, tmp_path):
    client = evtrack.MlflowClient(store)
    exp = client.create_experiment("cached")
    ids = [_run(client, exp, i) for i in range(6)]
    fresh = Fresh(store, exp, str(tmp_path / "cache"))

    first = fresh.check()
    assert len(first["runs"]) == 6
    assert first["fetched"] == _segments(client, exp)  # nothing saved yet: read it all
    again = fresh.check("params.alpha = '1'")
    assert again["fetched"] == 0  # the saved index, with a listing that proves it
    assert sorted(r[1] for r in again["runs"]) == ["r1", "r4"]

    # New runs, a changed tag, a later metric step, a deleted run: folded on top.
    before = _segments(client, exp)
    _run(client, exp, 6)
    client.set_tag(ids[0], "team", "b")
    client.log_metric(ids[1], "rmse", 0.05, step=9)
    client.delete_run(ids[2])
    got = fresh.check()
    assert got["fetched"] == _segments(client, exp) - before
    by_name = {r[1]: r for r in got["runs"]}
    assert by_name["r0"][6]["team"] == "b"
    assert by_name["r1"][7] == {"rmse": 0.05}
    assert by_name["r2"][3] == "deleted"
    assert fresh.check("metrics.rmse < 0.1")["runs"] == [by_name["r1"]]

    # A compaction publishes a manifest: the saved index no longer holds, read afresh.
    compact_experiment(client.store.layout, exp)
    assert fresh.check("tags.team = 'b'")["runs"] == [by_name["r0"]]
    assert fresh.check()["fetched"] == 0
    _run(client, exp, 7)  # after the compaction: segments again, folded on top
    got = fresh.check()
    assert got["fetched"] == 2 and len(got["runs"]) == 8  # the run's two segments

    # gc removes the covered segments (names the saved index recorded): read afresh.
    compact_experiment(client.store.layout, exp)
    time.sleep(0.05)  # gc's cutoff is "older than now"
    gc(client.store.layout, grace_seconds=0, delete_runs=False)
    assert _segments(client, exp) == 0
    assert fresh.check()["runs"] == fresh.search(cache=False)["runs"]
    assert len(fresh.check("params.alpha = '0'")["runs"]) == 3


def test_several_processes_share_the_saved_index(tmp_path, monkeypatch):
    """Processes writing and searching at once: each answer is exact, and the file left
    behind is whole."""
    monkeypatch.setenv("EVTRACK_AUTO_COMPACT", "false")
    uri, cache = str(tmp_path / "store"), str(tmp_path / "cache")
    client = evtrack.MlflowClient(uri)
    exp = client.create_experiment("shared")
    for i in range(3):
        _run(client, exp, i)
    code = f"""
import evtrack, sys
from evtrack.entities import Metric, Param
c = evtrack.MlflowClient({uri!r})
w = int(sys.argv[1])
for i in range(20):
    rid = c.create_run({exp!r}, run_name=f"w{{w}}-{{i}}").info.run_id
    c.log_batch(rid, metrics=[Metric("rmse", i, 1, 0)], params=[Param("alpha", str(w))])
    c.set_terminated(rid)
    runs = c.search_runs([{exp!r}], f"params.alpha = '{{w}}'", max_results=1000)
    assert sorted(r.info.run_name for r in runs) == sorted(f"w{{w}}-{{j}}" for j in range(i + 1))
"""
    import subprocess
    import sys

    env = subprocess_env(EVTRACK_INDEX_CACHE_DIR=cache, EVTRACK_AUTO_COMPACT="false")
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(w)], env=env, stderr=subprocess.PIPE)
        for w in (10, 11, 12)
    ]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode()
    fresh = Fresh(uri, exp, cache)
    got = fresh.check()
    assert len(got["runs"]) == 63
    assert index_cache.load(client.store.layout, exp) is None  # this process: its own cache
    monkeypatch.setenv("EVTRACK_INDEX_CACHE_DIR", cache)
    saved = index_cache.load(client.store.layout, exp)
    assert saved is not None and saved.names <= set(
        client.store.layout.listdir(client.store.layout.events_dir(exp))
    )


def test_a_damaged_saved_index_is_ignored_and_rewritten(tmp_path, monkeypatch):
    monkeypatch.setenv("EVTRACK_AUTO_COMPACT", "false")
    uri, cache = str(tmp_path / "store"), str(tmp_path / "cache")
    monkeypatch.setenv("EVTRACK_INDEX_CACHE_DIR", cache)
    client = evtrack.MlflowClient(uri)
    exp = client.create_experiment("damaged")
    for i in range(4):
        _run(client, exp, i)
    fresh = Fresh(uri, exp, cache)
    fresh.check()
    path = index_cache.cache_path(client.store.layout, exp)
    assert path is not None and index_cache.load(client.store.layout, exp) is not None
    with open(path, "rb") as f:
        data = f.read()
    for damaged in (data[: len(data) // 2], b"garbage", data[:40] + b"x" + data[41:]):
        with open(path, "wb") as f:
            f.write(damaged)
        # Without the plain-Python summary, which would answer without the index.
        run_summary.save(client.store.layout, exp, None)
        got = fresh.check()
        assert len(got["runs"]) == 4 and got["fetched"] == _segments(client, exp)
        assert index_cache.load(client.store.layout, exp) is not None  # rewritten whole
    # Damage inside the saved reduced events, read only when new segments are folded on
    # top of them: the experiment is read afresh instead.
    with open(path, "rb") as f:
        data = bytearray(f.read())
    header = json.loads(data[: data.index(b"\n", 20)].split(b"\n", 1)[1])
    at, n = header["parts"]["reduced"]
    body = data.index(b"\n", 20) + 1
    data[body + at + n // 2 : body + at + n // 2 + 64] = b"\xff" * 64
    with open(path, "wb") as f:
        f.write(bytes(data))
    _run(client, exp, 4)
    got = fresh.check()
    assert len(got["runs"]) == 5 and got["fetched"] == _segments(client, exp)


def test_another_store_at_the_same_uri_is_not_mistaken_for_the_saved_one(tmp_path):
    """Both stores compacted and collected (no segment names left to tell them apart):
    the manifest's compacted file names do. Each store is made by a process of its own
    (a process keeps per-URI state that a store deleted under it would confuse)."""
    uri, cache = str(tmp_path / "store"), str(tmp_path / "cache")
    make = f"""
import sys, time, evtrack
from evtrack.entities import Metric
from evtrack.store.log.compaction import compact_experiment
from evtrack.store.log.maintenance import gc
from evtrack.store.log.manifest import read_manifest
c = evtrack.MlflowClient({uri!r})
exp = c.create_experiment("same")
for i in range(int(sys.argv[1])):
    rid = c.create_run(exp, run_name=f"r{{i}}").info.run_id
    c.log_batch(rid, metrics=[Metric("rmse", i, 1, 0)])
    c.set_terminated(rid)
compact_experiment(c.store.layout, exp)
time.sleep(0.05)  # gc's cutoff is "older than now"
gc(c.store.layout, grace_seconds=0, delete_runs=False)
layout = c.store.layout
assert layout.listdir(layout.events_dir(exp)) == []
print("EXP", exp)
"""
    env = subprocess_env(EVTRACK_AUTO_COMPACT="false")
    for n in (2, 3):
        out = run_python(make, str(n), env=env).stdout
        exp = out.split("EXP ", 1)[1].strip()
        fresh = Fresh(uri, exp, cache)
        assert sorted(r[1] for r in fresh.check()["runs"]) == [f"r{i}" for i in range(n)]
        shutil.rmtree(uri)


def test_memory_stores_and_off_save_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("EVTRACK_AUTO_COMPACT", "false")
    client = evtrack.MlflowClient("memory://index-cache-test")
    exp = client.create_experiment("m")
    _run(client, exp, 1)
    assert len(client.search_runs([exp])) == 1
    assert index_cache.cache_path(client.store.layout, exp) is None
    monkeypatch.setenv("EVTRACK_INDEX_CACHE_DIR", "off")
    local = evtrack.MlflowClient(str(tmp_path / "s"))
    assert index_cache.cache_path(local.store.layout, "0") is None
    assert not (tmp_path / "index-cache").exists()


def test_a_growing_experiment_keeps_its_saved_index_current(tmp_path, monkeypatch):
    """The writer's own searches save again once a tenth more segments (and at least 64)
    were folded since the last save, so a new process has little left to fold; a re-read
    within SAVE_INTERVAL_S leaves the older file (still exact, see above)."""
    monkeypatch.setenv("EVTRACK_AUTO_COMPACT", "false")
    client = evtrack.MlflowClient(str(tmp_path / "s"))
    exp = client.create_experiment("growing")
    layout = client.store.layout

    def listed() -> frozenset[str]:
        return frozenset(layout.listdir(layout.events_dir(exp)))

    _run(client, exp, 0)
    client.search_runs([exp])
    assert index_cache.load(layout, exp).names == listed()  # the first full read
    _run(client, exp, 1)  # two segments: too few to save again
    client.search_runs([exp])
    saved = index_cache.load(layout, exp)
    assert saved.names < listed() and saved.reduced().num_rows
    for i in range(2, 40):  # 76 more segments
        _run(client, exp, i)
    assert len(client.search_runs([exp])) == 40
    assert index_cache.load(layout, exp).names == listed()
    compact_experiment(layout, exp)  # a re-read right after a save: not written again
    assert len(client.search_runs([exp])) == 40
    assert index_cache.load(layout, exp).names == listed()
    current = index_cache.manifest_mark(read_manifest(layout, exp))
    assert index_cache.load(layout, exp).mark != current


def test_long_unused_saved_indexes_and_stale_temporary_files_are_pruned(tmp_path, monkeypatch):
    import os

    cache = tmp_path / "cache"
    monkeypatch.setenv("EVTRACK_INDEX_CACHE_DIR", str(cache))
    monkeypatch.setattr(index_cache, "_pruned", set())
    old_store, live_store = cache / ("0" * 24), cache / ("1" * 24)
    old_store.mkdir(parents=True)
    (old_store / "x.arrow").write_bytes(b"old")
    live_store.mkdir()
    stale, fresh_tmp = live_store / "a.arrow.1.ab.tmp", live_store / "b.arrow.2.cd.tmp"
    stale.write_bytes(b"")
    fresh_tmp.write_bytes(b"")
    long_ago = time.time() - index_cache.PRUNE_AFTER_S - 60
    os.utime(stale, (long_ago, long_ago))
    os.utime(old_store, (long_ago, long_ago))
    client = evtrack.MlflowClient(str(tmp_path / "s"))
    exp = client.create_experiment("p")
    _run(client, exp, 1)
    assert len(client.search_runs([exp])) == 1  # a save: prunes first
    assert not old_store.exists() and not stale.exists()
    assert fresh_tmp.exists() and index_cache.load(client.store.layout, exp) is not None


def test_a_search_over_several_experiments_joins_their_saved_indexes(tmp_path, monkeypatch):
    """Each experiment is saved on its own and a search over several concatenates their
    tables: the same runs as without saved indexes, in the same order."""
    monkeypatch.setenv("EVTRACK_AUTO_COMPACT", "false")
    uri, cache = str(tmp_path / "store"), str(tmp_path / "cache")
    client = evtrack.MlflowClient(uri)
    a, b = client.create_experiment("a"), client.create_experiment("b")
    for i in range(5):
        _run(client, a if i % 2 else b, i)
    compact_experiment(client.store.layout, a)  # one compacted, one not
    code = """
import json, sys, evtrack
c = evtrack.MlflowClient(sys.argv[1])
runs = c.search_runs(sys.argv[2].split(","), "params.alpha != '2'", order_by=["metrics.rmse"])
print("RESULT " + json.dumps([[r.info.run_name, r.info.experiment_id, r.data.metrics]
                              for r in runs]))
"""

    def search(ids: str, cache_dir: str) -> list:
        env = subprocess_env(EVTRACK_INDEX_CACHE_DIR=cache_dir, EVTRACK_AUTO_COMPACT="false")
        out = run_python(code, uri, ids, env=env).stdout
        return json.loads(out.split("RESULT ", 1)[1])

    expected = search(f"{a},{b}", "off")
    assert [r[0] for r in expected] == ["r4", "r3", "r1", "r0"]  # latest rmse: 1 - i/10
    assert search(a, cache) == [r for r in expected if r[1] == a]  # saves a
    assert search(f"{a},{b}", cache) == expected  # a from its file, b read and saved
    assert search(f"{b},{a}", cache) == expected  # both from their files
    _run(client, b, 5)  # r5: alpha '2', filtered out; b folds one run on top
    _run(client, a, 6)
    assert search(f"{a},{b}", cache) == search(f"{a},{b}", "off")


def test_a_temporary_file_listed_by_the_writer_does_not_spoil_the_saved_index(store, tmp_path):
    """Another writer's file mid-rename (``.tmp-…``) is in the listing the saved index was
    made from, and gone from the next: the saved index still holds."""
    client = evtrack.MlflowClient(store)
    exp = client.create_experiment("tmp")
    _run(client, exp, 1)
    layout = client.store.layout
    temp = f"{layout.events_dir(exp)}/.tmp-0123456789ab-x.w-0000000001.jsonl"
    layout.put(temp, b"partial")
    cache = str(tmp_path / "cache")
    fresh = Fresh(store, exp, cache)
    assert len(fresh.check()["runs"]) == 1  # lists the temporary file, saves
    layout.fs.rm_file(temp)
    got = fresh.check()
    assert got["fetched"] == 0 and len(got["runs"]) == 1
