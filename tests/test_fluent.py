"""The fluent API: ``import evtrack as mlflow`` behaves like ``mlflow``'s module functions.

Cases follow MLflow's own ``tests/tracking/fluent/test_fluent.py`` where MLflow has the
feature. The store is the per-test folder set by ``conftest.evtrack_isolation``; the
store contract covers the backends.
"""

from __future__ import annotations

import math
import os
import re

import numpy as np
import pytest

import evtrack
import evtrack as mlflow
from evtrack import MlflowClient
from evtrack.errors import InvalidParameterValue, MlflowException, RunNotFound


def test_tracking_uri_default_env_and_explicit(evtrack_isolation, tmp_path):
    assert mlflow.get_tracking_uri() == "file://" + str(evtrack_isolation)
    assert mlflow.is_tracking_uri_set()  # the fixture sets EVTRACK_TRACKING_URI
    mlflow.set_tracking_uri(str(tmp_path / "other"))
    assert mlflow.get_tracking_uri() == str(tmp_path / "other")
    with mlflow.start_run() as run:
        pass
    assert run.info.artifact_uri.startswith("file://" + str(tmp_path / "other"))
    assert (tmp_path / "other" / "evtrack.json").exists()
    assert not (evtrack_isolation / "evtrack.json").exists()


def test_tracking_uri_relative_folder_becomes_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EVTRACK_TRACKING_URI", "rel-store")
    assert mlflow.get_tracking_uri() == "file://" + str(tmp_path / "rel-store")


def test_start_run_context_manager_finishes():
    with mlflow.start_run() as run:
        assert mlflow.active_run().info.run_id == run.info.run_id
        assert run.info.status == "RUNNING"
        mlflow.log_param("p", 1)
    assert mlflow.active_run() is None
    got = mlflow.get_run(run.info.run_id)
    assert got.info.status == "FINISHED"
    assert got.info.end_time >= got.info.start_time
    assert mlflow.last_active_run().info.run_id == run.info.run_id


@pytest.mark.parametrize(
    ("error", "status"), [(ValueError, "FAILED"), (KeyboardInterrupt, "KILLED")]
)
def test_start_run_context_manager_records_failure(error, status):
    with pytest.raises(error):
        with mlflow.start_run() as run:
            raise error("boom")
    assert mlflow.active_run() is None
    assert mlflow.get_run(run.info.run_id).info.status == status


def test_end_run_with_status_and_without_active_run():
    mlflow.end_run()  # nothing active: a no-op, as in MLflow
    run = mlflow.start_run()
    mlflow.end_run("KILLED")
    assert mlflow.get_run(run.info.run_id).info.status == "KILLED"
    assert mlflow.active_run() is None
    assert mlflow.last_active_run().info.run_id == run.info.run_id


def test_last_active_run_is_none_before_any_run():
    assert mlflow.active_run() is None
    assert mlflow.last_active_run() is None


def test_generated_run_names_and_explicit_run_name():
    with mlflow.start_run() as a:
        pass
    with mlflow.start_run() as b:
        pass
    for run in (a, b):
        name = mlflow.get_run(run.info.run_id).info.run_name
        assert re.fullmatch(r"[a-z]+-[a-z]+-\d{1,3}", name), name
        assert mlflow.get_run(run.info.run_id).data.tags["mlflow.runName"] == name
    with mlflow.start_run(run_name="my name") as named:
        pass
    got = mlflow.get_run(named.info.run_id)
    assert got.info.run_name == "my name"
    assert got.data.tags["mlflow.runName"] == "my name"


def test_system_tags(monkeypatch, tmp_path):
    repo = tmp_path / "repo"
    (repo / ".git" / "refs" / "heads").mkdir(parents=True)
    (repo / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / ".git" / "refs" / "heads" / "main").write_text(commit + "\n")
    script = repo / "sub" / "train.py"
    script.parent.mkdir()
    script.write_text("")
    monkeypatch.setattr("sys.argv", [str(script)])
    monkeypatch.setenv("EVTRACK_USER", "alice")
    with mlflow.start_run(tags={"team": "x", "num_layers": 7}, description="notes") as run:
        pass
    tags = mlflow.get_run(run.info.run_id).data.tags
    assert tags["mlflow.user"] == "alice"
    assert tags["mlflow.source.name"] == str(script)
    assert tags["mlflow.source.type"] == "LOCAL"
    assert tags["mlflow.source.git.commit"] == commit
    assert tags["team"] == "x" and tags["num_layers"] == "7"
    assert tags["mlflow.note.content"] == "notes"
    assert mlflow.get_run(run.info.run_id).info.user_id == "alice"


def test_no_git_commit_tag_outside_a_repo(monkeypatch, tmp_path):
    script = tmp_path / "plain" / "train.py"
    script.parent.mkdir()
    script.write_text("")
    monkeypatch.setattr("sys.argv", [str(script)])
    with mlflow.start_run() as run:
        pass
    assert "mlflow.source.git.commit" not in mlflow.get_run(run.info.run_id).data.tags


def test_user_tags_override_system_tags():
    with mlflow.start_run(tags={"mlflow.user": "override"}) as run:
        pass
    assert mlflow.get_run(run.info.run_id).data.tags["mlflow.user"] == "override"


def test_logging_without_active_run_starts_one():
    mlflow.log_metric("m", 1.0)
    run = mlflow.active_run()
    assert run is not None
    mlflow.log_param("p", "v")
    mlflow.set_tag("t", "x")
    mlflow.end_run()
    got = mlflow.get_run(run.info.run_id)
    assert got.data.metrics == {"m": 1.0}
    assert got.data.params == {"p": "v"}
    assert got.data.tags["t"] == "x"
    assert got.info.status == "FINISHED"


def test_start_run_while_active_requires_nested():
    with mlflow.start_run() as run:
        with pytest.raises(MlflowException, match=f"Run with UUID {run.info.run_id} is already"):
            mlflow.start_run()
    assert mlflow.active_run() is None


def test_parent_run_id_must_match_active_run():
    with mlflow.start_run() as other:
        pass
    with mlflow.start_run():
        with pytest.raises(InvalidParameterValue, match="does not match"):
            mlflow.start_run(nested=True, parent_run_id=other.info.run_id)


def test_resume_sets_running_and_user_tags():
    with mlflow.start_run() as run:
        pass
    resumed = mlflow.start_run(run.info.run_id, tags={"A": "B", "C": "D"})
    assert resumed.info.status == "RUNNING"
    assert {"A": "B", "C": "D"}.items() <= resumed.data.tags.items()
    mlflow.end_run()


def test_resume_refuses_deleted_run_and_other_experiment():
    with mlflow.start_run() as run:
        pass
    exp_id = mlflow.create_experiment("elsewhere")
    with pytest.raises(InvalidParameterValue, match="does not match"):
        mlflow.start_run(run.info.run_id, experiment_id=exp_id)
    mlflow.delete_run(run.info.run_id)
    with pytest.raises(InvalidParameterValue, match="deleted state"):
        mlflow.start_run(run.info.run_id)
    assert mlflow.active_run() is None


def test_resume_unknown_run_id_from_env(monkeypatch):
    monkeypatch.setenv("EVTRACK_RUN_ID", "f" * 32)
    with pytest.raises(RunNotFound):
        mlflow.start_run()


def test_set_experiment_creates_by_name_and_routes_runs():
    exp = mlflow.set_experiment("wine")
    assert exp.name == "wine" and exp.experiment_id != "0"
    assert mlflow.set_experiment("wine").experiment_id == exp.experiment_id
    assert mlflow.set_experiment(experiment_id=exp.experiment_id).name == "wine"
    with mlflow.start_run() as run:
        pass
    assert run.info.experiment_id == exp.experiment_id
    with mlflow.start_run(experiment_id="0") as in_default:
        pass
    assert in_default.info.experiment_id == "0"
    with pytest.raises(InvalidParameterValue, match="exactly one"):
        mlflow.set_experiment()
    with pytest.raises(InvalidParameterValue, match="exactly one"):
        mlflow.set_experiment("a", "1")


def test_set_experiment_refuses_deleted_experiment():
    exp_id = mlflow.create_experiment("gone")
    mlflow.delete_experiment(exp_id)
    with pytest.raises(InvalidParameterValue, match="deleted experiment"):
        mlflow.set_experiment("gone")


@pytest.mark.parametrize("variable", ["EVTRACK_EXPERIMENT_NAME", "EVTRACK_EXPERIMENT_ID"])
def test_experiment_from_environment(monkeypatch, variable):
    exp_id = mlflow.create_experiment("from-env")
    monkeypatch.setenv(variable, "from-env" if variable.endswith("NAME") else exp_id)
    with mlflow.start_run() as run:
        pass
    assert run.info.experiment_id == exp_id


def test_experiment_name_from_environment_is_created(monkeypatch):
    monkeypatch.setenv("EVTRACK_EXPERIMENT_NAME", "brand-new")
    with mlflow.start_run() as run:
        pass
    assert mlflow.get_experiment(run.info.experiment_id).name == "brand-new"


def test_experiment_functions():
    exp_id = mlflow.create_experiment("funcs", tags={"a": "1"})
    assert mlflow.get_experiment(exp_id).tags == {"a": "1"}
    assert mlflow.get_experiment_by_name("funcs").experiment_id == exp_id
    mlflow.set_experiment("funcs")
    mlflow.set_experiment_tag("b", "2")
    mlflow.set_experiment_tags({"c": 3})
    assert mlflow.get_experiment(exp_id).tags == {"a": "1", "b": "2", "c": "3"}
    names = [e.name for e in mlflow.search_experiments()]
    assert "funcs" in names and "Default" in names
    assert [e.name for e in mlflow.search_experiments(filter_string="name = 'funcs'")] == ["funcs"]
    assert len(mlflow.search_experiments(max_results=1)) == 1
    mlflow.delete_experiment(exp_id)
    assert "funcs" not in [e.name for e in mlflow.search_experiments()]
    assert "funcs" in [e.name for e in mlflow.search_experiments(view_type=evtrack.ViewType.ALL)]


def test_log_params_metrics_tags():
    with mlflow.start_run() as run:
        mlflow.log_params({"a": 1, "b": "two", "c": 0.5})
        mlflow.log_metrics({"x": 1.0, "y": 2}, step=3)
        mlflow.log_metrics({"x": 5.0}, step=4, timestamp=1234)
        mlflow.log_metric("z", np.float32(0.25), step=np.int64(7))
        mlflow.set_tags({"t1": "v1", "t2": 2})
        mlflow.set_tag("t3", "v3")
        mlflow.delete_tag("t3")
    got = mlflow.get_run(run.info.run_id)
    assert got.data.params == {"a": "1", "b": "two", "c": "0.5"}
    assert got.data.metrics == {"x": 5.0, "y": 2.0, "z": 0.25}
    assert {"t1": "v1", "t2": "2"}.items() <= got.data.tags.items()
    assert "t3" not in got.data.tags
    history = MlflowClient().get_metric_history(run.info.run_id, "x")
    assert [(m.step, m.value) for m in history] == [(3, 1.0), (4, 5.0)]
    assert history[1].timestamp == 1234
    (z,) = MlflowClient().get_metric_history(run.info.run_id, "z")
    assert z.step == 7 and type(z.step) is int


def test_log_param_returns_value_and_refuses_change():
    with mlflow.start_run():
        assert mlflow.log_param("depth", 3) == 3
        mlflow.log_param("depth", 3)
        with pytest.raises(MlflowException, match="Changing param values is not allowed"):
            mlflow.log_param("depth", 5)
        with pytest.raises(MlflowException, match="Changing param values is not allowed"):
            mlflow.log_params({"depth": 4})


def test_metric_default_step_and_timestamp():
    import time

    before = int(time.time() * 1000)
    with mlflow.start_run() as run:
        mlflow.log_metric("m", 1.0)
    (point,) = MlflowClient().get_metric_history(run.info.run_id, "m")
    assert point.step == 0
    assert before <= point.timestamp <= int(time.time() * 1000)


def test_log_metric_with_run_id_targets_that_run():
    with mlflow.start_run() as first:
        pass
    with mlflow.start_run() as second:
        mlflow.log_metric("m", 1.0, run_id=first.info.run_id)
        mlflow.log_metrics({"n": 2.0}, run_id=first.info.run_id)
        mlflow.log_params({"p": 1}, run_id=first.info.run_id)
    assert mlflow.get_run(first.info.run_id).data.metrics == {"m": 1.0, "n": 2.0}
    assert mlflow.get_run(first.info.run_id).data.params == {"p": "1"}
    assert mlflow.get_run(second.info.run_id).data.metrics == {}


def test_nan_and_inf_survive_the_fluent_path():
    with mlflow.start_run() as run:
        mlflow.log_metric("nan", math.nan)
        mlflow.log_metric("inf", math.inf)
        mlflow.log_metric("ninf", -math.inf)
    metrics = mlflow.get_run(run.info.run_id).data.metrics
    assert math.isnan(metrics["nan"])
    assert metrics["inf"] == math.inf and metrics["ninf"] == -math.inf


def test_log_metric_series_from_numpy():
    values = np.linspace(0, 1, 10_000)
    with mlflow.start_run() as run:
        mlflow.log_metric_series("curve", values)
        mlflow.log_metric_series("sparse", [1.0, 2.0, 3.0], steps=[10, 20, 30], timestamps=5)
    client = MlflowClient()
    table = client.get_metric_history_arrow(run.info.run_id, "curve")
    assert table.num_rows == 10_000
    assert table["step"].to_pylist() == list(range(10_000))
    assert np.array_equal(table["value"].to_numpy(), values)
    sparse = client.get_metric_history(run.info.run_id, "sparse")
    assert [(m.step, m.value, m.timestamp) for m in sparse] == [
        (10, 1.0, 5),
        (20, 2.0, 5),
        (30, 3.0, 5),
    ]
    assert mlflow.get_run(run.info.run_id).data.metrics == {"curve": 1.0, "sparse": 3.0}


def test_get_artifact_uri():
    with mlflow.start_run() as run:
        uri = mlflow.get_artifact_uri()
        assert uri == run.info.artifact_uri
        assert mlflow.get_artifact_uri("model/MLmodel") == uri + "/model/MLmodel"
        with pytest.raises(InvalidParameterValue):
            mlflow.get_artifact_uri("../escape")


def test_search_runs_pandas_and_list():
    import pandas as pd

    exp = mlflow.set_experiment("searchable")
    for i in range(3):
        with mlflow.start_run(run_name=f"r{i}"):
            mlflow.log_metric("m", float(i))
            mlflow.log_param("i", i)
            mlflow.set_tag("t", "x")
    df = mlflow.search_runs()
    assert isinstance(df, pd.DataFrame)
    assert len(df) == 3
    for column in ("run_id", "experiment_id", "status", "start_time", "metrics.m", "params.i"):
        assert column in df.columns
    assert set(df["experiment_id"]) == {exp.experiment_id}
    assert str(df["start_time"].dtype).startswith("datetime64")
    ordered = mlflow.search_runs(order_by=["metrics.m DESC"])
    assert list(ordered["metrics.m"]) == [2.0, 1.0, 0.0]
    runs = mlflow.search_runs(filter_string="params.i = '1'", output_format="list")
    assert [r.data.params["i"] for r in runs] == ["1"]
    by_name = mlflow.search_runs(experiment_names=["searchable"], output_format="list")
    assert len(by_name) == 3
    assert len(mlflow.search_runs(max_results=2, output_format="list")) == 2
    everywhere = mlflow.search_runs(search_all_experiments=True, output_format="list")
    assert len(everywhere) == 3
    with pytest.raises(InvalidParameterValue, match="output format"):
        mlflow.search_runs(output_format="xml")


def test_delete_run_hides_it_from_search():
    with mlflow.start_run() as run:
        pass
    mlflow.delete_run(run.info.run_id)
    assert mlflow.search_runs(output_format="list") == []
    deleted = mlflow.search_runs(output_format="list", run_view_type=evtrack.ViewType.DELETED_ONLY)
    assert [r.info.run_id for r in deleted] == [run.info.run_id]


def test_mlflow_style_module_paths():
    import evtrack.exceptions
    import evtrack.tracking

    assert evtrack.tracking.MlflowClient is MlflowClient
    assert evtrack.exceptions.MlflowException is MlflowException
    assert mlflow.entities.Run is evtrack.entities.Run


def test_flush_is_safe_anytime(evtrack_isolation):
    mlflow.flush()
    with mlflow.start_run() as run:
        mlflow.log_metric("m", 1.0)
        mlflow.flush()
        # visible to a reader that never saw this process's writer
        events = sorted(os.listdir(evtrack_isolation / "experiments" / "0" / "events"))
        assert any(name.startswith(run.info.run_id) for name in events)
