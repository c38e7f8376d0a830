"""The stock `mlflow` 3.17.2 client logs, registers and loads models through `evtrack server`."""

from __future__ import annotations

import numpy as np
import pytest
import test_mlflow_client_compat
from models_helpers import WINE_CSV, wine_data
from test_models_mlflow_interop import run_mlflow

import evtrack
from evtrack.server.testing import ServerProcess

pytestmark = pytest.mark.mlflow
mlflow_python = test_mlflow_client_compat.mlflow_python  # the venv fixture, shared


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    store = str(tmp_path_factory.mktemp("models-server") / "store")
    srv = ServerProcess(store)
    srv.start()
    yield srv.url, store
    srv.stop()


SCRIPT = """
import json, mlflow, pandas as pd
from mlflow import MlflowClient
from sklearn.linear_model import ElasticNet
data = pd.read_csv({csv!r})
x, y = data.drop(columns=["quality"]), data["quality"]
lr = ElasticNet(alpha=0.5, l1_ratio=0.5, random_state=42).fit(x, y)
mlflow.set_experiment("wine-models")
with mlflow.start_run() as run:
    info = mlflow.sklearn.log_model(lr, name="model", input_example=x.head(3))
    mlflow.log_metric("rmse", 0.7, step=1, model_id=info.model_id)
    MlflowClient().log_batch(run.info.run_id, metrics=[
        mlflow.entities.Metric("mae", 0.3, 5, 2, model_id=info.model_id,
        dataset_name="wine", dataset_digest="d1")])
want = lr.predict(x.head(20)).tolist()
out = {{"model_uri": info.model_uri, "model_id": info.model_id, "run_id": run.info.run_id,
       "want": want}}
out["by_model_id"] = mlflow.pyfunc.load_model(info.model_uri).predict(x.head(20)).tolist()
out["by_runs_uri"] = mlflow.pyfunc.load_model(f"runs:/{{run.info.run_id}}/model").predict(x.head(20)).tolist()
mv = mlflow.register_model(info.model_uri, "wine")
client = MlflowClient()
client.set_registered_model_alias("wine", "champion", mv.version)
client.set_model_version_tag("wine", mv.version, "validated", "yes")
out["version"] = mv.version
out["by_version"] = mlflow.pyfunc.load_model("models:/wine/1").predict(x.head(20)).tolist()
out["by_alias"] = mlflow.pyfunc.load_model("models:/wine@champion").predict(x.head(20)).tolist()
rm = client.get_registered_model("wine")
out["aliases"] = rm.aliases
out["searched"] = [m.name for m in client.search_registered_models("name LIKE 'wi%'")]
out["versions"] = [v.version for v in client.search_model_versions("name = 'wine'")]
logged = client.get_logged_model(info.model_id)
out["status"] = str(logged.status)
client.create_registered_model("zeta")
p1 = client.search_registered_models(max_results=1, order_by=["name DESC"])
p2 = client.search_registered_models(max_results=1, order_by=["name DESC"], page_token=p1.token)
out["pages"] = [[m.name for m in p1], [m.name for m in p2], p2.token or None]
found = client.search_logged_models(
    experiment_ids=[run.info.experiment_id], max_results=1,
    order_by=[{{"field_name": "metrics.rmse", "ascending": False}}])
out["logged_search"] = [[m.model_id for m in found], found.token or None]
out["model_metrics"] = sorted([m.key, m.value, m.step, m.run_id, m.dataset_name]
                              for m in logged.metrics)
try:
    client.get_registered_model("nope")
except mlflow.exceptions.MlflowException as exc:
    out["missing"] = exc.error_code
print("RESULT " + json.dumps(out))
"""


@pytest.fixture(scope="module")
def logged(mlflow_python, server, tmp_path_factory):
    """What SCRIPT printed: the stock client logged, registered and loaded a model."""
    url, _ = server
    tmp = tmp_path_factory.mktemp("log-model")
    return run_mlflow(mlflow_python, SCRIPT.format(csv=str(WINE_CSV)), tmp, MLFLOW_TRACKING_URI=url)


def test_stock_client_logs_registers_and_loads(logged, server):
    _, store = server
    out = logged
    want = out["want"]
    for key in ("by_model_id", "by_runs_uri", "by_version", "by_alias"):
        assert np.allclose(out[key], want), key
    assert out["model_uri"] == f"models:/{out['model_id']}"
    assert out["version"] == "1" and out["aliases"] == {"champion": "1"}
    assert out["searched"] == ["wine"] and out["versions"] == ["1"]
    assert out["status"].endswith("READY")
    assert out["missing"] == "RESOURCE_DOES_NOT_EXIST"
    assert out["pages"] == [["zeta"], ["wine"], None]
    assert out["logged_search"] == [[out["model_id"]], None]
    # MLflow 3's metrics linked to a logged model come back on it
    assert out["model_metrics"] == [
        ["mae", 0.3, 2, out["run_id"], "wine"],
        ["rmse", 0.7, 1, out["run_id"], None],
    ]

    # evtrack reads what the stock client wrote: SQL views, and the models load here too
    client = evtrack.MlflowClient(store)
    rows = client.sql("select model_id, status, source_run_id from logged_models").fetchall()
    assert rows == [(out["model_id"], "READY", out["run_id"])]
    assert client.sql("select key from logged_model_metrics order by key").fetchall() == [
        ("mae",),
        ("rmse",),
    ]
    assert client.sql("select name, version, model_id from model_versions").fetchall() == [
        ("wine", 1, out["model_id"])
    ]
    assert client.get_model_version("wine", 1).tags == {"validated": "yes"}
    evtrack.set_tracking_uri(store)
    x, _ = wine_data()
    for uri in ("models:/wine@champion", out["model_uri"]):
        assert np.allclose(evtrack.pyfunc.load_model(uri).predict(x.head(20)), want), uri


LOAD_ONLY = """
import json, mlflow, pandas as pd
x = pd.read_csv({csv!r}).drop(columns=["quality"]).head(20)
out = {{}}
for uri in {uris!r}:
    out[uri] = mlflow.pyfunc.load_model(uri).predict(x).tolist()
try:
    mlflow.set_experiment("a-write")
except mlflow.exceptions.MlflowException as exc:
    out["write"] = exc.error_code
print("RESULT " + json.dumps(out))
"""


@pytest.mark.parametrize("mode", ["--read-only", "read-role"])
def test_stock_client_loads_models_without_write_access(
    mlflow_python, logged, server, tmp_path, mode
):
    """Loading a runs:/ URI makes the stock client POST logged-models/search: a read, so a
    --read-only server and a user with the read role load every kind of model URI."""
    _, store = server
    uris = [logged["model_uri"], f"runs:/{logged['run_id']}/model", "models:/wine@champion"]
    env: dict[str, str] = {}
    if mode == "--read-only":
        args = ["--read-only"]
    else:
        users = tmp_path / "users"
        users.write_text("rob:read:reader-pw\n")
        args = ["--users-file", str(users), "--auth-reads"]
        env = {"MLFLOW_TRACKING_USERNAME": "rob", "MLFLOW_TRACKING_PASSWORD": "reader-pw"}
    with ServerProcess(store, args) as url:
        script = LOAD_ONLY.format(csv=str(WINE_CSV), uris=uris)
        out = run_mlflow(mlflow_python, script, tmp_path, MLFLOW_TRACKING_URI=url, **env)
    for uri in uris:
        assert np.allclose(out[uri], logged["want"]), uri
    assert out["write"] == "PERMISSION_DENIED"
