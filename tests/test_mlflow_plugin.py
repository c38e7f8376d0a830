"""Stock ``mlflow`` (its own venv) logging to an evtrack store through the plugin.

Each test runs an ordinary MLflow script with ``MLFLOW_TRACKING_URI=evtrack:///…`` (or
``evtrack+s3://…`` against the loopback S3 server) in the plugin venv, has it print what
MLflow itself reads back, then reads the same store with evtrack in this process and
compares exactly.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path

import pytest
import tomllib
from mlflow_plugin_venv import plugin_python_fixture  # noqa: F401  (the plugin_python fixture)

import evtrack
from evtrack.mlflow_plugin.uris import SCHEMES, to_evtrack_uri, to_store_url

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.mlflow


def run_mlflow(python: Path, uri: str, script: str, cwd: Path, **env: str) -> dict:
    """Run ``script`` under stock mlflow with the tracking URI set; return its JSON output."""
    full_env = {**os.environ, "MLFLOW_TRACKING_URI": uri, **env}
    full_env.pop("EVTRACK_TRACKING_URI", None)
    proc = subprocess.run(
        [str(python), "-c", textwrap.dedent(script)],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


TRACKING_SCRIPT = """
import json, os, mlflow
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag

mlflow.set_experiment("plugin-exp")
with mlflow.start_run(run_name="parent") as parent:
    mlflow.log_params({"alpha": "0.5", "layers": 3})
    for i in range(200):
        mlflow.log_metric("loss", 1.0 / (i + 1), step=i, timestamp=1_700_000_000_000 + i)
    mlflow.set_tags({"team": "a", "stage": "dev"})
    with open("notes.txt", "w") as f:
        f.write("hello")
    mlflow.log_artifact("notes.txt", "docs")
    mlflow.log_dict({"k": [1, 2]}, "cfg/config.json")
    with mlflow.start_run(run_name="child", nested=True) as child:
        mlflow.log_metric("loss", 3.0, step=0)
client = MlflowClient()
run_id = parent.info.run_id
client.log_batch(
    run_id,
    metrics=[Metric("acc", 0.1 * i, 1_700_000_000_000 + i, i) for i in range(10)],
    params=[Param("batch", "32")],
    tags=[RunTag("via", "log_batch")],
)
deleted = client.create_run(parent.info.experiment_id, run_name="gone")
client.delete_run(deleted.info.run_id)
exp_id = parent.info.experiment_id
found = mlflow.search_runs([exp_id], filter_string="metrics.loss < 1", output_format="list")
ordered = mlflow.search_runs([exp_id], order_by=["metrics.loss DESC"], output_format="list")
hist = client.get_metric_history(run_id, "loss")
page = client.get_metric_history(run_id, "acc")
arts = [f.path for f in client.list_artifacts(run_id, "docs")]
text = open(client.download_artifacts(run_id, "docs/notes.txt")).read()
cfg = mlflow.artifacts.load_dict(parent.info.artifact_uri + "/cfg/config.json")
r = client.get_run(run_id)
print(json.dumps({
    "exp_id": exp_id, "run_id": run_id, "child_id": child.info.run_id,
    "deleted_id": deleted.info.run_id,
    "found": [x.info.run_id for x in found], "ordered": [x.info.run_id for x in ordered],
    "hist": [[m.step, m.timestamp, m.value] for m in hist],
    "acc": [[m.step, m.value] for m in page],
    "arts": arts, "text": text, "cfg": cfg,
    "params": r.data.params, "metrics": r.data.metrics,
    "tags": {k: v for k, v in r.data.tags.items()},
    "status": r.info.status, "end_time": r.info.end_time,
}))
"""


def check_tracking(python: Path, uri: str, cwd: Path) -> None:
    out = run_mlflow(python, uri, TRACKING_SCRIPT, cwd)
    client = evtrack.MlflowClient(to_store_url(uri))
    run = client.get_run(out["run_id"])
    assert run.data.params == out["params"] == {"alpha": "0.5", "layers": "3", "batch": "32"}
    assert run.data.metrics == out["metrics"]
    assert out["metrics"] == {"loss": 1.0 / 200, "acc": 0.9}
    assert run.data.tags == out["tags"]
    assert run.data.tags["via"] == "log_batch" and run.data.tags["team"] == "a"
    assert run.info.status == out["status"] == "FINISHED"
    assert run.info.end_time == out["end_time"]
    hist = [
        [m.step, m.timestamp, m.value] for m in client.get_metric_history(out["run_id"], "loss")
    ]
    assert hist == out["hist"] and len(hist) == 200
    assert hist[0] == [0, 1_700_000_000_000, 1.0]
    child = client.get_run(out["child_id"])
    assert child.data.tags["mlflow.parentRunId"] == out["run_id"]
    assert client.get_run(out["deleted_id"]).info.lifecycle_stage == "deleted"
    mine = client.search_runs([out["exp_id"]], "metrics.loss < 1")
    assert [r.info.run_id for r in mine] == out["found"] == [out["run_id"]]
    ordered = client.search_runs([out["exp_id"]], order_by=["metrics.loss DESC"])
    assert [r.info.run_id for r in ordered] == out["ordered"] == [out["child_id"], out["run_id"]]
    assert out["arts"] == ["docs/notes.txt"] and out["text"] == "hello"
    assert out["cfg"] == {"k": [1, 2]}
    assert [f.path for f in client.list_artifacts(out["run_id"], "cfg")] == ["cfg/config.json"]
    assert client._artifacts(out["run_id"])[1].read_bytes("docs/notes.txt") == b"hello"


def test_stock_mlflow_tracking_script_on_a_local_store(plugin_python, tmp_path):
    check_tracking(plugin_python, f"evtrack://{tmp_path}/evruns", tmp_path)


def test_stock_mlflow_on_s3_through_evtrack_plus_s3(plugin_python, s3_server, tmp_path):
    check_tracking(plugin_python, "evtrack+" + s3_server.uri(), tmp_path)


ASYNC_SCRIPT = """
import json, mlflow
mlflow.set_experiment("async")
with mlflow.start_run() as run:
    for i in range(500):
        mlflow.log_metric("m", float(i), step=i, synchronous=False)
    mlflow.log_param("p", "1", synchronous=False)
    ds = mlflow.data.from_dict({"x": [1, 2, 3]}, name="train") if hasattr(mlflow.data, "from_dict") else None
print(json.dumps({"run_id": run.info.run_id}))
"""


def test_async_logging_lands_every_point(plugin_python, tmp_path):
    uri = f"evtrack://{tmp_path}/evruns"
    out = run_mlflow(plugin_python, uri, ASYNC_SCRIPT, tmp_path, MLFLOW_ENABLE_ASYNC_LOGGING="true")
    client = evtrack.MlflowClient(to_store_url(uri))
    hist = client.get_metric_history(out["run_id"], "m")
    assert [(m.step, m.value) for m in hist] == [(i, float(i)) for i in range(500)]
    assert client.get_run(out["run_id"]).data.params == {"p": "1"}


INPUTS_SCRIPT = """
import json, mlflow
from mlflow.entities import Dataset, DatasetInput, InputTag
mlflow.set_experiment("inputs")
with mlflow.start_run() as run:
    ds = Dataset(name="train", digest="abc123", source_type="local", source='{"uri": "x"}',
                 schema='{"mlflow_colspec": []}', profile='{"num_rows": 3}')
    mlflow.MlflowClient().log_inputs(
        run.info.run_id, [DatasetInput(ds, [InputTag("mlflow.data.context", "training")])]
    )
got = mlflow.get_run(run.info.run_id).inputs.dataset_inputs
print(json.dumps({"run_id": run.info.run_id,
                  "inputs": [[d.dataset.name, d.dataset.digest, d.dataset.profile,
                              {t.key: t.value for t in d.tags}] for d in got]}))
"""


def test_dataset_inputs_round_trip(plugin_python, tmp_path):
    uri = f"evtrack://{tmp_path}/evruns"
    out = run_mlflow(plugin_python, uri, INPUTS_SCRIPT, tmp_path)
    assert out["inputs"] == [
        ["train", "abc123", '{"num_rows": 3}', {"mlflow.data.context": "training"}]
    ]
    client = evtrack.MlflowClient(to_store_url(uri))
    rows = client.sql(
        "select name, digest, context from inputs where run_id = ?", [out["run_id"]]
    ).fetchall()
    assert rows == [("train", "abc123", "training")]


ERRORS_SCRIPT = """
import json, mlflow
from mlflow.exceptions import MlflowException
codes = {}
try:
    mlflow.MlflowClient().get_run("0" * 32)
except MlflowException as exc:
    codes["get_run"] = exc.error_code
with mlflow.start_run() as run:
    mlflow.log_param("p", "1")
    try:
        mlflow.log_param("p", "2")
    except MlflowException as exc:
        codes["param"] = exc.error_code
try:
    mlflow.search_runs(["0"], filter_string="metrics.x <<< 1")
except MlflowException as exc:
    codes["filter"] = exc.error_code
print(json.dumps(codes))
"""


def test_errors_reach_mlflow_with_mlflow_error_codes(plugin_python, tmp_path):
    out = run_mlflow(plugin_python, f"evtrack://{tmp_path}/evruns", ERRORS_SCRIPT, tmp_path)
    assert out == {
        "get_run": "RESOURCE_DOES_NOT_EXIST",
        "param": "INVALID_PARAMETER_VALUE",
        "filter": "INVALID_PARAMETER_VALUE",
    }


def test_entry_points_cover_every_scheme():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    points = project["entry-points"]
    assert set(points["mlflow.tracking_store"]) == set(SCHEMES)
    assert set(points["mlflow.artifact_repository"]) == set(SCHEMES)
    assert set(points["mlflow.model_registry_store"]) == set(SCHEMES)


@pytest.mark.parametrize(
    "uri, url",
    [
        ("evtrack:///abs/evruns", "/abs/evruns"),
        ("evtrack+s3://bucket/prefix", "s3://bucket/prefix"),
        ("evtrack+file:///abs/x", "file:///abs/x"),
        ("evtrack+memory://name", "memory://name"),
        ("evtrack:relative", "relative"),
        ("s3://b/p", "s3://b/p"),
    ],
)
def test_uri_spellings(uri, url):
    assert to_store_url(uri) == url


def test_evtrack_itself_accepts_the_plugin_spelling(tmp_path):
    evtrack.set_tracking_uri(f"evtrack://{tmp_path}/store")
    with evtrack.start_run() as run:
        evtrack.log_metric("x", 1.0)
    assert evtrack.MlflowClient(str(tmp_path / "store")).get_run(run.info.run_id).data.metrics == {
        "x": 1.0
    }
    assert to_evtrack_uri("s3://b/p") == "evtrack+s3://b/p"


def test_mlflow_ui_browses_an_evtrack_store(plugin_python, tmp_path):
    """``mlflow ui --backend-store-uri evtrack:///…``: MLflow's own server and UI over the
    event log, through the plugin (what the UI's pages call, over HTTP)."""
    import signal
    import time
    import urllib.request

    from evtrack.server.testing import free_port

    uri = f"evtrack://{tmp_path}/evruns"
    out = run_mlflow(plugin_python, uri, TRACKING_SCRIPT, tmp_path)
    port = free_port()
    with open(tmp_path / "ui.log", "ab") as log:
        ui = subprocess.Popen(
            [
                str(plugin_python),
                "-m",
                "mlflow",
                "ui",
                "--backend-store-uri",
                uri,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"

    def get(path: str, body: dict | None = None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            base + path, data=data, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=60) as resp:
            raw = resp.read()
            return json.loads(raw) if path.startswith(("/api", "/ajax")) else raw

    try:
        deadline = time.monotonic() + 240
        while True:
            try:
                urllib.request.urlopen(base + "/health", timeout=2).close()
                break
            except OSError:
                assert ui.poll() is None and time.monotonic() < deadline, (
                    tmp_path / "ui.log"
                ).read_text()[-2000:]
                time.sleep(0.5)
        assert b"<html" in get("/")
        exps = get("/ajax-api/2.0/mlflow/experiments/search", {"max_results": 10})
        assert {e["name"] for e in exps["experiments"]} == {"Default", "plugin-exp"}
        runs = get("/ajax-api/2.0/mlflow/runs/search", {"experiment_ids": [out["exp_id"]]})
        assert {r["info"]["run_id"] for r in runs["runs"]} == {out["run_id"], out["child_id"]}
        hist = get(
            f"/ajax-api/2.0/mlflow/metrics/get-history?run_id={out['run_id']}&metric_key=loss"
        )
        assert len(hist["metrics"]) == 200
        arts = get(f"/ajax-api/2.0/mlflow/artifacts/list?run_id={out['run_id']}&path=docs")
        assert [f["path"] for f in arts["files"]] == ["docs/notes.txt"]
        assert get(f"/get-artifact?run_id={out['run_id']}&path=docs/notes.txt") == b"hello"
    finally:
        os.killpg(ui.pid, signal.SIGTERM)
        ui.wait(30)


@pytest.mark.parametrize(
    "location, expected",
    [
        ("my_location", "{cwd}/my_location"),
        ("a/b", "{cwd}/a/b"),
        ("file:rel", "file://{cwd}/rel"),
        ("/abs/x", "/abs/x"),
        ("file:///abs/x", "file:///abs/x"),
        ("s3://bucket/p", "s3://bucket/p"),
        ("mlflow-artifacts:/1", "mlflow-artifacts:/1"),
    ],
)
def test_relative_artifact_locations_become_absolute(location, expected, tmp_path, monkeypatch):
    from evtrack.mlflow_plugin.uris import absolute_artifact_location

    monkeypatch.chdir(tmp_path)
    assert absolute_artifact_location(location) == expected.format(cwd=tmp_path)


RELATIVE_SCRIPT = """
import json, mlflow
exp = mlflow.create_experiment("rel", artifact_location="my_arts")
print(json.dumps({"location": mlflow.get_experiment(exp).artifact_location}))
"""


def test_plugin_resolves_a_relative_artifact_location(plugin_python, tmp_path):
    out = run_mlflow(plugin_python, f"evtrack://{tmp_path}/evruns", RELATIVE_SCRIPT, tmp_path)
    assert out["location"] == str(tmp_path / "my_arts")


MODELS_SCRIPT = """
import json, mlflow, numpy as np
from mlflow import MlflowClient
from sklearn.linear_model import LinearRegression

X = np.array([[0.0], [1.0], [2.0], [3.0]])
lr = LinearRegression().fit(X, np.array([1.0, 3.0, 5.0, 7.0]))
mlflow.set_experiment("models")
with mlflow.start_run() as run:
    info = mlflow.sklearn.log_model(lr, name="model", params={"fit_intercept": "True"})
client = MlflowClient()
mv = mlflow.register_model(info.model_uri, "lin", tags={"team": "a"})
client.set_registered_model_alias("lin", "champion", mv.version)
client.set_model_version_tag("lin", mv.version, "checked", "yes")
client.set_logged_model_tags(info.model_id, {"quality": "good"})
mv2 = mlflow.register_model(info.model_uri, "lin")
loaded = mlflow.pyfunc.load_model("models:/lin@champion")
by_id = mlflow.pyfunc.load_model(info.model_uri)
by_run = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
got = client.get_model_version_by_alias("lin", "champion")
lm = mlflow.get_logged_model(info.model_id)
found = mlflow.search_logged_models(experiment_ids=[run.info.experiment_id], output_format="list")
rm = client.get_registered_model("lin")
versions = client.search_model_versions("name = 'lin'")
print(json.dumps({
    "run_id": run.info.run_id, "exp_id": run.info.experiment_id,
    "model_id": info.model_id, "model_uri": info.model_uri,
    "version": mv.version, "version2": mv2.version,
    "pred": loaded.predict(np.array([[4.0], [5.0]])).tolist(),
    "pred_id": by_id.predict(np.array([[4.0]])).tolist(),
    "pred_run": by_run.predict(np.array([[4.0]])).tolist(),
    "direct": lr.predict(np.array([[4.0], [5.0]])).tolist(),
    "alias_version": got.version, "alias_model_id": got.model_id,
    "alias_tags": got.tags,
    "lm": [lm.name, lm.status.value, lm.source_run_id, lm.params, lm.tags.get("quality")],
    "found": [m.model_id for m in found],
    "rm_aliases": {a: v for a, v in rm.aliases.items()},
    "versions": sorted(v.version for v in versions),
}))
"""


@pytest.mark.parametrize("where", ["local", "s3"])
def test_stock_mlflow_logs_registers_and_loads_a_model(plugin_python, where, tmp_path, request):
    """MLflow 3's ``log_model`` -> ``register_model`` -> alias -> ``models:/name@alias``
    through the plugin; evtrack then reads the same logged and registered model."""
    if where == "s3":
        uri = "evtrack+" + request.getfixturevalue("s3_server").uri()
    else:
        uri = f"evtrack://{tmp_path}/evruns"
    out = run_mlflow(plugin_python, uri, MODELS_SCRIPT, tmp_path)
    assert out["pred"] == out["direct"] and len(out["pred"]) == 2
    assert out["pred_id"] == out["pred_run"] == out["direct"][:1]
    assert (out["version"], out["version2"]) == ("1", "2")
    assert out["alias_version"] == "1" and out["alias_model_id"] == out["model_id"]
    assert out["alias_tags"] == {"team": "a", "checked": "yes"}
    assert out["lm"] == ["model", "READY", out["run_id"], {"fit_intercept": "True"}, "good"]
    assert out["found"] == [out["model_id"]]
    assert out["rm_aliases"] == {"champion": "1"}
    assert out["versions"] == ["1", "2"]

    client = evtrack.MlflowClient(to_store_url(uri))
    lm = client.get_logged_model(out["model_id"])
    assert (lm.name, lm.status, lm.source_run_id) == ("model", "READY", out["run_id"])
    assert lm.params == {"fit_intercept": "True"} and lm.tags["quality"] == "good"
    assert [m.model_id for m in client.search_logged_models([out["exp_id"]])] == [out["model_id"]]
    mv = client.get_model_version_by_alias("lin", "champion")
    assert (mv.version, mv.model_id, mv.run_id) == ("1", out["model_id"], out["run_id"])
    assert mv.tags == {"team": "a", "checked": "yes"}
    assert client.get_registered_model("lin").aliases == {"champion": "1"}
    # evtrack's own pyfunc loads what MLflow logged, predicting the same values
    from evtrack.models import pyfunc

    evtrack.set_tracking_uri(to_store_url(uri))
    model = pyfunc.load_model("models:/lin@champion")
    assert list(model.predict([[4.0], [5.0]])) == out["direct"]


REGISTRY_SCRIPT = """
import json, mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
client = MlflowClient()
codes = {}
client.create_registered_model("a", tags={"k": "v"}, description="first")
try:
    client.create_registered_model("a")
except MlflowException as exc:
    codes["dup"] = exc.error_code
try:
    client.get_registered_model("nope")
except MlflowException as exc:
    codes["missing"] = exc.error_code
for _ in range(2):
    client.create_model_version("a", "/tmp/somewhere", description="v")
client.set_registered_model_alias("a", "prod", "2")
client.set_registered_model_alias("a", "old", "1")
client.delete_registered_model_alias("a", "old")
client.delete_model_version("a", "1")
client.update_registered_model("a", description="second")
client.rename_registered_model("a", "b")
client.delete_registered_model_tag("b", "k")
rm = client.get_registered_model("b")
found = client.search_registered_models("name = 'b'")
print(json.dumps({
    "codes": codes, "name": rm.name, "description": rm.description, "tags": rm.tags,
    "aliases": rm.aliases, "found": [m.name for m in found],
    "versions": [v.version for v in client.search_model_versions("name = 'b'")],
    "prod": client.get_model_version_by_alias("b", "prod").version,
}))
"""


def test_registry_calls_through_the_plugin(plugin_python, tmp_path):
    uri = f"evtrack://{tmp_path}/evruns"
    out = run_mlflow(plugin_python, uri, REGISTRY_SCRIPT, tmp_path)
    assert out["codes"] == {"dup": "RESOURCE_ALREADY_EXISTS", "missing": "RESOURCE_DOES_NOT_EXIST"}
    assert (out["name"], out["description"], out["tags"]) == ("b", "second", {})
    assert out["aliases"] == {"prod": "2"} and out["prod"] == "2"
    assert out["found"] == ["b"] and out["versions"] == ["2"]
    rm = evtrack.MlflowClient(to_store_url(uri)).get_registered_model("b")
    assert (rm.description, rm.aliases) == ("second", {"prod": "2"})


MODEL_METRICS_SCRIPT = """
import json, mlflow
from mlflow import MlflowClient
from mlflow.entities import Metric
mlflow.set_experiment("model-metrics")
with mlflow.start_run() as run:
    a = mlflow.initialize_logged_model(name="a")
    b = mlflow.initialize_logged_model(name="b")
    mlflow.log_metric("acc", 0.5, step=1, timestamp=1_700_000_000_001, model_id=a.model_id)
    mlflow.log_metric("acc", 0.9, step=2, timestamp=1_700_000_000_002, model_id=b.model_id,
                      dataset=None)
    MlflowClient().log_batch(run.info.run_id, metrics=[
        Metric("loss", 0.25, 1_700_000_000_003, 3, model_id=a.model_id,
               dataset_name="eval", dataset_digest="d1"),
        Metric("plain", 1.0, 1_700_000_000_004, 0),
    ])

def points(model):
    return sorted([m.key, m.value, m.step, m.timestamp, m.model_id, m.dataset_name,
                   m.dataset_digest, m.run_id] for m in model.metrics or [])

ordered = mlflow.search_logged_models(
    experiment_ids=[run.info.experiment_id],
    order_by=[{"field_name": "metrics.acc", "ascending": False}],
    output_format="list",
)
print(json.dumps({
    "run_id": run.info.run_id, "a": a.model_id, "b": b.model_id,
    "got_a": points(mlflow.get_logged_model(a.model_id)),
    "got_b": points(mlflow.get_logged_model(b.model_id)),
    "searched": [[m.name, points(m)] for m in ordered],
    "history": [[m.step, m.value] for m in MlflowClient().get_metric_history(run.info.run_id, "acc")],
}))
"""


def test_metrics_linked_to_a_logged_model_keep_their_model_id(plugin_python, tmp_path):
    """Stock ``mlflow.log_metric(..., model_id=)`` and ``log_batch`` with model-linked
    ``Metric``s through the plugin: MLflow's ``get_logged_model(id).metrics`` and
    ``search_logged_models`` see the points, as evtrack's own client does."""
    uri = f"evtrack://{tmp_path}/evruns"
    out = run_mlflow(plugin_python, uri, MODEL_METRICS_SCRIPT, tmp_path)
    run_id, a, b = out["run_id"], out["a"], out["b"]
    ts = 1_700_000_000_000
    want_a = [
        ["acc", 0.5, 1, ts + 1, a, None, None, run_id],
        ["loss", 0.25, 3, ts + 3, a, "eval", "d1", run_id],
    ]
    want_b = [["acc", 0.9, 2, ts + 2, b, None, None, run_id]]
    assert out["got_a"] == want_a
    assert out["got_b"] == want_b
    assert out["searched"] == [["b", want_b], ["a", want_a]]
    # the points are the run's too, as in MLflow
    assert out["history"] == [[1, 0.5], [2, 0.9]]
    client = evtrack.MlflowClient(to_store_url(uri))
    model = client.get_logged_model(a)
    assert sorted((m.key, m.value, m.step) for m in model.metrics) == [
        ("acc", 0.5, 1),
        ("loss", 0.25, 3),
    ]
    assert [m.key for m in client.get_logged_model(b).metrics] == ["acc"]


SEARCH_INPUTS_SCRIPT = """
import json, mlflow
from mlflow.entities import Dataset, DatasetInput, InputTag
exp_id = mlflow.set_experiment("search-inputs").experiment_id
client = mlflow.MlflowClient()
ids = []
for i, digests in enumerate([["d2", "d1"], [], ["d3"]]):
    run = client.create_run(exp_id, start_time=1_700_000_000_000 + i, run_name=f"r{i}")
    client.log_inputs(run.info.run_id, [
        DatasetInput(Dataset(name=f"ds-{d}", digest=d, source_type="local",
                             source='{"uri": "x"}', profile='{"n": 1}'),
                     [InputTag("mlflow.data.context", "training")])
        for d in digests
    ])
    client.set_terminated(run.info.run_id)
    ids.append(run.info.run_id)

def inputs(run):
    return [[d.dataset.name, d.dataset.digest, d.dataset.source_type, d.dataset.profile,
             {t.key: t.value for t in d.tags}] for d in run.inputs.dataset_inputs]

found = client.search_runs([exp_id], order_by=["attributes.start_time"])
paged = []
token = None
while True:
    page = client.search_runs([exp_id], order_by=["attributes.start_time"], max_results=1,
                              page_token=token)
    paged.extend(page)
    token = page.token
    if not token:
        break
print(json.dumps({
    "ids": ids,
    "searched": [[r.info.run_id, inputs(r)] for r in found],
    "paged": [[r.info.run_id, inputs(r)] for r in paged],
    "fluent": [[r.info.run_id, inputs(r)] for r in mlflow.search_runs(
        [exp_id], output_format="list", order_by=["attributes.start_time"])],
    "got": [[i, inputs(client.get_run(i))] for i in ids],
}))
"""


def test_search_runs_answers_carry_dataset_inputs(plugin_python, tmp_path):
    """As MLflow's SQL store fills them: each run found by ``search_runs`` has the same
    dataset inputs ``get_run`` gives."""
    out = run_mlflow(plugin_python, f"evtrack://{tmp_path}/evruns", SEARCH_INPUTS_SCRIPT, tmp_path)
    r0, r1, r2 = out["ids"]

    def item(d):
        return [f"ds-{d}", d, "local", '{"n": 1}', {"mlflow.data.context": "training"}]

    want = [[r0, [item("d1"), item("d2")]], [r1, []], [r2, [item("d3")]]]
    assert out["got"] == want
    assert out["searched"] == want
    assert out["paged"] == want
    assert out["fluent"] == want
