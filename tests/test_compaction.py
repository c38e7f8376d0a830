"""Compaction: manifests, full and reduced files, and that readers count every event once."""

from __future__ import annotations

import json
import logging
import math
import threading
import uuid

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import evtrack
from evtrack.store.log import compaction, manifest, snapshot
from evtrack.store.log.events import event_schema
from evtrack.store.log.layout import Store
from evtrack.store.log.maintenance import doctor, gc
from evtrack.store.log.manifest import read_manifest
from evtrack.store.log.segments import SegmentName, encode
from evtrack.store.log.views import VIEW_NAMES, load_events


def _norm(rows):
    out = []
    for row in rows:
        out.append(tuple("NaN" if isinstance(v, float) and math.isnan(v) else v for v in row))
    return sorted(out, key=repr)


def views(table: pa.Table, names=VIEW_NAMES) -> dict[str, list]:
    """Every view's rows, in a stable order (the views themselves, on a cheap cursor:
    some views read others, e.g. the model registry's read ``registered_models``)."""
    from evtrack.store.log.views import connect

    cur = connect(table)
    try:
        return {n: _norm(cur.execute(f"select * from {n}").fetchall()) for n in names}
    finally:
        cur.close()


def identities(table: pa.Table) -> list[tuple[str, int]]:
    return sorted(zip(table["writer"].to_pylist(), table["seq"].to_pylist(), strict=True))


@pytest.fixture
def run_store(log_store_uri: str, monkeypatch):
    """A store with one finished, uncompacted run of 3 keys x 2,000 points, params, tags."""
    monkeypatch.setenv("EVTRACK_AUTO_COMPACT", "false")
    evtrack.set_tracking_uri(log_store_uri)
    client = evtrack.MlflowClient(log_store_uri)
    with evtrack.start_run() as run:
        evtrack.log_params({"alpha": 0.5, "layers": 3})
        evtrack.set_tag("team", "a")
        for i in range(2000):
            for key in ("loss", "acc", "lr"):
                evtrack.log_metric(key, i * 0.5, step=i)
            if i % 500 == 0:
                evtrack.flush()
        evtrack.set_tag("team", "b")
    return client, run.info.experiment_id, run.info.run_id


def test_compact_run_keeps_every_event_once(run_store, monkeypatch):
    client, exp, run_id = run_store
    store = client.store.layout
    before = load_events(store)
    result = compaction.compact_run(store, exp, run_id)
    assert result.segments > 0 and not result.gave_up
    m = read_manifest(store, exp)
    assert m.version >= 1 and len(m.full) == 1 and len(m.reduced) == 1
    after = load_events(store)
    assert identities(after) == identities(before)
    assert views(after) == views(before)
    # nothing left to do: a second compaction is a no-op
    again = compaction.compact_run(store, exp, run_id)
    assert again.segments == 0 and again.version == m.version


def test_reduced_read_gives_the_same_answers(run_store):
    client, exp, run_id = run_store
    store = client.store.layout
    full = load_events(store)
    compaction.compact_run(store, exp, run_id)
    reduced = load_events(store, history=False)
    assert reduced.num_rows < full.num_rows / 100
    names = [n for n in VIEW_NAMES if n not in ("metrics", "events")]
    assert views(reduced, names) == views(full, names)
    one = load_events(store, [exp], run_id, history=False)
    assert views(one, ["latest_metrics", "params", "tags"]) == views(
        load_events(store, [exp], run_id), ["latest_metrics", "params", "tags"]
    )
    run = client.get_run(run_id)
    assert run.data.params == {"alpha": "0.5", "layers": "3"}
    assert run.data.tags["team"] == "b"
    assert run.data.metrics == {"loss": 999.5, "acc": 999.5, "lr": 999.5}


def test_full_file_is_sorted_with_row_groups(tmp_path):
    store = Store("file://" + str(tmp_path / "s"))
    client = evtrack.MlflowClient(str(tmp_path / "s"))
    exp = client.create_experiment("big")
    run = client.create_run(exp)
    import numpy as np

    n = 300_000
    for key in ("b", "a"):
        client.log_metric_series(run.info.run_id, key, np.arange(n, dtype=float)[::-1])
    client.flush()
    compaction.compact_run(store, exp, run.info.run_id)
    m = read_manifest(store, exp)
    (full,) = m.full
    pf = pq.ParquetFile(f"{tmp_path}/s/experiments/{exp}/compacted/{full.name}")
    assert pf.metadata.num_row_groups >= 4
    assert all(
        pf.metadata.row_group(i).num_rows <= compaction.FULL_ROW_GROUP
        for i in range(pf.metadata.num_row_groups)
    )
    t = pf.read(columns=["kind", "key", "step"])
    rows = list(zip(*(t[c].to_pylist() for c in ("kind", "key", "step")), strict=True))
    assert rows == sorted(rows, key=lambda r: (r[0], r[1], -1 if r[2] is None else r[2]))
    hist = client.get_metric_history_arrow(run.info.run_id, "a")
    assert hist["step"].to_pylist() == list(range(n))


def test_experiment_compaction_merges_files(log_store_uri):
    evtrack.set_tracking_uri(log_store_uri)
    client = evtrack.MlflowClient(log_store_uri)
    exp = client.create_experiment("many")
    store = client.store.layout
    for i in range(10):
        with evtrack.start_run(experiment_id=exp):
            evtrack.log_param("i", i)
            evtrack.log_metric("m", i)
    before = load_events(store, [exp])
    m = read_manifest(store, exp)
    assert len(m.files) < 20  # auto-compaction at run end, with tier merges
    compaction.compact_experiment(store, exp)
    m = read_manifest(store, exp)
    assert len(m.full) == 1 and len(m.reduced) == 1
    after = load_events(store, [exp])
    assert identities(after) == identities(before)
    assert len(client.search_runs([exp])) == 10
    assert len(client.search_runs([exp], "params.i = '3'")) == 1


def test_auto_compaction_can_be_turned_off(tmp_path, monkeypatch):
    monkeypatch.setenv("EVTRACK_AUTO_COMPACT", "false")
    evtrack.set_tracking_uri(tmp_path / "s")
    with evtrack.start_run() as run:
        evtrack.log_metric("m", 1.0)
    store = evtrack.MlflowClient(str(tmp_path / "s")).store.layout
    assert read_manifest(store, run.info.experiment_id).version == 0
    monkeypatch.setenv("EVTRACK_AUTO_COMPACT", "true")
    monkeypatch.setenv("EVTRACK_AUTO_COMPACT_MIN_EVENTS", "0")
    with evtrack.start_run() as run2:
        evtrack.log_metric("m", 1.0)
    assert read_manifest(store, run2.info.experiment_id).version >= 1


def test_end_run_compacts_only_runs_of_enough_events(tmp_path):
    evtrack.set_tracking_uri(tmp_path / "s")
    with evtrack.start_run() as small:
        for i in range(10):
            evtrack.log_metric("m", float(i), step=i)
    store = evtrack.MlflowClient(str(tmp_path / "s")).store.layout
    exp = small.info.experiment_id
    assert read_manifest(store, exp).version == 0  # a few JSONL segments: left as they are
    with evtrack.start_run() as big:
        for i in range(1500):
            evtrack.log_metric("m", float(i), step=i)
    m = read_manifest(store, exp)
    assert m.version >= 1 and any(f.may_hold(big.info.run_id) for f in m.full)
    assert not any(f.may_hold(small.info.run_id) for f in m.full)
    client = evtrack.MlflowClient(str(tmp_path / "s"))
    assert len(client.get_metric_history(small.info.run_id, "m")) == 10
    assert len(client.get_metric_history(big.info.run_id, "m")) == 1500


# -- races, interruptions, damage ----------------------------------------------------------


def _two_runs(tmp_path):
    uri = str(tmp_path / "s")
    client = evtrack.MlflowClient(uri)
    exp = client.create_experiment("race")
    runs = [client.create_run(exp).info.run_id for _ in range(2)]
    for r in runs:
        for i in range(100):
            client.log_metric(r, "m", i, step=i)
        client.flush()
    return client, exp, runs


def _race(monkeypatch, first, second):
    """Run ``first`` until it is about to commit, run ``second`` fully, then finish first."""
    real = compaction.commit
    paused, resume = threading.Event(), threading.Event()
    owner = {}

    def slow_commit(*args, **kwargs):
        if threading.current_thread() is owner.get("t"):
            paused.set()
            resume.wait(10)
        return real(*args, **kwargs)

    monkeypatch.setattr(compaction, "commit", slow_commit)
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("first", first()))
    owner["t"] = t
    t.start()
    assert paused.wait(10)
    out["second"] = second()
    resume.set()
    t.join(10)
    return out["first"], out["second"]


def test_two_compactions_of_one_run_never_double_cover(tmp_path, monkeypatch):
    client, exp, (r1, _) = _two_runs(tmp_path)
    store = client.store.layout
    before = load_events(store, [exp])
    a, b = _race(
        monkeypatch,
        lambda: compaction.compact_run(store, exp, r1),
        lambda: compaction.compact_run(store, exp, r1),
    )
    assert b.segments > 0
    assert a.segments == 0  # lost: it re-read the manifest and found nothing left to do
    after = load_events(store, [exp])
    assert identities(after) == identities(before)
    assert doctor(store).ok


def test_compactions_of_different_runs_both_land(tmp_path, monkeypatch):
    client, exp, (r1, r2) = _two_runs(tmp_path)
    store = client.store.layout
    before = load_events(store, [exp])
    a, b = _race(
        monkeypatch,
        lambda: compaction.compact_run(store, exp, r1),
        lambda: compaction.compact_run(store, exp, r2),
    )
    assert a.segments > 0 and b.segments > 0  # rebased onto the other's manifest
    m = read_manifest(store, exp)
    assert {f.runs for f in m.full} == {(r1,), (r2,)}
    assert identities(load_events(store, [exp])) == identities(before)


def test_experiment_compaction_racing_run_compaction(tmp_path, monkeypatch):
    client, exp, (r1, r2) = _two_runs(tmp_path)
    store = client.store.layout
    before = load_events(store, [exp])
    _race(
        monkeypatch,
        lambda: compaction.compact_experiment(store, exp),
        lambda: compaction.compact_run(store, exp, r2),
    )
    assert identities(load_events(store, [exp])) == identities(before)
    assert not snapshot.take_snapshot(store, exp).segments  # the retry covered the rest
    assert doctor(store).ok


def test_interrupted_compaction_leaves_only_unreferenced_files(tmp_path, monkeypatch):
    client, exp, (r1, _) = _two_runs(tmp_path)
    store = client.store.layout
    before = load_events(store, [exp])

    def crash(*args, **kwargs):
        raise SystemExit("killed")

    monkeypatch.setattr(compaction, "commit", crash)
    with pytest.raises(SystemExit):
        compaction.compact_run(store, exp, r1)
    monkeypatch.undo()
    assert read_manifest(store, exp).version == 0
    assert identities(load_events(store, [exp])) == identities(before)
    report = doctor(store)
    assert report.ok
    assert {f.kind for f in report.findings} == {"unreferenced_file"}
    assert gc(store, grace_seconds=3600).compacted_files_deleted == 0
    assert gc(store, grace_seconds=0).compacted_files_deleted == 2
    assert doctor(store).findings == []


def test_reader_retries_when_gc_removes_files_under_it(tmp_path, monkeypatch):
    client, exp, (r1, r2) = _two_runs(tmp_path)
    store = client.store.layout
    before = load_events(store, [exp])
    real = snapshot.take_snapshot
    calls = []

    def snapshot_then_collect(*args, **kwargs):
        snap = real(*args, **kwargs)
        if not calls:  # between this reader's listing and its reads
            calls.append(1)
            compaction.compact_run(store, exp, r1)
            gc(store, grace_seconds=0)
        return snap

    store.cache = type(store.cache)()  # nothing cached: the reader must fetch
    monkeypatch.setattr(snapshot, "take_snapshot", snapshot_then_collect)
    after = load_events(store, [exp])
    assert calls and identities(after) == identities(before)


def test_damaged_segment_is_reported_and_skipped(tmp_path, caplog):
    client, exp, (r1, r2) = _two_runs(tmp_path)
    store = client.store.layout
    before = load_events(store, [exp]).num_rows
    bad = f"{store.events_dir(exp)}/{SegmentName(r1, 'feedbeef', 7, 'jsonl').name}"
    store.put(bad, b'{"evtrack_segment": 1}\n{"writer": "feedbeef", "seq": 1, "ti')
    bad2 = f"{store.events_dir(exp)}/{SegmentName(r1, 'feedbeef', 8, 'parquet').name}"
    store.put(bad2, b"PAR1 not really")
    with caplog.at_level(logging.WARNING):
        assert load_events(store, [exp]).num_rows == before
    assert bad in snapshot.damaged_files() and bad2 in snapshot.damaged_files()
    assert "damaged" in caplog.text
    compaction.compact_run(store, exp, r1)  # skips them too, and leaves them uncovered
    assert load_events(store, [exp]).num_rows == before
    report = doctor(store)
    assert {f.kind for f in report.problems} == {"damaged_segment"}
    assert doctor(store, repair=True).ok
    assert doctor(store).ok
    assert load_events(store, [exp]).num_rows == before


def test_damaged_compacted_file_falls_back_to_segments(tmp_path):
    client, exp, (r1, r2) = _two_runs(tmp_path)
    store = client.store.layout
    before = load_events(store, [exp])
    compaction.compact_run(store, exp, r1)
    (full,) = read_manifest(store, exp).full
    path = f"{store.path('experiments', exp, 'compacted')}/{full.name}"
    with open(path, "wb") as f:
        f.write(b"garbage")
    store.cache = type(store.cache)()
    assert identities(load_events(store, [exp])) == identities(before)
    assert not doctor(store).ok
    assert doctor(store, repair=True).ok
    assert identities(load_events(store, [exp])) == identities(before)


# -- property: views over reduced ∪ uncovered == views over all events ----------------------

_RUNS = ["r1", "r2"]


@st.composite
def event_logs(draw):
    n = draw(st.integers(1, 40))
    rows = []
    seqs = {"w1": 0, "w2": 0}
    for _ in range(n):
        kind = draw(
            st.sampled_from(
                [
                    "metric",
                    "param",
                    "tag",
                    "run",
                    "experiment",
                    "artifact",
                    "input",
                    "experiment_tag",
                ]
            )
        )
        writer = draw(st.sampled_from(["w1", "w2"]))
        seq = seqs[writer]
        seqs[writer] += 1
        run = None if kind in ("experiment", "experiment_tag") else draw(st.sampled_from(_RUNS))
        key = draw(st.sampled_from(["a", "b"]))
        row = dict(
            writer=writer,
            seq=seq,
            time=draw(st.integers(0, 3)),
            kind=kind,
            experiment_id="1",
            run_id=run,
            key=key,
            value=None,
            step=None,
            timestamp=None,
            text=None,
        )
        if kind == "metric":
            row["value"] = draw(st.sampled_from([0.0, 1.0, -1.0, math.nan, math.inf, -math.inf]))
            row["step"] = draw(st.integers(0, 2))
            row["timestamp"] = draw(st.integers(0, 2))
            row["time"] = row["timestamp"]
        elif kind == "artifact":
            if draw(st.booleans()):
                row["value"] = 1.0
                row["text"] = json.dumps({"size": draw(st.integers(0, 9)), "sha256": "x"})
        elif kind == "input":
            row["text"] = json.dumps({"dataset": {"name": key}, "context": "train"})
        elif kind in ("run", "experiment"):
            row["key"] = draw(
                st.sampled_from(
                    ["experiment_id", "start_time"] if kind == "run" else ["name", "creation_time"]
                )
            )
            row["text"] = draw(st.sampled_from(["1", "2", None]))
        else:
            row["text"] = draw(st.sampled_from(["x", "y", None]))
        rows.append(row)
    # each writer's events, per scope, split into segments in order
    cuts = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    plan = draw(st.lists(st.sampled_from(["r1", "r2", "exp", "none"]), min_size=1, max_size=4))
    return rows, cuts, plan


def _write_segments(store: Store, rows, cuts) -> None:
    schema = event_schema()
    seg_no = {"w1": 0, "w2": 0}
    groups: dict[tuple[str, str], list] = {}
    for row, cut in zip(rows, cuts, strict=True):
        scope = (row["writer"], row["run_id"] or "_")
        groups.setdefault(scope, []).append(row)
        if cut:
            _flush(store, schema, seg_no, scope, groups.pop(scope))
    for scope, chunk in list(groups.items()):
        _flush(store, schema, seg_no, scope, chunk)


def _flush(store, schema, seg_no, scope, chunk):
    writer, run = scope
    table = pa.Table.from_pylist(chunk, schema=schema)
    fmt = "jsonl" if len(chunk) % 2 else "parquet"
    name = SegmentName(run, writer, seg_no[writer], fmt).name
    seg_no[writer] += 1
    store.put(f"{store.events_dir('1')}/{name}", encode(table, fmt))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(event_logs())
def test_views_over_compacted_equal_views_over_all_events(log):
    rows, cuts, plan = log
    store = Store(f"memory://evtrack-prop-{uuid.uuid4().hex}")
    try:
        _write_segments(store, rows, cuts)
        all_events = pa.Table.from_pylist(rows, schema=event_schema())
        expected = views(all_events)
        for step in plan:
            if step in _RUNS:
                compaction.compact_run(store, "1", step)
            elif step == "exp":
                compaction.compact_experiment(store, "1")
            full = load_events(store, ["1"])
            assert identities(full) == identities(all_events)
            assert views(full) == expected
            reduced = load_events(store, ["1"], history=False)
            names = [n for n in VIEW_NAMES if n not in ("metrics", "events")]
            assert views(reduced, names) == {n: expected[n] for n in names}
        for run in _RUNS:  # the get_run path, after the last step
            one = load_events(store, ["1"], run, history=False)
            mine = all_events.filter(pa.compute.equal(all_events["run_id"], run))
            assert views(one, ["params", "tags", "latest_metrics", "inputs"]) == views(
                mine, ["params", "tags", "latest_metrics", "inputs"]
            )
    finally:
        store.fs.rm(store.root, recursive=True)


def test_coverage_ranges_only_join_seen_sequences():
    segs = [SegmentName("r", "w", s, "jsonl") for s in (0, 1, 2, 5)]
    cov = manifest.Coverage().union(segs)
    assert cov.to_json() == {"r": {"w": [[0, 2], 5]}}
    assert not cov.covers(SegmentName("r", "w", 3, "jsonl"))
    assert cov.covers(SegmentName("r", "w", 5, "parquet"))
    assert manifest.Coverage.from_json(cov.to_json()).to_json() == cov.to_json()
    assert cov.without(segs[:2]).to_json() == {"r": {"w": [2, 5]}}
    assert cov.without(segs).to_json() == {}


def test_reduce_prefilter_of_long_series_keeps_the_latest_metric():
    import numpy as np

    rng = np.random.default_rng(0)
    n = 120_000
    # no NaN: latest_metrics picks among NaN ties at one (step, timestamp) in scan order
    values = rng.choice([0.0, 1.0, -math.inf, math.inf], n)
    rows = pa.table(
        {
            "writer": ["w"] * n,
            "seq": np.arange(n),
            "time": rng.integers(0, 3, n),
            "kind": ["metric"] * (n - 2) + ["param", "tag"],
            "experiment_id": ["1"] * n,
            "run_id": rng.choice(["r1", "r2"], n),
            "key": rng.choice(["a", "b", "c"], n),
            "value": values,
            "step": rng.integers(0, 50, n),
            "timestamp": rng.integers(0, 3, n),
            "text": [None] * n,
        }
    ).cast(event_schema())
    reduced = compaction.reduce_events(rows)
    assert reduced.num_rows < 2_000
    names = ["latest_metrics", "params", "tags"]
    assert views(reduced.cast(event_schema()), names) == views(rows, names)


def test_count_events_reads_only_kinds_and_equals_the_views(log_store_uri, monkeypatch):
    """What `evtrack import` prints beside the source: every metric point once, from the
    JSONL and Parquet segments and the compacted files, before and after compaction."""
    import numpy as np

    monkeypatch.setenv("EVTRACK_AUTO_COMPACT", "false")
    client = evtrack.MlflowClient(log_store_uri)
    exp = client.create_experiment("counts")
    store = client.store.layout

    def views_count() -> int:
        return client.sql("select count(*) from metrics").fetchall()[0][0]

    for i in range(3):
        run_id = client.create_run(exp).info.run_id
        client.log_param(run_id, "p", str(i))
        client.log_metric(run_id, "m", 1.0, step=0)  # JSONL
        client.log_metric_series(run_id, "s", np.arange(5_000, dtype="float64"))  # Parquet
        client.set_terminated(run_id)
    client.flush()
    assert snapshot.count_events(store, [exp], "metric") == views_count() == 3 * 5_001
    compaction.compact_run(store, exp, run_id)  # one run compacted, two not
    assert snapshot.count_events(store, [exp], "metric") == views_count()
    compaction.compact_experiment(store, exp)
    assert snapshot.count_events(store, [exp], "metric") == views_count() == 3 * 5_001
    assert snapshot.count_events(store, [exp], "param") == 3
    counts = client.store.counts([exp])
    assert counts == {
        "runs": 3,
        "deleted runs": 0,
        "params": 3,
        "tags": counts["tags"],
        "metric points": 15_003,
    }


def test_count_events_gives_up_on_a_damaged_segment(tmp_path):
    client = evtrack.MlflowClient(str(tmp_path / "s"))
    exp = client.create_experiment("damaged")
    run_id = client.create_run(exp).info.run_id
    client.log_metric(run_id, "m", 1.0)
    client.flush()
    store = client.store.layout
    (path, _), *_ = snapshot.list_segments(store, exp, run_id)
    with open(path, "wb") as f:
        f.write(b"not a segment")
    assert snapshot.count_events(store, [exp], "metric") is None
    assert client.store.counts([exp])["metric points"] == 0  # the views skip it
