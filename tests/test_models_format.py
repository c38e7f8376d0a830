"""The MLmodel format: save/log/load for sklearn and custom pyfunc models, signatures,
input examples, environment files, serialization formats and model URIs."""

from __future__ import annotations

import json
import os
import warnings

import numpy as np
import pandas as pd
import pytest
import yaml
from models_helpers import WINE_COLUMNS, save_wine_model, wine_data, wine_model

import evtrack
from evtrack.errors import InvalidParameterValue, ResourceAlreadyExists, ResourceDoesNotExist
from evtrack.models import Model, infer_signature, serialization


def test_sklearn_folder_is_mlflow_layout(tmp_path):
    path = save_wine_model(tmp_path / "m")
    assert sorted(os.listdir(path)) == [
        "MLmodel",
        "conda.yaml",
        "input_example.json",
        "model.skops",
        "python_env.yaml",
        "requirements.txt",
        "serving_input_example.json",
    ]
    meta = yaml.safe_load((path / "MLmodel").read_text())
    assert meta["flavors"]["python_function"]["loader_module"] == "mlflow.sklearn"
    assert meta["flavors"]["sklearn"]["serialization_format"] == "skops"
    assert len(meta["model_uuid"]) == 32 and meta["utc_time_created"]
    inputs = json.loads(meta["signature"]["inputs"])
    assert [c["name"] for c in inputs] == WINE_COLUMNS
    assert {c["type"] for c in inputs} == {"double"}
    assert json.loads(meta["signature"]["outputs"]) == [{"type": "double", "required": True}]
    assert meta["saved_input_example_info"]["type"] == "dataframe"
    example = json.loads((path / "input_example.json").read_text())
    assert example["columns"] == WINE_COLUMNS and len(example["data"]) == 3
    serving = json.loads((path / "serving_input_example.json").read_text())
    assert serving["dataframe_split"] == example
    reqs = (path / "requirements.txt").read_text().split("\n")
    assert any(r.startswith("scikit-learn==") for r in reqs)
    assert any(r.startswith("skops==") for r in reqs)
    env = yaml.safe_load((path / "python_env.yaml").read_text())
    assert env["dependencies"] == ["-r requirements.txt"] and env["python"]
    conda = yaml.safe_load((path / "conda.yaml").read_text())
    assert {"pip": reqs} in conda["dependencies"]


def test_sklearn_round_trip_predicts_the_same(tmp_path):
    path = save_wine_model(tmp_path / "m")
    x, _ = wine_data()
    want = wine_model().predict(x.head(50))
    assert np.allclose(evtrack.sklearn.load_model(str(path)).predict(x.head(50)), want)
    pyfunc = evtrack.pyfunc.load_model(str(path))
    assert np.allclose(pyfunc.predict(x.head(50)), want)
    assert pyfunc.metadata.get_input_schema().input_names() == WINE_COLUMNS


def test_saving_into_a_non_empty_folder_is_refused(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "keep.txt").write_text("x")
    with pytest.raises(ResourceAlreadyExists, match="not empty"):
        evtrack.sklearn.save_model(wine_model(), str(tmp_path / "m"))


@pytest.mark.parametrize("fmt", ["pickle", "cloudpickle"])
def test_pickle_formats_on_request_warn_once_on_load(tmp_path, fmt, monkeypatch):
    monkeypatch.setattr(serialization, "_warned", False)
    evtrack.sklearn.save_model(wine_model(), str(tmp_path / "a"), serialization_format=fmt)
    evtrack.sklearn.save_model(wine_model(), str(tmp_path / "b"), serialization_format=fmt)
    meta = Model.load(str(tmp_path / "a"))
    assert meta.flavors["sklearn"]["serialization_format"] == fmt
    assert meta.flavors["sklearn"]["pickled_model"] == "model.pkl"
    with pytest.warns(serialization.UnsafeModelFormatWarning, match="runs any code"):
        evtrack.sklearn.load_model(str(tmp_path / "a"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        evtrack.sklearn.load_model(str(tmp_path / "b"))  # once per process


def test_unknown_serialization_format(tmp_path):
    with pytest.raises(InvalidParameterValue, match="skops"):
        evtrack.sklearn.save_model(wine_model(), str(tmp_path / "m"), serialization_format="joblib")


def test_skops_refuses_untrusted_types(tmp_path):
    """A skops file naming a type outside scikit-learn/numpy/scipy is refused unless the
    saver listed it: the safe format stays safe."""
    import skops.io
    from sklearn.preprocessing import FunctionTransformer

    model = FunctionTransformer(func=json.dumps)
    path = tmp_path / "m.skops"
    skops.io.dump(model, path)
    with pytest.raises(InvalidParameterValue, match="json.dumps"):
        serialization.load(str(path), "skops")
    loaded = serialization.load(str(path), "skops", trusted_types=["json.dumps"])
    assert loaded.func is json.dumps


def test_model_skops_cannot_hold_falls_back_to_cloudpickle(tmp_path):
    from sklearn.preprocessing import FunctionTransformer

    model = FunctionTransformer(func=lambda x: x * 2)
    evtrack.sklearn.save_model(model, str(tmp_path / "m"))
    assert (
        Model.load(str(tmp_path / "m")).flavors["sklearn"]["serialization_format"] == "cloudpickle"
    )


class AddN(evtrack.pyfunc.PythonModel):
    def load_context(self, context):
        with open(context.artifacts["n"]) as f:
            self.n = float(f.read())

    def predict(self, context, model_input, params=None):
        scale = (params or {}).get("scale", 1.0)
        return (model_input["x"] + self.n) * scale


def test_custom_pyfunc_with_artifacts_code_and_params(tmp_path, monkeypatch):
    (tmp_path / "n.txt").write_text("10")
    code = tmp_path / "mycode"
    code.mkdir()
    (code / "helper_mod_for_evtrack_test.py").write_text("FACTOR = 3\n")
    example = pd.DataFrame({"x": [1.0, 2.0]})
    signature = infer_signature(example, example["x"], params={"scale": 1.0})
    evtrack.pyfunc.save_model(
        str(tmp_path / "m"),
        python_model=AddN(),
        artifacts={"n": str(tmp_path / "n.txt")},
        code_paths=[str(code)],
        input_example=example,
        signature=signature,
    )
    meta = yaml.safe_load((tmp_path / "m" / "MLmodel").read_text())
    conf = meta["flavors"]["python_function"]
    assert conf["loader_module"] == "mlflow.pyfunc.model"
    assert conf["artifacts"]["n"]["path"] == "artifacts/n.txt"
    assert conf["code"] == "code"
    assert (tmp_path / "m" / "code" / "mycode" / "helper_mod_for_evtrack_test.py").exists()
    monkeypatch.setattr(serialization, "_warned", False)
    with pytest.warns(serialization.UnsafeModelFormatWarning, match="python_model.pkl"):
        model = evtrack.pyfunc.load_model(str(tmp_path / "m"))
    assert model.predict(pd.DataFrame({"x": [1.0]})).tolist() == [11.0]
    assert model.predict(pd.DataFrame({"x": [1.0]}), params={"scale": 2.0}).tolist() == [22.0]
    with pytest.raises(InvalidParameterValue, match="Unrecognized params"):
        model.predict(pd.DataFrame({"x": [1.0]}), params={"other": 1})
    assert isinstance(model.unwrap_python_model(), AddN)


def test_custom_pyfunc_infers_signature_from_example(tmp_path):
    (tmp_path / "n.txt").write_text("1")
    evtrack.pyfunc.save_model(
        str(tmp_path / "m"),
        python_model=AddN(),
        artifacts={"n": str(tmp_path / "n.txt")},
        input_example=pd.DataFrame({"x": [1.0, 2.0]}),
    )
    sig = Model.load(str(tmp_path / "m")).signature
    assert sig.inputs.input_names() == ["x"]
    assert sig.outputs.to_json() == '[{"type": "double", "name": "x", "required": true}]'


def test_log_model_into_the_run_and_load_by_runs_uri(store_uri):
    evtrack.set_tracking_uri(store_uri)
    x, _ = wine_data()
    with evtrack.start_run() as run:
        info = evtrack.sklearn.log_model(wine_model(), name="model", input_example=x.head(2))
    assert info.model_uri == f"models:/{info.model_id}" and info.model_id.startswith("m-")
    assert info.run_id == run.info.run_id and info.signature is not None
    client = evtrack.MlflowClient(store_uri)
    names = sorted(f.path for f in client.list_artifacts(run.info.run_id, "model"))
    assert "model/MLmodel" in names and "model/model.skops" in names
    meta = Model.load(client.download_artifacts(run.info.run_id, "model/MLmodel"))
    assert meta.run_id == run.info.run_id and meta.artifact_path == "model"
    for uri in (info.model_uri, f"runs:/{run.info.run_id}/model"):
        model = evtrack.pyfunc.load_model(uri)
        assert np.allclose(model.predict(x.head(5)), wine_model().predict(x.head(5)))
    logged = client.get_logged_model(info.model_id)
    assert (logged.status, logged.source_run_id, logged.name) == ("READY", run.info.run_id, "model")
    assert meta.model_id == info.model_id


def test_fsspec_url_loads(tmp_path):
    import fsspec

    path = save_wine_model(tmp_path / "m")
    fs = fsspec.filesystem("memory")
    for name in os.listdir(path):
        fs.pipe(f"/models-test/wine/{name}", (path / name).read_bytes())
    x, _ = wine_data()
    model = evtrack.pyfunc.load_model("memory://models-test/wine")
    assert np.allclose(model.predict(x.head(3)), wine_model().predict(x.head(3)))
    fs.rm("/models-test", recursive=True)


@pytest.mark.parametrize(
    ("uri", "error"),
    [
        ("/no/such/model", ResourceDoesNotExist),
        ("memory://no-such-model-here", ResourceDoesNotExist),
        ("runs:/", InvalidParameterValue),
        ("", InvalidParameterValue),
    ],
)
def test_bad_uris(uri, error):
    with pytest.raises(error):
        evtrack.pyfunc.load_model(uri)


def test_folder_without_mlmodel(tmp_path):
    with pytest.raises(ResourceDoesNotExist, match="No MLmodel"):
        evtrack.pyfunc.load_model(str(tmp_path))


def test_unknown_loader_module_says_how_to_fix(tmp_path):
    path = save_wine_model(tmp_path / "m")
    meta = yaml.safe_load((path / "MLmodel").read_text())
    meta["flavors"]["python_function"]["loader_module"] = "mlflow.xgboost"
    (path / "MLmodel").write_text(yaml.safe_dump(meta))
    with pytest.raises(InvalidParameterValue, match="mlflow.xgboost.*evtrack.model_flavors"):
        evtrack.pyfunc.load_model(str(path))


def test_tensor_signature_and_enforcement(tmp_path):
    from sklearn.linear_model import LinearRegression

    xs = np.arange(12, dtype="float64").reshape(6, 2)
    model = LinearRegression().fit(xs, xs.sum(axis=1))
    evtrack.sklearn.save_model(model, str(tmp_path / "m"), input_example=xs[:2])
    loaded = evtrack.pyfunc.load_model(str(tmp_path / "m"))
    schema = loaded.metadata.get_input_schema()
    assert schema.is_tensor_spec() and schema.inputs[0].shape == (-1, 2)
    assert np.allclose(loaded.predict(np.array([[1, 2]])), [3.0])  # int -> float64
    with pytest.raises(InvalidParameterValue, match="shape"):
        loaded.predict(np.ones((1, 3)))
    with pytest.raises(InvalidParameterValue, match="dtype"):
        loaded.predict(np.array([["a", "b"]]))


def test_import_evtrack_as_mlflow_spellings():
    import evtrack as mlflow

    assert mlflow.sklearn.log_model is evtrack.models.flavors.sklearn.log_model
    assert mlflow.pyfunc.PythonModel is evtrack.models.pyfunc.PythonModel
    assert mlflow.models.infer_signature is infer_signature


def test_pickle_needing_a_missing_module_says_which(tmp_path, monkeypatch):
    monkeypatch.setattr(serialization, "_warned", True)
    path = tmp_path / "m.pkl"
    # a pickle of an object from a module that does not exist here
    path.write_bytes(b"cno_such_mod_xyz\nC\n.")  # GLOBAL no_such_mod_xyz.C, STOP
    with pytest.raises(InvalidParameterValue, match="no_such_mod_xyz"):
        serialization.load(str(path), "pickle")
