"""The stock ``mlflow`` client, in its own venv, against a real ``evtrack server`` process.

Each test runs a tutorial-style script with the venv's python and
``MLFLOW_TRACKING_URI=http://127.0.0.1:<port>``; the script prints what MLflow read
back as JSON, and the test checks that evtrack, reading the store directly, sees the
same runs, params, metrics, tags and artifacts.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import textwrap

import pytest

from evtrack.server.testing import ServerProcess
from evtrack.tracking.client import MlflowClient

pytestmark = pytest.mark.mlflow


@pytest.fixture(scope="module")
def mlflow_python():
    import mlflow_venv

    return str(mlflow_venv.require_mlflow_python())


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    store = str(tmp_path_factory.mktemp("compat") / "store")
    srv = ServerProcess(store)
    srv.start()
    yield srv.url, store
    srv.stop()


def run_mlflow(python: str, url: str, script: str, tmp_path, env: dict | None = None) -> dict:
    path = tmp_path / "script.py"
    path.write_text(textwrap.dedent(script))
    proc = subprocess.run(
        [python, str(path)],
        cwd=tmp_path,
        env={
            **os.environ,
            "MLFLOW_TRACKING_URI": url,
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
            "PYTHONWARNINGS": "ignore",
            **(env or {}),
        },
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert lines, proc.stdout[-2000:] + proc.stderr[-3000:]
    return json.loads(lines[-1][len("RESULT ") :])


TUTORIAL = """
import json, os, tempfile
import mlflow
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag

out = {}
exp = mlflow.set_experiment("tutorial")
out["experiment_id"] = exp.experiment_id
with mlflow.start_run(run_name="parent") as parent:
    mlflow.log_param("alpha", 0.5)
    mlflow.log_params({"l1_ratio": 0.1, "solver": "saga"})
    mlflow.set_tag("team", "core")
    for step in range(5):
        mlflow.log_metric("rmse", 1.0 / (step + 1), step=step)
    mlflow.log_metrics({"mae": 0.3, "r2": 0.9}, step=2)
    d = tempfile.mkdtemp()
    with open(os.path.join(d, "notes.txt"), "w") as f:
        f.write("hello")
    mlflow.log_artifact(os.path.join(d, "notes.txt"))
    os.makedirs(os.path.join(d, "dir", "sub"))
    with open(os.path.join(d, "dir", "a.txt"), "w") as f:
        f.write("a")
    with open(os.path.join(d, "dir", "sub", "b.txt"), "w") as f:
        f.write("bb")
    mlflow.log_artifacts(os.path.join(d, "dir"), artifact_path="folder")
    mlflow.log_dict({"k": [1, 2]}, "config.json")
    with mlflow.start_run(run_name="child", nested=True) as child:
        mlflow.log_metric("loss", float("nan"))
        mlflow.log_metric("up", float("inf"))
        mlflow.log_metric("down", float("-inf"))
    c = MlflowClient()
    c.log_batch(
        parent.info.run_id,
        metrics=[Metric("b", i * 0.5, 1000 + i, i) for i in range(10)],
        params=[Param("bp", "x")],
        tags=[RunTag("bt", "y")],
    )
    out["parent"] = parent.info.run_id
    out["child"] = child.info.run_id
c = MlflowClient()
out["history"] = [[m.step, m.value, m.timestamp] for m in c.get_metric_history(out["parent"], "rmse")]
out["search"] = [
    r.info.run_id
    for r in mlflow.search_runs(
        experiment_names=["tutorial"], filter_string="metrics.rmse < 0.5", output_format="list"
    )
]
out["ordered"] = [
    r.info.run_name
    for r in mlflow.search_runs(
        experiment_names=["tutorial"], order_by=["attributes.run_name DESC"], output_format="list"
    )
]
out["df_len"] = len(mlflow.search_runs(experiment_names=["tutorial"]))
dl = mlflow.artifacts.download_artifacts(run_id=out["parent"], artifact_path="folder")
out["downloaded"] = sorted(
    [os.path.relpath(os.path.join(r, f), dl), open(os.path.join(r, f)).read()]  # noqa: SIM115
    for r, _, fs in os.walk(dl) for f in fs
)
out["config"] = mlflow.artifacts.load_dict(f"runs:/{out['parent']}/config.json")
out["list"] = [[f.path, f.is_dir, f.file_size] for f in c.list_artifacts(out["parent"])]
out["list_sub"] = [[f.path, f.is_dir] for f in c.list_artifacts(out["parent"], "folder")]
run = c.get_run(out["parent"])
out["params"] = run.data.params
out["metrics"] = run.data.metrics
out["tags"] = run.data.tags
out["status"] = run.info.status
child = c.get_run(out["child"])
out["child_metrics"] = {k: str(v) for k, v in child.data.metrics.items()}
out["child_parent"] = child.data.tags.get("mlflow.parentRunId")
mlflow.delete_run(out["child"])
out["deleted_stage"] = c.get_run(out["child"]).info.lifecycle_stage
out["active_after_delete"] = [
    r.info.run_id for r in mlflow.search_runs(experiment_names=["tutorial"], output_format="list")
]
print("RESULT " + json.dumps(out))
"""


def test_tutorial_flow_matches_store(mlflow_python, server, tmp_path):
    url, store = server
    out = run_mlflow(mlflow_python, url, TUTORIAL, tmp_path)
    parent, child = out["parent"], out["child"]

    # What the mlflow client read back.
    assert out["params"] == {"alpha": "0.5", "l1_ratio": "0.1", "solver": "saga", "bp": "x"}
    assert out["metrics"] == {"rmse": 0.2, "mae": 0.3, "r2": 0.9, "b": 4.5}
    assert out["tags"]["team"] == "core" and out["tags"]["bt"] == "y"
    assert out["tags"]["mlflow.runName"] == "parent"
    assert out["status"] == "FINISHED"
    assert [h[:2] for h in out["history"]] == [[i, 1.0 / (i + 1)] for i in range(5)]
    assert out["search"] == [parent]
    assert out["ordered"] == ["parent", "child"]
    assert out["df_len"] == 2
    assert out["downloaded"] == [["a.txt", "a"], ["sub/b.txt", "bb"]]
    assert out["config"] == {"k": [1, 2]}
    assert out["list"] == [
        ["config.json", False, len(json.dumps({"k": [1, 2]}, indent=2))],
        ["folder", True, None],
        ["notes.txt", False, 5],
    ]
    assert out["list_sub"] == [["folder/a.txt", False], ["folder/sub", True]]
    assert out["child_metrics"] == {"loss": "nan", "up": "inf", "down": "-inf"}
    assert out["child_parent"] == parent
    assert out["deleted_stage"] == "deleted"
    assert out["active_after_delete"] == [parent]

    # What evtrack reads from the store directly.
    ev = MlflowClient(store)
    run = ev.get_run(parent)
    assert run.info.experiment_id == out["experiment_id"]
    assert run.data.params == out["params"]
    assert run.data.metrics == out["metrics"]
    assert {k: v for k, v in run.data.tags.items()} == out["tags"]
    assert run.info.status == "FINISHED"
    history = ev.get_metric_history(parent, "rmse")
    assert [[m.step, m.value, m.timestamp] for m in history] == out["history"]
    child_run = ev.get_run(child)
    assert child_run.info.lifecycle_stage == "deleted"
    assert math.isnan(child_run.data.metrics["loss"])
    assert child_run.data.metrics["up"] == math.inf
    assert child_run.data.metrics["down"] == -math.inf
    assert [f.path for f in ev.list_artifacts(parent)] == ["config.json", "folder", "notes.txt"]
    with open(ev.download_artifacts(parent, "folder/sub/b.txt")) as f:
        assert f.read() == "bb"
    # Files uploaded through the proxy are recorded as artifact events too.
    rows = ev.sql(
        "select path, size from artifacts where run_id = ? order by path", [parent]
    ).fetchall()
    assert rows == [
        ("config.json", len(json.dumps({"k": [1, 2]}, indent=2))),
        ("folder/a.txt", 1),
        ("folder/sub/b.txt", 2),
        ("notes.txt", 5),
    ]


EXPERIMENTS = """
import json
import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

c = MlflowClient()
out = {}
eid = c.create_experiment("exp-a", tags={"owner": "me"})
c.set_experiment_tag(eid, "stage", "dev")
c.rename_experiment(eid, "exp-b")
e = c.get_experiment_by_name("exp-b")
out["renamed"] = [e.experiment_id == eid, e.name, dict(e.tags)]
c.delete_experiment_tag(eid, "stage") if hasattr(c, "delete_experiment_tag") else None
c.delete_experiment(eid)
out["deleted"] = c.get_experiment(eid).lifecycle_stage
out["search_deleted"] = [
    x.name for x in c.search_experiments(view_type=mlflow.entities.ViewType.DELETED_ONLY)
]
c.restore_experiment(eid)
out["restored"] = c.get_experiment(eid).lifecycle_stage
try:
    c.create_experiment("exp-b")
except MlflowException as exc:
    out["dup"] = [exc.error_code, exc.get_http_status_code()]
try:
    c.get_run("0" * 32)
except MlflowException as exc:
    out["missing_run"] = exc.error_code
try:
    c.get_experiment("123456")
except MlflowException as exc:
    out["missing_exp"] = exc.error_code
out["none_by_name"] = c.get_experiment_by_name("nope") is None
run = c.create_run(eid, run_name="r")
c.log_param(run.info.run_id, "p", "1")
try:
    c.log_param(run.info.run_id, "p", "2")
except MlflowException as exc:
    out["param_change"] = exc.error_code
c.set_tag(run.info.run_id, "gone", "soon")
c.delete_tag(run.info.run_id, "gone")
for i in range(25):
    c.log_metric(run.info.run_id, "m", float(i), timestamp=1000 + i, step=i)
page = c.get_metric_history(run.info.run_id, "m")
out["n_history"] = len(page)
c.set_terminated(run.info.run_id, "KILLED")
r = c.get_run(run.info.run_id)
out["run"] = [r.info.status, r.data.params, sorted(r.data.tags), r.info.end_time is not None]
mlflow.set_experiment(experiment_id=eid)
with mlflow.start_run() as active:
    mlflow.log_metric("x", 1.0)
pages, token = [], None
for i in range(3):
    c.create_run(eid, run_name=f"p{i}")
while True:
    res = c.search_runs([eid], max_results=2, page_token=token, order_by=["attributes.start_time ASC"])
    pages.append(len(res))
    token = res.token
    if not token:
        break
out["pages"] = pages
out["eid"] = eid
out["run_id"] = run.info.run_id
print("RESULT " + json.dumps(out))
"""


def test_experiments_errors_and_paging(mlflow_python, server, tmp_path):
    url, store = server
    out = run_mlflow(mlflow_python, url, EXPERIMENTS, tmp_path)
    assert out["renamed"] == [True, "exp-b", {"owner": "me", "stage": "dev"}]
    assert out["deleted"] == "deleted"
    assert "exp-b" in out["search_deleted"]
    assert out["restored"] == "active"
    assert out["dup"] == ["RESOURCE_ALREADY_EXISTS", 400]
    assert out["missing_run"] == "RESOURCE_DOES_NOT_EXIST"
    assert out["missing_exp"] == "RESOURCE_DOES_NOT_EXIST"
    assert out["none_by_name"] is True
    assert out["param_change"] == "INVALID_PARAMETER_VALUE"
    assert out["n_history"] == 25
    assert out["run"][0] == "KILLED"
    assert out["run"][1] == {"p": "1"}
    assert "gone" not in out["run"][2]
    assert out["pages"] == [2, 2, 1]

    ev = MlflowClient(store)
    exp = ev.get_experiment(out["eid"])
    assert exp.name == "exp-b" and exp.lifecycle_stage == "active"
    assert exp.tags == {"owner": "me"}
    run = ev.get_run(out["run_id"])
    assert run.info.status == "KILLED" and run.data.params == {"p": "1"}
    assert "gone" not in run.data.tags
    assert len(ev.get_metric_history(out["run_id"], "m")) == 25


SKLEARN = """
import json
import mlflow, numpy as np
from sklearn.linear_model import LinearRegression
from mlflow.exceptions import MlflowException

X = np.arange(20).reshape(-1, 1).astype(float)
model = LinearRegression().fit(X, 2 * X[:, 0] + 1)
mlflow.set_experiment("models")
out = {}
with mlflow.start_run() as run:
    try:
        mlflow.sklearn.log_model(model, name="model")
        out["logged"] = True
    except MlflowException as exc:
        out["logged"] = False
        out["error"] = [exc.error_code, str(exc)[:200]]
print("RESULT " + json.dumps(out))
"""


def test_sklearn_log_model_works(mlflow_python, server, tmp_path):
    """MLflow 3's log_model goes through the logged-models API (evtrack/server/models_api.py;
    the full loop is tests/test_models_server_mlflow.py)."""
    url, _ = server
    out = run_mlflow(mlflow_python, url, SKLEARN, tmp_path)
    assert out == {"logged": True}
