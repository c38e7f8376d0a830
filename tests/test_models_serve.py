"""`evtrack models serve` as a real process over HTTP: every input format, every error."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import pytest
from models_helpers import (
    CURL_BODY,
    CURL_ROW,
    WINE_COLUMNS,
    ServedModel,
    save_wine_model,
    wine_data,
    wine_model,
)

EXPECTED = float(wine_model().predict(pd.DataFrame([CURL_ROW], columns=WINE_COLUMNS))[0])


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    path = save_wine_model(tmp_path_factory.mktemp("serve") / "wine")
    srv = ServedModel(str(path), "--max-body-size", "2000000", "--name", "wine").start()
    yield srv
    err = srv.stop()
    assert "Traceback" not in err, err


def test_the_issue_curl_exactly(served):
    status, out = served.invoke(CURL_BODY, "application/json; format=pandas-split")
    assert status == 200
    assert out == {"predictions": [pytest.approx(EXPECTED)]}


def test_mlflow2_and_3_json_formats(served):
    x, _ = wine_data()
    rows = x.head(5)
    want = wine_model().predict(rows).tolist()
    split = json.loads(rows.to_json(orient="split", index=False))
    records = rows.to_dict(orient="records")
    for body in (
        {"dataframe_split": split},
        {"dataframe_records": records},
        {"instances": rows.to_numpy().tolist()},
        {"inputs": rows.to_numpy().tolist()},
        {"inputs": {c: rows[c].tolist() for c in rows}},
        {"instances": records},
    ):
        status, out = served.invoke(body)
        assert status == 200, (body, out)
        assert out["predictions"] == pytest.approx(want)
    status, out = served.invoke(records, "application/json; format=pandas-records")
    assert (status, out["predictions"]) == (200, pytest.approx(want))


def test_csv(served):
    x, _ = wine_data()
    status, out = served.invoke(x.head(4).to_csv(index=False), "text/csv")
    assert status == 200
    assert out["predictions"] == pytest.approx(wine_model().predict(x.head(4)).tolist())


def test_health_version_metrics(served):
    for path in ("/ping", "/health"):
        assert served.request("GET", path)[0] == 200
    status, body, _ = served.request("GET", "/version")
    assert status == 200 and body.decode()
    status, body, headers = served.request("GET", "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    text = body.decode()
    assert 'evtrack_scoring_requests_total{route="/invocations",status="200"}' in text
    assert "evtrack_scoring_request_seconds_bucket" in text
    assert "evtrack_scoring_batch_rows_bucket" in text


@pytest.mark.parametrize(
    ("content_type", "body", "status", "needle"),
    [
        (None, CURL_BODY, 415, "no Content-Type"),
        ("text/plain", CURL_BODY, 415, "text/plain"),
        ("application/xml", "<a/>", 415, "application/xml"),
        ("application/json", "{not json", 400, "not valid JSON"),
        ("application/json", "[1, 2]", 400, "one of"),
        (
            "application/json",
            '{"dataframe_split": {"columns": ["a"]}}',
            400,
            "'columns' and 'data'",
        ),
        ("application/json", '{"dataframe_split": 1, "inputs": [1]}', 400, "exactly one of"),
        ("application/json", '{"data": [[1]]}', 400, "exactly one of"),
        ("application/json; format=pandas-weird", CURL_BODY, 400, "format=pandas-split"),
        ("application/json; format=pandas-records", '{"a": 1}', 400, "list of objects"),
        ("text/csv", "", 400, "CSV"),
    ],
)
def test_bad_requests_are_4xx_with_a_message(served, content_type, body, status, needle):
    got, out = served.invoke(body, content_type)
    assert got == status, out
    assert set(out) == {"error_code", "message"}
    assert needle in out["message"]
    assert "Traceback" not in out["message"]


def test_schema_enforcement(served):
    split = json.loads(CURL_BODY)
    missing = {"columns": split["columns"][:-1], "data": [split["data"][0][:-1]]}
    status, out = served.invoke({"dataframe_split": missing})
    assert status == 400 and out["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "missing inputs ['alcohol']" in out["message"]

    extra = {"columns": [*split["columns"], "colour"], "data": [[*split["data"][0], 1.0]]}
    status, out = served.invoke({"dataframe_split": extra})
    assert status == 400 and "['colour']" in out["message"]

    wrong = {"columns": split["columns"], "data": [["x", *split["data"][0][1:]]]}
    status, out = served.invoke({"dataframe_split": wrong})
    assert status == 400
    assert "fixed acidity" in out["message"] and "convert" in out["message"]

    status, out = served.invoke({"inputs": [[1.0, 2.0]]})
    assert status == 400 and "11 columns" in out["message"]

    status, out = served.invoke({"dataframe_split": split, "params": {"k": 1}})
    assert status == 400 and "no params" in out["message"]


def test_ragged_rows_and_nan(served):
    status, out = served.invoke({"dataframe_split": {"columns": WINE_COLUMNS, "data": [[1, 2]]}})
    assert status == 400 and "11 values" in out["message"]
    row = [None] * 11
    status, out = served.invoke({"dataframe_split": {"columns": WINE_COLUMNS, "data": [row]}})
    assert status == 400, out  # the model refuses NaN: its message, no traceback
    assert "NaN" in out["message"] and "Traceback" not in out["message"]


def test_oversized_body_is_413(served):
    big = json.dumps({"inputs": [[0.5] * 11] * 40000})
    assert len(big) > 2_000_000
    status, body, _ = served.request(
        "POST", "/invocations", big, {"Content-Type": "application/json"}
    )
    assert status == 413
    assert "--max-body-size" in json.loads(body)["message"]


def test_methods_and_unknown_routes(served):
    status, body, _ = served.request("GET", "/invocations")
    assert status == 405
    status, body, _ = served.request("GET", "/nope")
    assert status == 404 and json.loads(body)["error_code"] == "ENDPOINT_NOT_FOUND"


def test_kserve_v2_routes(served):
    assert served.request("GET", "/v2/health/live")[0] == 200
    assert served.request("GET", "/v2/health/ready")[0] == 200
    assert served.request("GET", "/v2/models/wine/ready")[0] == 200
    status, body, _ = served.request("GET", "/v2/models/wine")
    meta = json.loads(body)
    assert status == 200 and meta["name"] == "wine"
    assert [i["name"] for i in meta["inputs"]] == WINE_COLUMNS
    assert {i["datatype"] for i in meta["inputs"]} == {"FP64"}

    def infer(req):
        status, body, _ = served.request(
            "POST", "/v2/models/wine/infer", json.dumps(req), {"Content-Type": "application/json"}
        )
        return status, json.loads(body)

    whole = {
        "id": "r1",
        "inputs": [{"name": "x", "shape": [1, 11], "datatype": "FP64", "data": CURL_ROW}],
    }
    status, out = infer(whole)
    assert status == 200 and out["id"] == "r1" and out["model_name"] == "wine"
    assert out["outputs"][0]["data"] == [pytest.approx(EXPECTED)]
    assert out["outputs"][0]["shape"] == [1]
    by_column = {
        "inputs": [
            {"name": c, "shape": [1], "datatype": "FP64", "data": [v]}
            for c, v in zip(WINE_COLUMNS, CURL_ROW)
        ]
    }
    status, out = infer(by_column)
    assert status == 200 and out["outputs"][0]["data"] == [pytest.approx(EXPECTED)]
    status, out = infer(
        {"inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP64", "data": [1]}]}
    )
    assert status == 400 and "inputs[0]" in out["message"]
    status, out = infer({"inputs": [{"name": "x", "shape": [1], "datatype": "FP99", "data": [1]}]})
    assert status == 400 and "FP99" in out["message"]
    assert served.request("GET", "/v2/models/other")[0] == 404


@pytest.fixture(scope="module")
def batched(tmp_path_factory):
    path = save_wine_model(tmp_path_factory.mktemp("batched") / "wine")
    srv = ServedModel(str(path), "--batch-max-size", "64", "--batch-max-ms", "5", "-w", "2").start()
    yield srv
    err = srv.stop()
    assert "Traceback" not in err, err


def test_adaptive_batching_keeps_each_answer_with_its_request(batched):
    x, _ = wine_data()
    model = wine_model()

    def one(i):
        row = x.iloc[[i]]
        status, out = batched.invoke(
            {"dataframe_split": json.loads(row.to_json(orient="split", index=False))}
        )
        return i, status, out

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(one, range(200)))
    for i, status, out in results:
        assert status == 200
        assert out["predictions"] == [pytest.approx(model.predict(x.iloc[[i]])[0])]
    # metrics come from both workers (multiprocess mode) and show merged calls
    text = batched.request("GET", "/metrics")[1].decode()
    count = [
        ln for ln in text.splitlines() if ln.startswith("evtrack_scoring_batch_requests_count")
    ]
    total = [ln for ln in text.splitlines() if ln.startswith("evtrack_scoring_batch_requests_sum")]
    assert float(total[0].split()[-1]) == 200
    assert float(count[0].split()[-1]) <= 200


@pytest.mark.slow
def test_env_manager_uv_serves_from_a_built_env(tmp_path):
    """--env-manager uv builds (or reuses) a cached env from the model's requirements and
    serves from its interpreter."""
    import shutil

    if shutil.which("uv") is None:
        pytest.skip("uv is not installed")
    path = save_wine_model(tmp_path / "wine")
    srv = ServedModel(str(path), "--env-manager", "uv").start(wait=600)
    try:
        status, out = srv.invoke(CURL_BODY, "application/json; format=pandas-split")
        with open(f"/proc/{srv.proc.pid}/cmdline", "rb") as f:
            cmdline = f.read().decode()
    finally:
        srv.stop()
    assert "/.cache/evtrack/envs/uv-" in cmdline  # the process became the env's python
    assert status == 200 and out["predictions"] == [pytest.approx(EXPECTED)]


def test_env_manager_needs_the_models_python(tmp_path):
    import subprocess
    import sys

    from helpers import subprocess_env

    path = save_wine_model(tmp_path / "wine")
    (path / "python_env.yaml").write_text("python: 3.2.1\ndependencies: [-r requirements.txt]\n")
    proc = subprocess.run(
        [sys.executable, "-m", "evtrack.cli", "models", "serve", "-m", str(path),
         "--env-manager", "virtualenv"],
        env=subprocess_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1
    assert "Python 3.2" in proc.stderr and "Traceback" not in proc.stderr


SLOW_MODEL = """
import time
import evtrack


class Slow(evtrack.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        if (model_input["x"] < 0).any():
            time.sleep(5)
        if (model_input["x"] == 13).any():
            raise RuntimeError("unlucky")
        return model_input["x"] * (params or {}).get("scale", 1.0)
"""


@pytest.fixture(scope="module")
def slow_served(tmp_path_factory):
    import sys

    import evtrack
    from evtrack.models import infer_signature

    folder = tmp_path_factory.mktemp("slow")
    (folder / "slow_model_for_evtrack_tests.py").write_text(SLOW_MODEL)
    sys.path.insert(0, str(folder))
    try:
        from slow_model_for_evtrack_tests import Slow
    finally:
        sys.path.remove(str(folder))
    example = pd.DataFrame({"x": [1.0, 2.0]})
    evtrack.pyfunc.save_model(
        str(folder / "m"),
        python_model=Slow(),
        code_paths=[str(folder / "slow_model_for_evtrack_tests.py")],
        signature=infer_signature(example, example["x"], params={"scale": 1.0}),
    )
    srv = ServedModel(str(folder / "m"), "--timeout", "1").start()
    yield srv
    srv.stop()


def test_timeout_params_and_model_errors(slow_served):
    status, out = slow_served.invoke({"dataframe_records": [{"x": 2.0}], "params": {"scale": 3}})
    assert (status, out) == (200, {"predictions": [6.0]})
    status, out = slow_served.invoke({"dataframe_records": [{"x": -1.0}]})
    assert status == 503 and "--timeout" in out["message"]
    status, out = slow_served.invoke({"dataframe_records": [{"x": 2.0}], "params": {"scale": "x"}})
    assert status == 400 and "scale" in out["message"]
    status, out = slow_served.invoke({"dataframe_records": [{"x": 13.0}]})
    assert status == 500 and out["error_code"] == "INTERNAL_ERROR"
    assert "unlucky" not in out["message"] and "Traceback" not in out["message"]
    assert slow_served.request("GET", "/ping")[0] == 200  # still serving
