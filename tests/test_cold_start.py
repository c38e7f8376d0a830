"""A short training script touches only the write path: no DuckDB, pyarrow, pandas or
fsspec on a local store; and the JSONL shortcut that makes that possible agrees with the
views (timings live in benchmarks/bench_cold_start.py)."""

from __future__ import annotations

import json
import random
import sys

import pytest
from helpers import run_python, subprocess_env

import evtrack
from evtrack.store.log.attributes import experiment_from_segments, run_stage_from_segments

SCRIPT = """
import json, sys, evtrack
evtrack.set_experiment(sys.argv[1]) if len(sys.argv) > 1 else None
with evtrack.start_run() as run:
    evtrack.log_param("alpha", 0.5)
    evtrack.set_tag("t", "x")
    evtrack.log_metric("rmse", 0.25)
heavy = sorted(m for m in ("duckdb", "pyarrow", "pandas", "numpy", "flask", "fsspec")
               if m in sys.modules)
print("RESULT " + json.dumps({"heavy": heavy, "run": run.info.run_id}))
"""


@pytest.mark.parametrize("experiment", [None, "named"])
def test_a_short_script_imports_nothing_heavy(tmp_path, experiment):
    store = tmp_path / "store"
    env = subprocess_env(store)
    args = [experiment] if experiment else []
    runs = []
    for _ in range(2):  # a new store, then one that already holds a run
        out = run_python(SCRIPT, *args, env=env).stdout
        res = json.loads(out.split("RESULT ", 1)[1])
        assert res["heavy"] == [], res
        runs.append(res["run"])
    client = evtrack.MlflowClient(str(store))
    for run_id in runs:
        run = client.get_run(run_id)
        assert run.info.status == "FINISHED"
        assert run.data.params == {"alpha": "0.5"} and run.data.tags["t"] == "x"
        assert run.data.metrics == {"rmse": 0.25}


def test_import_evtrack_alone_loads_no_heavy_module(tmp_path):
    code = (
        "import sys, evtrack; print(sorted(m for m in ('duckdb', 'pyarrow', 'pandas', 'flask')"
        " if m in sys.modules))"
    )
    assert run_python(code, env=subprocess_env(tmp_path)).stdout.strip() == "[]"


def test_the_jsonl_shortcut_agrees_with_the_views(tmp_path):
    """Random renames, deletes, restores and tag changes from several writers with tied
    times: the standard-library fold equals the views' fold."""
    rng = random.Random(7)
    uri = str(tmp_path / "s")
    client = evtrack.MlflowClient(uri)
    exp = client.create_experiment("e0")
    run_id = client.create_run(exp).info.run_id
    writers = [client.writer]
    from evtrack.store.log.writer import Writer

    writers += [Writer(client.store.layout) for _ in range(2)]
    t0 = 1_700_000_000_000
    for i in range(200):
        w = rng.choice(writers)
        t = t0 + rng.randrange(5)  # many ties: seq and writer decide
        choice = rng.randrange(4)
        if choice == 0:
            w.add(exp, None, "experiment", "name", f"e{i}", time_ms=t)
        elif choice == 1:
            stage = rng.choice(["active", "deleted"])
            w.add(exp, None, "experiment", "lifecycle_stage", stage, time_ms=t)
            w.add(exp, run_id, "run", "lifecycle_stage", stage, time_ms=t)
        elif choice == 2:
            w.add(
                exp,
                None,
                "experiment_tag",
                f"k{rng.randrange(3)}",
                rng.choice([None, "v"]),
                time_ms=t,
            )
        else:
            w.add(exp, None, "experiment", "artifact_location", f"file:///a{i}", time_ms=t)
        if rng.random() < 0.1:
            w.flush()
    for w in writers:
        w.flush()
    light = experiment_from_segments(client.store.layout, exp)
    full = client.get_experiment(exp)
    assert light is not None
    assert (light.name, light.artifact_location, light.lifecycle_stage, light.tags) == (
        full.name,
        full.artifact_location,
        full.lifecycle_stage,
        full.tags,
    )
    con = client.store._read([exp], run_id)
    stage = con.execute("select lifecycle_stage from runs").fetchone()[0]
    assert run_stage_from_segments(client.store.layout, exp, run_id) == stage
    for w in writers[1:]:
        w.close()
    for i in range(40):  # a long run's many segments: left to the views, which cache
        client.writer.add(exp, run_id, "tag", "n", str(i))
        client.writer.flush()
    assert run_stage_from_segments(client.store.layout, exp, run_id) is None
    client.set_tag(run_id, "after", "many")
    assert client.get_run(run_id).data.tags["n"] == "39"


def test_the_shortcut_steps_aside_for_compacted_events(tmp_path):
    from evtrack.store.log.compaction import compact_experiment

    uri = str(tmp_path / "s")
    client = evtrack.MlflowClient(uri)
    exp = client.create_experiment("e")
    run_id = client.create_run(exp).info.run_id
    client.flush()
    assert run_stage_from_segments(client.store.layout, exp, run_id) == "active"
    compact_experiment(client.store.layout, exp)
    assert experiment_from_segments(client.store.layout, exp) is None
    assert run_stage_from_segments(client.store.layout, exp, run_id) is None
    # ... and the client still reads them through the views.
    client.set_tag(run_id, "after", "compaction")
    assert client.get_run(run_id).data.tags["after"] == "compaction"
    assert sys.modules.get("duckdb") is not None


def test_a_parquet_flush_does_not_import_pandas(tmp_path):
    code = """
import json, sys, evtrack
with evtrack.start_run():
    evtrack.log_param("p", 1)
    for i in range(2000):  # over jsonl_max_events: one Parquet segment
        evtrack.log_metric("a" if i % 2 else "b", float(i), step=i)
print("RESULT " + json.dumps(["pyarrow" in sys.modules, "pandas" in sys.modules]))
"""
    # Compaction (DuckDB) may load pandas; the flush itself must not.
    env = subprocess_env(tmp_path / "s", EVTRACK_AUTO_COMPACT="0")
    out = run_python(code, env=env).stdout
    assert json.loads(out.split("RESULT ", 1)[1]) == [True, False]


@pytest.mark.parametrize("compacted", [False, True])
def test_a_fresh_process_reads_without_pandas(tmp_path, compacted):
    """A first search and a first metric history read import pyarrow and DuckDB, not
    pandas (pyarrow loads it, ~0.3 s, as soon as a Python value meets its compute or
    array constructors)."""
    write = """
import json, sys, evtrack
from evtrack.store.log.compaction import compact_experiment
with evtrack.start_run() as run:
    evtrack.log_param("alpha", "0.3")
    for i in range(60_000):  # enough rows for any size-triggered path of the fold
        evtrack.log_metric("loss", float(i), step=i)
with evtrack.start_run():  # a second run: a compacted file then holds both
    evtrack.log_param("alpha", "0.1")
if sys.argv[1] == "compact":
    compact_experiment(evtrack.MlflowClient().store.layout, run.info.experiment_id)
print("RESULT " + json.dumps(run.info.experiment_id))
"""
    read = """
import json, sys, evtrack
c = evtrack.MlflowClient()
(run,) = c.search_runs([sys.argv[1]], "metrics.loss > 100 and params.alpha = '0.3'")
points = c.get_metric_history_arrow(run.info.run_id, "loss").num_rows
assert c.get_run(run.info.run_id).data.params == {"alpha": "0.3"}
print("RESULT " + json.dumps([run.data.metrics["loss"], points, "pandas" in sys.modules]))
"""
    env = subprocess_env(tmp_path / "s", EVTRACK_AUTO_COMPACT="0", EVTRACK_INDEX_CACHE_DIR="off")
    out = run_python(write, "compact" if compacted else "-", env=env).stdout
    experiment_id = json.loads(out.split("RESULT ", 1)[1])
    out = run_python(read, experiment_id, env=env).stdout
    assert json.loads(out.split("RESULT ", 1)[1]) == [59_999.0, 60_000, False]
