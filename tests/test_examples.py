"""The examples run as a user runs them (a subprocess, a store from the environment),
and log exactly what they say they do."""

from __future__ import annotations

import math
import subprocess
import sys

from helpers import ROOT, subprocess_env

from evtrack import MlflowClient

EXAMPLES = ROOT / "examples"


def run_example(script, *args: str, store, cwd) -> str:
    proc = subprocess.run(
        [sys.executable, str(script), *args],
        env=subprocess_env(store),
        cwd=str(cwd),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_quickstart(tmp_path):
    store = tmp_path / "store"
    out = run_example(EXAMPLES / "quickstart.py", store=store, cwd=tmp_path)
    client = MlflowClient(str(store))
    exp = client.get_experiment_by_name("quickstart")
    (run,) = client.search_runs([exp.experiment_id])
    run_id = run.info.run_id
    assert run_id in out
    assert (run.info.run_name, run.info.status) == ("quickstart", "FINISHED")
    assert run.data.params == {"learning_rate": "0.01", "epochs": "3", "optimizer": "adam"}
    history = client.get_metric_history(run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(0, 0.9), (1, 0.5), (2, 0.3)]
    assert run.data.metrics == {"loss": 0.3}
    (notes,) = client.list_artifacts(run_id)
    assert notes.path == "notes.txt"
    local = client.download_artifacts(run_id, "notes.txt", str(tmp_path / "dl"))
    with open(local) as f:
        assert f.read() == "loss went from 0.9 to 0.3 in 3 epochs\n"
    versions = client.sql(
        "select count(*) from events where kind = 'artifact' and key = 'notes.txt'"
    ).fetchall()
    assert versions == [(2,)]
    assert not (tmp_path / "evruns").exists()


def test_sklearn_elasticnet_wine(tmp_path):
    folder = EXAMPLES / "sklearn_elasticnet_wine"
    assert (folder / "wine-quality.csv").is_file()
    store = tmp_path / "store"
    out = run_example(folder / "train.py", "0.3", "0.2", store=store, cwd=tmp_path)
    assert "Elasticnet model (alpha=0.300000, l1_ratio=0.200000)" in out

    client = MlflowClient(str(store))
    (run,) = client.search_runs(["0"])
    assert run.info.status == "FINISHED"
    assert run.data.params == {"alpha": "0.3", "l1_ratio": "0.2"}
    metrics = run.data.metrics
    assert set(metrics) == {"rmse", "r2", "mae"}
    assert all(math.isfinite(v) for v in metrics.values())
    assert 0 < metrics["mae"] <= metrics["rmse"] < 2  # quality is scored 0-10
    assert -1 < metrics["r2"] < 1
    assert f"RMSE: {metrics['rmse']}" in out

    names = {i.path for i in client.list_artifacts(run.info.run_id, "model")}
    assert {"model/MLmodel", "model/model.skops", "model/requirements.txt"} <= names
    assert f"Model: runs:/{run.info.run_id}/model" in out
    import pandas as pd

    import evtrack

    evtrack.set_tracking_uri(str(store))
    model = evtrack.sklearn.load_model(f"runs:/{run.info.run_id}/model")
    data = pd.read_csv(folder / "wine-quality.csv").drop(columns=["quality"]).head(5)
    assert model.predict(data).shape == (5,)
    assert (model.alpha, model.l1_ratio) == (0.3, 0.2)


def test_readme_serve_and_curl(tmp_path):
    """The README's lines: train, `evtrack models serve -m runs:/<id>/model`, the curl."""
    from models_helpers import CURL_BODY, ServedModel

    store = tmp_path / "store"
    out = run_example(EXAMPLES / "sklearn_elasticnet_wine" / "train.py", store=store, cwd=tmp_path)
    uri = next(ln.split()[1] for ln in out.splitlines() if ln.startswith("Model: "))
    readme = (EXAMPLES.parent / "README.md").read_text()
    assert "evtrack models serve -m runs:/<run_id>/model -p 1234" in readme
    assert CURL_BODY in readme
    srv = ServedModel(uri, tracking_uri=str(store)).start()
    try:
        status, body = srv.invoke(CURL_BODY, "application/json; format=pandas-split")
    finally:
        srv.stop()
    assert status == 200 and len(body["predictions"]) == 1
    assert 3 < body["predictions"][0] < 8  # a wine quality score
