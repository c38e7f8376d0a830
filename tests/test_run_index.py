"""The run index behind search_runs (evtrack/store/log/index.py) stays exact as the
store changes under it: new runs, changed runs, deletions, compactions, other writers."""

from __future__ import annotations

from helpers import run_python, subprocess_env

import evtrack
from evtrack.entities import Dataset, DatasetInput, InputTag, Metric, Param, RunTag
from evtrack.store.log.compaction import compact_experiment


def _names(client, exp, flt="", view=1):
    runs = client.search_runs([exp], flt, run_view_type=view, max_results=1000)
    return sorted(r.info.run_name for r in runs)


def _run(client, exp, name, alpha, rmse):
    run_id = client.create_run(exp, run_name=name).info.run_id
    client.log_batch(
        run_id,
        metrics=[Metric("rmse", rmse, 1, 0)],
        params=[Param("alpha", alpha)],
        tags=[RunTag("team", "a")],
    )
    client.set_terminated(run_id)
    return run_id


def test_index_follows_every_kind_of_change(tmp_path, monkeypatch):
    monkeypatch.setenv("EVTRACK_AUTO_COMPACT", "false")
    uri = str(tmp_path / "s")
    client = evtrack.MlflowClient(uri)
    exp = client.create_experiment("idx")
    r1 = _run(client, exp, "r1", "0.1", 0.9)
    assert _names(client, exp) == ["r1"]  # the index is built here

    r2 = _run(client, exp, "r2", "0.3", 0.2)  # new segments: folded in incrementally
    assert _names(client, exp, "params.alpha = '0.3'") == ["r2"]

    client.set_tag(r1, "team", "b")  # a changed run: the later tag wins
    client.log_metric(r1, "rmse", 0.1, step=5)  # a later step wins
    assert _names(client, exp, "tags.team = 'b'") == ["r1"]
    assert _names(client, exp, "metrics.rmse < 0.5") == ["r1", "r2"]

    client.delete_run(r2)
    assert _names(client, exp) == ["r1"]
    assert _names(client, exp, view=2) == ["r2"]

    client.log_inputs(r1, [DatasetInput(Dataset("d", "abc"), [InputTag("k", "v")])])
    compact_experiment(client.store.layout, exp)  # a new manifest: read afresh
    assert _names(client, exp, "tags.team = 'b'") == ["r1"]
    assert _names(client, exp, view=3) == ["r1", "r2"]
    (got,) = client.search_runs([exp], "datasets.name = 'd'")
    assert got.info.run_id == r1 and got.data.metrics == {"rmse": 0.1}
    assert got.data.params == {"alpha": "0.1"}

    _run(client, exp, "r3", "0.3", 0.3)  # after compaction: segments again
    code = f"""
import evtrack
from evtrack.entities import Metric, Param
c = evtrack.MlflowClient({uri!r})
rid = c.create_run({exp!r}, run_name="other").info.run_id
c.log_batch(rid, metrics=[Metric("rmse", 0.4, 1, 0)], params=[Param("alpha", "0.3")])
c.set_terminated(rid)
"""
    run_python(code, env=subprocess_env())  # another process's runs
    assert _names(client, exp, "params.alpha = '0.3'") == ["other", "r3"]
    assert _names(client, exp) == ["other", "r1", "r3"]
    # Nothing counted twice: one input, each run once.
    assert client.sql("select count(*) from inputs").fetchall() == [(1,)]
    runs = client.search_runs([exp], "", run_view_type=3)
    assert len({r.info.run_id for r in runs}) == len(runs) == 4


def test_quiet_local_folders_are_not_listed_again(tmp_path, monkeypatch):
    """On a local store, folders left alone since the last complete listing are not
    listed again (their modification times tell); any change is still seen at once."""
    import time

    monkeypatch.setenv("EVTRACK_AUTO_COMPACT", "false")
    client = evtrack.MlflowClient(str(tmp_path / "s"))
    exp = client.create_experiment("quiet")
    _run(client, exp, "r1", "0.1", 0.9)
    time.sleep(0.3)  # longer than MTIME_QUIET_NS: the folders' times can be trusted
    assert _names(client, exp) == ["r1"]
    layout = client.store.layout
    listed = []
    real = layout.listdir
    monkeypatch.setattr(layout, "listdir", lambda path: listed.append(path) or real(path))
    assert _names(client, exp) == ["r1"]
    assert not [p for p in listed if p.endswith("/events")]
    _run(client, exp, "r2", "0.2", 0.5)  # a change right away: seen at once
    assert _names(client, exp) == ["r1", "r2"]
    assert [p for p in listed if p.endswith("/events")]
