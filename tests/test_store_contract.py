"""The store contract: what every backend must do, the same way (STYLE.md item 9).

:class:`StoreContract` holds the behaviours; it needs a ``uri`` fixture giving a fresh,
empty store. :class:`TestStoreContract` runs it on every backend of
``conftest.STORE_BACKENDS``: ``memory://``, a local folder, S3 on a loopback moto server,
and ``rest``, a real ``evtrack server`` on loopback (the REST store). A backend with
special needs can instead subclass ``StoreContract`` in its own module and define ``uri``
itself (import the class, not the ``Test`` one).

The search grammar, validation rules, compaction and races have their own test modules;
here each appears only as far as "the store keeps and returns what was written".
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import time
from pathlib import Path

import fsspec
import numpy as np
import pytest

import evtrack
from evtrack import MlflowClient, ViewType
from evtrack.entities import Metric, Param, RunTag
from evtrack.errors import (
    EvtrackError,
    ExperimentNotFound,
    InvalidParameterValue,
    ResourceAlreadyExists,
    RunNotFound,
    StoreError,
    StoreVersionError,
)
from evtrack.store.log.layout import STORE_FORMAT_VERSION
from evtrack.store.rest.transport import is_http_uri

INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)

#: The documented view schemas (evtrack/store/log/views.py, docs/): a public, versioned contract.
DOCUMENTED_VIEWS = {
    "events": [
        "writer",
        "seq",
        "time",
        "kind",
        "experiment_id",
        "run_id",
        "key",
        "value",
        "step",
        "timestamp",
        "text",
    ],
    "experiments": [
        "experiment_id",
        "name",
        "artifact_location",
        "lifecycle_stage",
        "creation_time",
        "last_update_time",
    ],
    "experiment_tags": ["experiment_id", "key", "value"],
    "runs": [
        "run_id",
        "experiment_id",
        "run_name",
        "user_id",
        "status",
        "start_time",
        "end_time",
        "lifecycle_stage",
        "artifact_uri",
        "deleted_time",
    ],
    "params": ["experiment_id", "run_id", "key", "value"],
    "tags": ["experiment_id", "run_id", "key", "value"],
    "metrics": ["experiment_id", "run_id", "key", "value", "step", "timestamp"],
    "latest_metrics": ["experiment_id", "run_id", "key", "value", "step", "timestamp"],
    "artifacts": ["experiment_id", "run_id", "path", "size", "sha256", "time"],
}


def now_ms() -> int:
    return int(time.time() * 1000)


def same_float(a: float, b: float) -> bool:
    """Equal as stored values: NaN equals NaN, and the sign of zero counts."""
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b and math.copysign(1, a) == math.copysign(1, b)


def drop_store(uri: str) -> None:
    fs, root = fsspec.core.url_to_fs(uri)
    if fs.exists(root):
        fs.rm(root, recursive=True)


class StoreContract:
    """Store behaviours, independent of the filesystem under the store."""

    @pytest.fixture
    def uri(self) -> str:  # pragma: no cover - subclasses provide it
        raise NotImplementedError

    @pytest.fixture
    def client(self, uri: str) -> MlflowClient:
        evtrack.set_tracking_uri(uri)
        return MlflowClient(uri)

    # -- experiments ---------------------------------------------------------------------

    def test_default_experiment_is_id_0(self, client):
        exp = client.get_experiment("0")
        assert (exp.experiment_id, exp.name, exp.lifecycle_stage) == ("0", "Default", "active")
        assert client.get_experiment_by_name("Default").experiment_id == "0"
        assert "0" in [e.experiment_id for e in client.search_experiments()]
        assert client.create_run("0").info.experiment_id == "0"
        with pytest.raises(InvalidParameterValue, match="default experiment"):
            client.delete_experiment("0")

    def test_create_and_get_experiment(self, client, uri):
        before = now_ms()
        exp_id = client.create_experiment("exp-a", tags={"team": "vision", "n": 3})
        assert exp_id != "0"
        exp = client.get_experiment(exp_id)
        assert exp.name == "exp-a"
        assert exp.lifecycle_stage == "active"
        assert exp.tags == {"team": "vision", "n": "3"}
        assert before <= exp.creation_time <= now_ms()
        assert exp.last_update_time >= exp.creation_time
        assert exp.artifact_location
        assert client.get_experiment_by_name("exp-a").experiment_id == exp_id
        assert client.get_experiment_by_name("no-such-experiment") is None

        # A server takes only locations on its allow-list (docs/security.md): a proxied
        # mlflow-artifacts:/ URI, which it maps under its artifact root and shows back.
        if is_http_uri(uri):
            custom = "mlflow-artifacts:/exp-b-custom-artifacts"
        else:
            custom = uri + "-custom-artifacts"
        other = client.create_experiment("exp-b", artifact_location=custom)
        assert other not in ("0", exp_id)
        assert client.get_experiment(other).artifact_location == custom

        with pytest.raises(ResourceAlreadyExists) as info:
            client.create_experiment("exp-a")
        assert info.value.error_code == "RESOURCE_ALREADY_EXISTS"
        assert "exp-a" in info.value.message

        with pytest.raises(ExperimentNotFound) as missing:
            client.get_experiment("987654")
        assert isinstance(missing.value, LookupError)
        assert missing.value.error_code == "RESOURCE_DOES_NOT_EXIST"
        assert missing.value.get_http_status_code() == 404

    def test_rename_delete_restore_experiment_are_events(self, client):
        exp_id = client.create_experiment("old-name")
        client.rename_experiment(exp_id, "new-name")
        assert client.get_experiment(exp_id).name == "new-name"
        assert client.get_experiment_by_name("old-name") is None
        assert client.get_experiment_by_name("new-name").experiment_id == exp_id
        # The old name is free again.
        reused = client.create_experiment("old-name")
        assert reused != exp_id

        client.delete_experiment(exp_id)
        assert client.get_experiment(exp_id).lifecycle_stage == "deleted"
        active = [e.experiment_id for e in client.search_experiments(ViewType.ACTIVE_ONLY)]
        deleted = [e.experiment_id for e in client.search_experiments(ViewType.DELETED_ONLY)]
        every = [e.experiment_id for e in client.search_experiments(ViewType.ALL)]
        assert exp_id not in active and exp_id in deleted and exp_id in every
        with pytest.raises(InvalidParameterValue, match="active"):
            client.create_run(exp_id)
        with pytest.raises(ResourceAlreadyExists):  # a deleted experiment keeps its name
            client.create_experiment("new-name")

        client.restore_experiment(exp_id)
        assert client.get_experiment(exp_id).lifecycle_stage == "active"
        # Nothing was edited in place: the log holds every step.
        history = client.sql(
            "select key, text from events where kind = 'experiment' and experiment_id = ? "
            "and key in ('name', 'lifecycle_stage') order by time, seq",
            [exp_id],
        ).fetchall()
        assert [t for k, t in history if k == "name"] == ["old-name", "new-name"]
        assert [t for k, t in history if k == "lifecycle_stage"] == [
            "active",
            "deleted",
            "active",
        ]

    def test_experiment_tags(self, client):
        exp_id = client.create_experiment("tagged")
        client.set_experiment_tag(exp_id, "owner", "ana")
        client.set_experiment_tag(exp_id, "owner", "bo")
        client.set_experiment_tag(exp_id, "keep", "yes")
        assert client.get_experiment(exp_id).tags == {"owner": "bo", "keep": "yes"}
        client.delete_experiment_tag(exp_id, "owner")
        assert client.get_experiment(exp_id).tags == {"keep": "yes"}
        texts = client.sql(
            "select text from events where kind = 'experiment_tag' and key = 'owner' "
            "order by time, seq"
        ).fetchall()
        assert [t for (t,) in texts] == ["ana", "bo", None]

    # -- runs ------------------------------------------------------------------------------

    def test_run_lifecycle(self, client):
        exp_id = client.create_experiment("lifecycle")
        start = 1_600_000_000_123
        run = client.create_run(exp_id, start_time=start, tags={"k": "v"}, run_name="first")
        run_id = run.info.run_id
        assert len(run_id) == 32 and int(run_id, 16) >= 0
        got = client.get_run(run_id)
        assert got.info.run_id == run_id
        assert got.info.experiment_id == exp_id
        assert got.info.status == "RUNNING"
        assert got.info.start_time == start
        assert got.info.end_time is None
        assert got.info.lifecycle_stage == "active"
        assert got.info.run_name == "first"
        assert got.info.user_id
        assert got.info.artifact_uri.endswith(f"{run_id}/artifacts")
        assert got.data.tags["k"] == "v"
        assert got.data.tags["mlflow.runName"] == "first"

        client.set_terminated(run_id, "FAILED", end_time=start + 5)
        got = client.get_run(run_id)
        assert (got.info.status, got.info.end_time) == ("FAILED", start + 5)

        client.delete_run(run_id)
        assert client.get_run(run_id).info.lifecycle_stage == "deleted"

        def ids(view):
            return [r.info.run_id for r in client.search_runs([exp_id], run_view_type=view)]

        assert ids(ViewType.ACTIVE_ONLY) == []
        assert ids(ViewType.DELETED_ONLY) == [run_id]
        assert ids(ViewType.ALL) == [run_id]
        with pytest.raises(InvalidParameterValue, match="active"):
            client.log_param(run_id, "p", 1)
        deleted_time = client.sql(
            "select deleted_time from runs where run_id = ?", [run_id]
        ).fetchall()[0][0]
        assert deleted_time is not None

        client.restore_run(run_id)
        assert client.get_run(run_id).info.lifecycle_stage == "active"
        with pytest.raises(InvalidParameterValue, match="deleted"):
            client.restore_run(run_id)
        with pytest.raises(RunNotFound) as missing:
            client.get_run("0" * 32)
        assert missing.value.error_code == "RESOURCE_DOES_NOT_EXIST"

    def test_params_are_immutable(self, client, monkeypatch, uri):
        run_id = client.create_run("0").info.run_id
        assert client.log_param(run_id, "alpha", 0.5) == 0.5
        client.log_param(run_id, "alpha", 0.5)  # the same value again is fine
        client.log_param(run_id, "alpha", "0.5")  # so is the same text
        client.log_param(run_id, "n", 3)
        client.log_param(run_id, "flag", True)
        client.log_param(run_id, "nothing", None)
        with pytest.raises(InvalidParameterValue) as info:
            client.log_param(run_id, "alpha", 0.6)
        message = info.value.message
        assert "Changing param values is not allowed" in message
        assert "alpha" in message and "0.5" in message and "0.6" in message
        expected = {"alpha": "0.5", "n": "3", "flag": "True", "nothing": "None"}
        assert client.get_run(run_id).data.params == expected

        # A process that has not seen the run before reads the param from the store.
        from evtrack.store.registry import get_store_class

        fresh = MlflowClient(store=get_store_class(uri)(uri))  # knows nothing of the run
        with pytest.raises(InvalidParameterValue, match="Changing param values"):
            fresh.log_param(run_id, "alpha", 1)
        fresh.log_param(run_id, "alpha", "0.5")
        assert fresh.get_run(run_id).data.params == expected

    # -- metrics ---------------------------------------------------------------------------

    def test_metric_values_steps_and_timestamps_round_trip(self, client):
        run_id = client.create_run("0").info.run_id
        values = [0.0, -0.0, -1.5, 1e308, -1e-308, 5e-324, math.nan, math.inf, -math.inf, 7]
        steps = [0, 1, -1, INT64_MAX, INT64_MIN, 2**40, 2, 3, 4, 5]
        stamps = [0, 1, 1_700_000_000_123, 2**62, INT64_MAX, 5, 6, 7, 8, 9]
        points = list(zip(values, steps, stamps, strict=True))
        # Small flushes become JSONL segments, big ones Parquet, arrays Parquet too:
        # each codec must keep every value.
        for value, step, ts in points:
            client.log_metric(run_id, "jsonl", value, timestamp=ts, step=step)
        client.flush()
        for value, step, ts in points:
            client.log_metric(run_id, "parquet", value, timestamp=ts, step=step)
        client.log_batch(run_id, metrics=[Metric("filler", 1.0, 1, i) for i in range(1000)])
        client.flush()
        client.log_metric_series(
            run_id,
            "arrays",
            np.array(values, dtype=np.float64),
            steps=np.array(steps, dtype=np.int64),
            timestamps=np.array(stamps, dtype=np.int64),
        )
        expected = sorted((s, t, float(v)) for v, s, t in points)
        for key in ("jsonl", "parquet", "arrays"):
            history = client.get_metric_history(run_id, key)
            got = sorted((m.step, m.timestamp, m.value) for m in history)
            assert [(s, t) for s, t, _ in got] == [(s, t) for s, t, _ in expected], key
            for (_, _, a), (_, _, b) in zip(got, expected, strict=True):
                assert same_float(a, b), (key, a, b)
            assert all(type(m.value) is float and type(m.step) is int for m in history)
        types = client.sql(
            "select distinct typeof(value), typeof(step), typeof(timestamp) from metrics"
        ).fetchall()
        assert types == [("DOUBLE", "BIGINT", "BIGINT")]

    def test_latest_metric_is_max_step_then_timestamp_then_value(self, client):
        run_id = client.create_run("0").info.run_id
        log = [
            # a: the largest step wins even though another point is newer and larger
            ("a", 1.0, 100, 5),
            ("a", 9.0, 999, 3),
            # b: same step, the later timestamp wins
            ("b", 5.0, 100, 2),
            ("b", 1.0, 200, 2),
            # c: same step and timestamp, the larger value wins
            ("c", 1.0, 100, 2),
            ("c", 3.0, 100, 2),
            ("c", 2.0, 100, 2),
            # d: logged after, with a smaller step: does not win
            ("d", 4.0, 100, 10),
            ("d", 8.0, 500, 9),
            # e: negative steps count as smaller
            ("e", 6.0, 100, 0),
            ("e", 7.0, 900, -1),
        ]
        for key, value, ts, step in log:
            client.log_metric(run_id, key, value, timestamp=ts, step=step)
        expected = {"a": 1.0, "b": 1.0, "c": 3.0, "d": 4.0, "e": 6.0}
        assert client.get_run(run_id).data.metrics == expected
        latest = dict(
            client.sql(
                "select key, value from latest_metrics where run_id = ?", [run_id]
            ).fetchall()
        )
        assert latest == expected
        (found,) = client.search_runs(["0"], "metrics.c = 3")
        assert found.data.metrics == expected

    def test_get_metric_history(self, client):
        run_id = client.create_run("0").info.run_id
        for step, value in [(5, 0.5), (1, 0.1), (3, 0.3), (2, 0.2), (4, 0.4), (3, 0.33)]:
            client.log_metric(run_id, "loss", value, timestamp=1000 + step, step=step)
        client.log_metric(run_id, "other", 1.0)
        history = client.get_metric_history(run_id, "loss")
        assert [(m.step, m.value) for m in history] == [
            (1, 0.1),
            (2, 0.2),
            (3, 0.3),
            (3, 0.33),
            (4, 0.4),
            (5, 0.5),
        ]
        assert all(m.key == "loss" for m in history)
        assert client.get_metric_history(run_id, "never-logged") == []
        assert len(client.sql("select * from metrics where key = 'loss'").fetchall()) == 6

    # -- tags ------------------------------------------------------------------------------

    def test_tags_set_overwrite_delete_keep_history(self, client):
        run_id = client.create_run("0").info.run_id
        client.set_tag(run_id, "stage", "dev")
        client.set_tag(run_id, "stage", "prod")
        client.set_tag(run_id, "n", 3)
        tags = client.get_run(run_id).data.tags
        assert tags["stage"] == "prod" and tags["n"] == "3"
        client.delete_tag(run_id, "stage")
        assert "stage" not in client.get_run(run_id).data.tags
        with pytest.raises(InvalidParameterValue, match="stage"):
            client.delete_tag(run_id, "stage")
        client.set_tag(run_id, "stage", "again")
        assert client.get_run(run_id).data.tags["stage"] == "again"
        texts = client.sql(
            "select text from events where kind = 'tag' and key = 'stage' and run_id = ? "
            "order by time, seq",
            [run_id],
        ).fetchall()
        assert [t for (t,) in texts] == ["dev", "prod", None, "again"]
        assert client.sql(
            "select value from tags where run_id = ? and key = 'stage'", [run_id]
        ).fetchall() == [("again",)]

    # -- artifacts -------------------------------------------------------------------------

    def test_relogged_artifact_replaces_and_keeps_history(self, client, tmp_path):
        run = client.create_run("0")
        run_id = run.info.run_id
        client.log_text(run_id, "first", "notes/readme.txt")
        client.log_text(run_id, "second!", "notes/readme.txt")
        (info,) = client.list_artifacts(run_id, "notes")
        assert (info.path, info.is_dir, info.file_size) == ("notes/readme.txt", False, 7)
        local = client.download_artifacts(run_id, "notes/readme.txt", str(tmp_path))
        with open(local) as f:
            assert f.read() == "second!"

        sha = {t: hashlib.sha256(t.encode()).hexdigest() for t in ("first", "second!")}
        logged = client.sql(
            "select text from events where kind = 'artifact' and key = 'notes/readme.txt' "
            "order by time, seq"
        ).fetchall()
        assert [json.loads(t)["sha256"] for (t,) in logged] == [sha["first"], sha["second!"]]
        current = client.sql("select path, size, sha256 from artifacts").fetchall()
        assert current == [("notes/readme.txt", 7, sha["second!"])]

        if run.info.artifact_uri.startswith("mlflow-artifacts:"):
            return  # behind a server's proxy: its storage layout is not the client's to see
        # The earlier version named in the log is still there (artifacts.py layout:
        # <run's artifact folder>/../artifact-history/<sha256>).
        fs, root = fsspec.core.url_to_fs(run.info.artifact_uri)
        old = fs.cat_file(f"{root.rstrip('/').rsplit('/', 1)[0]}/artifact-history/{sha['first']}")
        assert old == b"first"

    # -- nesting and resuming --------------------------------------------------------------

    def test_nested_runs_have_parent_run_id(self, client):
        with evtrack.start_run() as parent:
            with evtrack.start_run(nested=True) as child:
                assert evtrack.active_run().info.run_id == child.info.run_id
            assert evtrack.active_run().info.run_id == parent.info.run_id
            with evtrack.start_run(nested=True) as child2:
                pass
            with pytest.raises(InvalidParameterValue, match="already active"):
                evtrack.start_run()
        assert evtrack.active_run() is None
        parent_id = parent.info.run_id
        for run in (child, child2):
            got = client.get_run(run.info.run_id)
            assert got.data.tags["mlflow.parentRunId"] == parent_id
            assert got.info.status == "FINISHED"
            assert evtrack.get_parent_run(run.info.run_id).info.run_id == parent_id
        assert evtrack.get_parent_run(parent_id) is None
        found = client.search_runs(["0"], f"tags.mlflow.parentRunId = '{parent_id}'")
        assert {r.info.run_id for r in found} == {child.info.run_id, child2.info.run_id}

        # parent_run_id= without an active run
        with evtrack.start_run(parent_run_id=parent_id) as late:
            pass
        assert client.get_run(late.info.run_id).data.tags["mlflow.parentRunId"] == parent_id

    def test_resume_by_run_id_and_env_var(self, client, monkeypatch):
        with evtrack.start_run() as run:
            evtrack.log_param("p", "x")
            evtrack.log_metric("m", 1.0, step=0)
        run_id = run.info.run_id
        first = client.get_run(run_id).info
        assert first.status == "FINISHED"

        with evtrack.start_run(run_id=run_id) as resumed:
            assert resumed.info.run_id == run_id
            assert resumed.info.status == "RUNNING"
            assert resumed.data.params == {"p": "x"}
            evtrack.log_metric("m", 2.0, step=1)
            evtrack.log_param("p", "x")
        again = client.get_run(run_id).info
        assert again.status == "FINISHED"
        assert again.start_time == first.start_time
        assert again.end_time >= first.end_time

        monkeypatch.setenv("EVTRACK_RUN_ID", run_id)
        with evtrack.start_run() as from_env:
            assert from_env.info.run_id == run_id
            evtrack.log_metric("m", 3.0, step=2)
        history = client.get_metric_history(run_id, "m")
        assert [(m.step, m.value) for m in history] == [(0, 1.0), (1, 2.0), (2, 3.0)]
        assert len(client.search_runs(["0"])) == 1

    # -- batches and search ----------------------------------------------------------------

    def test_log_batch(self, client):
        run_id = client.create_run("0").info.run_id
        ts = now_ms()
        client.log_batch(
            run_id,
            metrics=[Metric("m", i / 10, ts + i, i) for i in range(900)],
            params=[Param(f"p{i}", str(i)) for i in range(50)],
            tags=[RunTag(f"t{i}", f"v{i}") for i in range(50)],
        )
        run = client.get_run(run_id)
        assert run.data.params == {f"p{i}": str(i) for i in range(50)}
        assert {f"t{i}": f"v{i}" for i in range(50)}.items() <= run.data.tags.items()
        assert run.data.metrics == {"m": 89.9}
        history = client.get_metric_history(run_id, "m")
        assert [m.step for m in history] == list(range(900))
        assert [m.timestamp for m in history] == [ts + i for i in range(900)]
        # Params again with the same values: accepted, not duplicated in the params view.
        client.log_batch(run_id, params=[Param("p0", "0")])
        assert client.sql("select count(*) from params").fetchall() == [(50,)]

    def test_search_runs_basic(self, client):
        exp_id = client.create_experiment("search")
        made = {}
        for name, rmse, alpha in [("r1", 0.5, "0.1"), ("r2", 0.9, "0.5"), ("r3", 0.7, "0.5")]:
            run_id = client.create_run(exp_id, run_name=name).info.run_id
            client.log_metric(run_id, "rmse", rmse)
            client.log_param(run_id, "alpha", alpha)
            made[name] = run_id
        names = {v: k for k, v in made.items()}

        def search(*args, **kwargs):
            return [names[r.info.run_id] for r in client.search_runs([exp_id], *args, **kwargs)]

        assert sorted(search("metrics.rmse < 0.8")) == ["r1", "r3"]
        assert sorted(search("params.alpha = '0.5'")) == ["r2", "r3"]
        assert search("", order_by=["metrics.rmse ASC"]) == ["r1", "r3", "r2"]
        assert search("", order_by=["metrics.rmse DESC"]) == ["r2", "r3", "r1"]

        seen, token = [], None
        while True:
            page = client.search_runs([exp_id], max_results=1, page_token=token)
            assert len(page) <= 1
            seen += [names[r.info.run_id] for r in page]
            token = page.token
            if not token:
                break
        assert sorted(seen) == ["r1", "r2", "r3"]

        rows = evtrack.search_runs([exp_id], "metrics.rmse > 0.6", output_format="list")
        assert sorted(names[r.info.run_id] for r in rows) == ["r2", "r3"]

    # -- SQL and format --------------------------------------------------------------------

    def test_sql_views_have_documented_columns(self, client):
        run_id = client.create_run("0").info.run_id
        client.log_metric(run_id, "m", 1.0)
        client.log_text(run_id, "x", "x.txt")
        for view, columns in DOCUMENTED_VIEWS.items():
            assert client.sql(f"select * from {view}").columns == columns, view
        assert client.sql("select count(*) from runs").fetchall() == [(1,)]

    def test_store_records_format_version_and_refuses_newer(self, client, uri):
        if uri.startswith("http"):
            pytest.skip("the on-disk format is the server's store's: its own backends test it")
        client.search_experiments()
        fs, root = fsspec.core.url_to_fs(uri)
        marker = json.loads(fs.cat_file(f"{root.rstrip('/')}/evtrack.json"))
        assert marker["format_version"] == STORE_FORMAT_VERSION
        assert marker["format"] == "evtrack"

        newer = uri + "-from-the-future"
        fs.makedirs(f"{root.rstrip('/')}-from-the-future", exist_ok=True)
        fs.pipe_file(
            f"{root.rstrip('/')}-from-the-future/evtrack.json",
            json.dumps({"format": "evtrack", "format_version": STORE_FORMAT_VERSION + 1}).encode(),
        )
        try:
            with pytest.raises(StoreVersionError) as info:
                MlflowClient(newer).search_experiments()
            assert isinstance(info.value, StoreError) and isinstance(info.value, EvtrackError)
            assert str(STORE_FORMAT_VERSION + 1) in info.value.message
            assert "Upgrade evtrack" in info.value.message
            evtrack.set_tracking_uri(newer)
            with pytest.raises(StoreVersionError):
                evtrack.start_run()
        finally:
            drop_store(newer)


class TestStoreContract(StoreContract):
    """The contract on every backend in ``conftest.STORE_BACKENDS``."""

    @pytest.fixture
    def uri(self, store_uri: str) -> str:
        return store_uri


GOLDEN = Path(__file__).resolve().parent / "data" / "store-v1"


def test_reads_a_store_written_by_format_1(tmp_path):
    """``tests/data/store-v1`` was written by evtrack 0.1 (store format 1, see
    ``tests/data/make_store_v1.py``); every later version must read it the same way."""
    store = tmp_path / "store-v1"
    shutil.copytree(GOLDEN, store)
    client = MlflowClient(str(store))
    assert client.sql("select count(*), count(distinct writer) from events").fetchall() == [
        (1049, 1)
    ]

    exp = client.get_experiment("1")
    assert (exp.name, exp.tags) == ("golden-renamed", {"team": "qa"})
    assert client.get_experiment_by_name("golden") is None
    assert client.get_experiment_by_name("Default").experiment_id == "0"

    a = client.get_run("a" * 32)
    assert (a.info.run_name, a.info.status) == ("first", "FINISHED")
    assert (a.info.start_time, a.info.end_time) == (1_700_000_000_000, 1_700_000_200_000)
    assert a.data.params == {"alpha": "0.5", "layers": "3"}
    assert a.data.tags["stage"] == "prod" and "temp" not in a.data.tags
    assert a.data.metrics == {"loss": 0.25, "curve": 0.999}
    loss = [m.value for m in client.get_metric_history("a" * 32, "loss")]
    assert [
        same_float(x, y)
        for x, y in zip(loss, [1.0, 0.5, math.nan, math.inf, -math.inf, 0.25], strict=True)
    ] == [True] * 6
    curve = client.get_metric_history_arrow("a" * 32, "curve")
    assert curve.num_rows == 1000 and set(curve["timestamp"].to_pylist()) == {1_700_000_100_000}
    assert client.sql("select path, size, sha256 from artifacts").fetchall() == [
        ("notes/hello.txt", 5, hashlib.sha256(b"hello").hexdigest())
    ]
    history = client.sql(
        "select text from events where kind = 'tag' and key = 'temp' order by time, seq"
    ).fetchall()
    assert history == [("x",), (None,)]

    b = client.get_run("b" * 32)
    assert (b.info.status, b.info.lifecycle_stage) == ("FAILED", "deleted")
    assert [r.info.run_id for r in client.search_runs(["1"])] == ["a" * 32]
    deleted = client.search_runs(["1"], run_view_type=ViewType.DELETED_ONLY)
    assert [r.info.run_id for r in deleted] == ["b" * 32]


@pytest.mark.xfail(
    strict=True,
    reason="missing: a run's default artifact URI is an absolute file:// URL into the "
    "store, so a local store that is copied or moved keeps its events but loses its "
    "artifacts (MLflow's mlruns has the same limitation)",
)
def test_a_moved_local_store_keeps_its_artifacts(tmp_path):
    client = MlflowClient(str(tmp_path / "before"))
    run_id = client.create_run("0").info.run_id
    client.log_text(run_id, "portable", "a.txt")
    client.flush()
    shutil.copytree(tmp_path / "before", tmp_path / "after")
    shutil.rmtree(tmp_path / "before")
    moved = MlflowClient(str(tmp_path / "after"))
    local = moved.download_artifacts(run_id, "a.txt", str(tmp_path / "dl"))
    assert Path(local).read_text() == "portable"
