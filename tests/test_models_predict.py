"""`evtrack models predict`: JSON, CSV and Parquet in, JSON or CSV out, Parquet streamed."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from helpers import subprocess_env
from models_helpers import CURL_BODY, save_wine_model, wine_data, wine_model

from evtrack.errors import InvalidParameterValue
from evtrack.models.batch import predict_file


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return str(save_wine_model(tmp_path_factory.mktemp("predict") / "wine"))


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "evtrack.cli", "models", "predict", *args],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_parquet_streams_in_batches_to_json_and_csv(model_path, tmp_path):
    x, _ = wine_data()
    big = pd.concat([x] * 3, ignore_index=True)  # 14,694 rows, 15 batches of 1,000
    big.to_parquet(tmp_path / "in.parquet", row_group_size=700)
    want = wine_model().predict(big)
    rows = predict_file(
        model_path, str(tmp_path / "in.parquet"), str(tmp_path / "out.json"), batch_rows=1000
    )
    assert rows == len(big)
    got = json.loads((tmp_path / "out.json").read_text())["predictions"]
    assert np.allclose(got, want)
    proc = _cli(
        "-m", model_path, "-i", str(tmp_path / "in.parquet"), "-f", "csv", "--batch-rows", "4000"
    )
    assert proc.returncode == 0, proc.stderr
    out = pd.read_csv(__import__("io").StringIO(proc.stdout))
    assert list(out.columns) == ["predictions"] and np.allclose(out["predictions"], want)


def test_csv_and_json_inputs(model_path, tmp_path):
    x, _ = wine_data()
    x.head(10).to_csv(tmp_path / "in.csv", index=False)
    proc = _cli("-m", model_path, "-i", str(tmp_path / "in.csv"), "-o", str(tmp_path / "o.json"))
    assert proc.returncode == 0, proc.stderr
    got = json.loads((tmp_path / "o.json").read_text())["predictions"]
    assert np.allclose(got, wine_model().predict(x.head(10)))
    for name, body in (
        ("split.json", CURL_BODY),
        ("mlflow3.json", json.dumps({"dataframe_split": json.loads(CURL_BODY)})),
    ):
        (tmp_path / name).write_text(body)
        proc = _cli("-m", model_path, "-i", str(tmp_path / name))
        assert proc.returncode == 0, proc.stderr
        assert len(json.loads(proc.stdout)["predictions"]) == 1


def test_errors_are_clean(model_path, tmp_path):
    (tmp_path / "in.txt").write_text("a")
    proc = _cli("-m", model_path, "-i", str(tmp_path / "in.txt"))
    assert proc.returncode == 1 and "INVALID_PARAMETER_VALUE" in proc.stderr
    assert "Traceback" not in proc.stderr
    pd.DataFrame({"alcohol": [1.0]}).to_csv(tmp_path / "bad.csv", index=False)
    proc = _cli("-m", model_path, "-i", str(tmp_path / "bad.csv"))
    assert proc.returncode == 1 and "missing inputs" in proc.stderr
    with pytest.raises(InvalidParameterValue, match="does not exist"):
        predict_file(model_path, str(tmp_path / "none.csv"))


def test_register_list_alias_cli(tmp_path):
    import evtrack

    store = str(tmp_path / "store")
    evtrack.set_tracking_uri(store)
    x, _ = wine_data()
    with evtrack.start_run() as run:
        evtrack.sklearn.log_model(wine_model(), name="model", input_example=x.head(2))
    evtrack.flush()

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "evtrack.cli", "--tracking-uri", store, "models", *args],
            env=subprocess_env(), capture_output=True, text=True, timeout=120,
        )  # fmt: skip

    proc = cli("register", "-m", f"runs:/{run.info.run_id}/model", "-n", "wine")
    assert proc.returncode == 0 and "version 1" in proc.stdout, proc.stderr
    assert cli("alias", "-n", "wine", "-a", "prod", "-v", "1").returncode == 0
    out = json.loads(cli("list", "--format", "json").stdout)
    assert out == [{"name": "wine", "latest_version": "1", "aliases": "prod=1", "description": ""}]
    versions = json.loads(cli("list", "-n", "wine", "--format", "json").stdout)
    assert versions[0]["aliases"] == "prod" and versions[0]["run_id"] == run.info.run_id
    logged = json.loads(cli("list", "-x", run.info.experiment_id, "--format", "json").stdout)
    assert [m["name"] for m in logged] == ["model"] and logged[0]["status"] == "READY"
    pd.DataFrame(x.head(3)).to_csv(tmp_path / "in.csv", index=False)
    proc = cli("predict", "-m", "models:/wine@prod", "-i", str(tmp_path / "in.csv"))
    assert proc.returncode == 0, proc.stderr
    assert np.allclose(json.loads(proc.stdout)["predictions"], wine_model().predict(x.head(3)))
    from models_helpers import CURL_BODY, ServedModel

    srv = ServedModel("models:/wine@prod", tracking_uri=store).start()
    try:
        status, body = srv.invoke(CURL_BODY, "application/json; format=pandas-split")
        meta = json.loads(srv.request("GET", "/v2/models/wine")[1])
    finally:
        srv.stop()
    assert status == 200 and len(body["predictions"]) == 1
    assert meta["name"] == "wine"  # the V2 name of a registered model is its name
    proc = cli("alias", "-n", "wine", "-a", "nope", "--delete")
    assert proc.returncode == 1 and "RESOURCE_DOES_NOT_EXIST" in proc.stderr
    proc = cli("register", "-m", "runs:/", "-n", "other")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "other" not in cli("list").stdout  # nothing half-made
