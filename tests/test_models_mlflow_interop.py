"""Models move both ways between evtrack and the real `mlflow` 3.17.2 (in its venv)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import test_mlflow_client_compat
from models_helpers import CURL_BODY, ServedModel, save_wine_model, wine_data, wine_model

import evtrack

pytestmark = pytest.mark.mlflow
mlflow_python = test_mlflow_client_compat.mlflow_python  # the venv fixture, shared


def run_mlflow(python: str, script: str, tmp_path, **env: str) -> dict:
    """test_mlflow_client_compat's runner; these scripts need no tracking server."""
    url = env.pop("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/unused.db")
    # MLflow 3.17 refuses to deserialize any sklearn model (skops included) without it
    env = {"MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "true", **env}
    return test_mlflow_client_compat.run_mlflow(python, url, script, tmp_path, env)


LOAD = """
import json, mlflow, pandas as pd
x = pd.read_csv({csv!r}).drop(columns=["quality"]).head(20)
m = mlflow.pyfunc.load_model({path!r})
sk = mlflow.sklearn.load_model({path!r})
print("RESULT " + json.dumps({{"pyfunc": m.predict(x).tolist(), "sklearn": sk.predict(x).tolist(),
                              "inputs": m.metadata.get_input_schema().input_names()}}))
"""


@pytest.mark.parametrize("fmt", ["skops", "cloudpickle"])
def test_evtrack_model_loads_in_mlflow(mlflow_python, tmp_path, fmt):
    from models_helpers import WINE_CSV

    path = save_wine_model(tmp_path / "m", serialization_format=fmt)
    out = run_mlflow(mlflow_python, LOAD.format(csv=str(WINE_CSV), path=str(path)), tmp_path)
    x, _ = wine_data()
    want = wine_model().predict(x.head(20))
    assert np.allclose(out["pyfunc"], want) and np.allclose(out["sklearn"], want)
    assert out["inputs"] == list(x.columns)


SAVE = """
import json, mlflow, pandas as pd
from sklearn.linear_model import ElasticNet
data = pd.read_csv({csv!r})
x, y = data.drop(columns=["quality"]), data["quality"]
m = ElasticNet(alpha=0.5, l1_ratio=0.5, random_state=42).fit(x, y)
mlflow.sklearn.save_model(m, {path!r}, input_example=x.head(3), serialization_format={fmt!r})
print("RESULT " + json.dumps({{"pred": m.predict(x.head(20)).tolist()}}))
"""


@pytest.mark.parametrize("fmt", ["skops", "cloudpickle"])
def test_mlflow_model_loads_and_serves_in_evtrack(mlflow_python, tmp_path, fmt, monkeypatch):
    from models_helpers import WINE_CSV

    from evtrack.models import serialization

    monkeypatch.setattr(serialization, "_warned", True)  # the pickle warning is tested elsewhere
    path = tmp_path / "mlflow-model"
    out = run_mlflow(
        mlflow_python, SAVE.format(csv=str(WINE_CSV), path=str(path), fmt=fmt), tmp_path
    )
    x, _ = wine_data()
    model = evtrack.pyfunc.load_model(str(path))
    assert np.allclose(model.predict(x.head(20)), out["pred"])
    assert np.allclose(evtrack.sklearn.load_model(str(path)).predict(x.head(20)), out["pred"])
    srv = ServedModel(str(path)).start()
    try:
        status, body = srv.invoke(CURL_BODY, "application/json; format=pandas-split")
        assert status == 200
        import pandas as pd

        row = pd.DataFrame(json.loads(CURL_BODY)["data"], columns=json.loads(CURL_BODY)["columns"])
        assert body["predictions"] == [pytest.approx(model.predict(row)[0])]
    finally:
        srv.stop()
