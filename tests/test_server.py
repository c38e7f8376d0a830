"""The tracking server in-process (Flask's test client): MLflow's REST API, bad input,
the artifact proxy, auth and read-only mode, group commit."""

from __future__ import annotations

import base64
import json
import math
import os
import threading

import pytest

from evtrack.server import Auth, create_app
from evtrack.server.commit import GroupCommit
from evtrack.tracking.client import MlflowClient

API = "/api/2.0/mlflow"


def store_files(root) -> set[str]:
    out = set()
    for folder, _, files in os.walk(root):
        for f in files:
            if not f.startswith(".tmp-"):
                out.add(os.path.relpath(os.path.join(folder, f), root))
    return out


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("srv")
    store = str(root / "store")
    app = create_app(store)
    client = app.test_client()
    exp = client.post(f"{API}/experiments/create", json={"name": "srv-tests"}).get_json()
    return {"app": app, "c": client, "store": store, "exp": exp["experiment_id"], "root": root}


def new_run(env, **body) -> str:
    r = env["c"].post(f"{API}/runs/create", json={"experiment_id": env["exp"], **body})
    assert r.status_code == 200, r.get_json()
    return r.get_json()["run"]["info"]["run_id"]


def err(resp, status, code="INVALID_PARAMETER_VALUE"):
    assert resp.status_code == status, (resp.status_code, resp.get_data(as_text=True))
    body = resp.get_json()
    assert body["error_code"] == code, body
    assert isinstance(body["message"], str) and body["message"]
    return body["message"]


# -- health, version, routes ---------------------------------------------------------


def test_health_and_version(env):
    c = env["c"]
    assert c.get("/health").get_data(as_text=True) == "OK"
    import evtrack

    assert c.get("/version").get_data(as_text=True) == evtrack.__version__


def test_unknown_endpoint_is_mlflow_not_found(env):
    err(env["c"].get(f"{API}/nope"), 404, "ENDPOINT_NOT_FOUND")
    err(env["c"].post(f"{API}/traces", json={}), 404, "ENDPOINT_NOT_FOUND")
    # the logged-models API exists (evtrack/server/models_api.py): a bad body is a 400
    err(env["c"].post(f"{API}/logged-models", json={}), 400)
    assert env["c"].post(f"{API}/logged-models/search", json={}).get_json() == {"models": []}


def test_ajax_prefix_serves_the_same_api(env):
    r = env["c"].get(f"/ajax-api/2.0/mlflow/experiments/get?experiment_id={env['exp']}")
    assert r.get_json()["experiment"]["name"] == "srv-tests"


# -- experiments ---------------------------------------------------------------------


def test_experiment_lifecycle(env):
    c = env["c"]
    eid = c.post(
        f"{API}/experiments/create",
        json={"name": "life", "tags": [{"key": "a", "value": "1"}]},
    ).get_json()["experiment_id"]
    e = c.get(f"{API}/experiments/get-by-name?experiment_name=life").get_json()["experiment"]
    assert e["experiment_id"] == eid and e["tags"] == [{"key": "a", "value": "1"}]
    assert e["artifact_location"] == f"mlflow-artifacts:/{eid}"
    assert isinstance(e["creation_time"], int)
    assert (
        c.post(
            f"{API}/experiments/update", json={"experiment_id": eid, "new_name": "life2"}
        ).status_code
        == 200
    )
    c.post(
        f"{API}/experiments/set-experiment-tag",
        json={"experiment_id": eid, "key": "b", "value": "2"},
    )
    c.post(f"{API}/experiments/delete-experiment-tag", json={"experiment_id": eid, "key": "a"})
    e = c.get(f"{API}/experiments/get?experiment_id={eid}").get_json()["experiment"]
    assert e["name"] == "life2" and e["tags"] == [{"key": "b", "value": "2"}]
    assert c.post(f"{API}/experiments/delete", json={"experiment_id": eid}).status_code == 200
    found = c.post(f"{API}/experiments/search", json={"view_type": "DELETED_ONLY"}).get_json()
    assert [x["name"] for x in found["experiments"]] == ["life2"]
    found = c.get(
        f"{API}/experiments/search?view_type=ALL&filter=name%20%3D%20%27life2%27"
    ).get_json()
    assert [x["lifecycle_stage"] for x in found["experiments"]] == ["deleted"]
    assert c.post(f"{API}/experiments/restore", json={"experiment_id": eid}).status_code == 200
    err(c.post(f"{API}/experiments/create", json={"name": "life2"}), 400, "RESOURCE_ALREADY_EXISTS")
    err(c.get(f"{API}/experiments/get-by-name?experiment_name=zzz"), 404, "RESOURCE_DOES_NOT_EXIST")
    err(c.get(f"{API}/experiments/get?experiment_id=98765"), 404, "RESOURCE_DOES_NOT_EXIST")
    msg = err(c.post(f"{API}/experiments/create", json={}), 400)
    assert "Missing value for required parameter 'name'" in msg


def test_search_experiments_pages(env):
    c = env["c"]
    for i in range(3):
        c.post(f"{API}/experiments/create", json={"name": f"page-{i}"})
    names, token = [], None
    while True:
        body = {"max_results": 2, "filter": "name LIKE 'page-%'", "order_by": ["name"]}
        if token:
            body["page_token"] = token
        r = c.post(f"{API}/experiments/search", json=body).get_json()
        names += [e["name"] for e in r["experiments"]]
        token = r.get("next_page_token")
        if not token:
            break
    assert names == ["page-0", "page-1", "page-2"]


# -- runs ----------------------------------------------------------------------------


def test_run_json_shape_and_logging(env):
    c = env["c"]
    run_id = new_run(
        env, run_name="shape", start_time=1234, tags=[{"key": "t", "value": "v"}], user_id="u"
    )
    body = {
        "run_id": run_id,
        "metrics": [
            {"key": "m", "value": 1.5, "timestamp": 10, "step": 1},
            {"key": "m", "value": "NaN", "timestamp": "11", "step": "2"},
            {"key": "inf", "value": "Infinity", "timestamp": 12},
        ],
        "params": [{"key": "p", "value": "x"}],
        "tags": [{"key": "t2", "value": "w"}],
    }
    assert c.post(f"{API}/runs/log-batch", json=body).status_code == 200
    c.post(
        f"{API}/runs/log-metric",
        json={"run_id": run_id, "key": "single", "value": 3, "timestamp": 5},
    )
    c.post(f"{API}/runs/log-parameter", json={"run_uuid": run_id, "key": "p2", "value": "y"})
    c.post(f"{API}/runs/set-tag", json={"run_id": run_id, "key": "t3", "value": "z"})
    r = c.post(
        f"{API}/runs/update", json={"run_id": run_id, "status": "FINISHED", "end_time": 9999}
    )
    assert r.get_json()["run_info"]["status"] == "FINISHED"
    assert r.get_json()["run_info"]["end_time"] == 9999
    run = c.get(f"{API}/runs/get?run_id={run_id}").get_json()["run"]
    info = run["info"]
    assert info["run_id"] == info["run_uuid"] == run_id
    assert info["run_name"] == "shape" and info["user_id"] == "u" and info["start_time"] == 1234
    assert info["artifact_uri"] == f"mlflow-artifacts:/{env['exp']}/{run_id}/artifacts"
    metrics = {m["key"]: m for m in run["data"]["metrics"]}
    assert metrics["m"] == {"key": "m", "value": "NaN", "timestamp": 11, "step": 2}
    assert metrics["inf"]["value"] == "Infinity" and metrics["single"]["value"] == 3.0
    assert {p["key"]: p["value"] for p in run["data"]["params"]} == {"p": "x", "p2": "y"}
    tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
    assert tags["t"] == "v" and tags["t2"] == "w" and tags["t3"] == "z"
    assert tags["mlflow.runName"] == "shape"
    # The store, read by evtrack directly, agrees (every 200 was durable).
    ev = MlflowClient(env["store"]).get_run(run_id)
    assert math.isnan(ev.data.metrics["m"]) and ev.data.params == {"p": "x", "p2": "y"}
    assert ev.info.status == "FINISHED" and ev.info.end_time == 9999


def test_get_history_paging(env):
    c = env["c"]
    run_id = new_run(env)
    metrics = [{"key": "h", "value": i, "timestamp": 100 + i, "step": i} for i in range(7)]
    c.post(f"{API}/runs/log-batch", json={"run_id": run_id, "metrics": metrics})
    full = c.get(f"{API}/metrics/get-history?run_id={run_id}&metric_key=h").get_json()
    assert [m["step"] for m in full["metrics"]] == list(range(7))
    assert "next_page_token" not in full
    steps, token = [], None
    while True:
        q = f"{API}/metrics/get-history?run_id={run_id}&metric_key=h&max_results=3"
        r = c.get(q + (f"&page_token={token}" if token else "")).get_json()
        steps += [m["step"] for m in r["metrics"]]
        token = r.get("next_page_token")
        if not token:
            break
    assert steps == list(range(7))
    err(c.get(f"{API}/metrics/get-history?run_id={run_id}&metric_key=h&max_results=0"), 400)


def test_history_bulk_interval(env):
    c = env["c"]
    a, b = new_run(env), new_run(env)
    for rid, n in ((a, 50), (b, 10)):
        ms = [{"key": "k", "value": i, "timestamp": i, "step": i} for i in range(n)]
        c.post(f"{API}/runs/log-batch", json={"run_id": rid, "metrics": ms})
    r = c.get(
        f"{API}/metrics/get-history-bulk-interval?run_ids={a}&run_ids={b}&metric_key=k&max_results=5"
    )
    points = r.get_json()["metrics"]
    by_run = {}
    for p in points:
        by_run.setdefault(p["run_id"], []).append(p["step"])
    assert by_run[a][0] == 0 and by_run[a][-1] <= 49 and len(by_run[a]) <= 5 + 2
    assert 9 in by_run[b]  # each run's min and max step are kept
    err(
        c.get(f"{API}/metrics/get-history-bulk-interval?run_ids={a}&metric_key=k&max_results=0"),
        400,
    )
    err(
        c.get(f"{API}/metrics/get-history-bulk-interval?run_ids={a}&metric_key=k&start_step=3"), 400
    )


def test_search_runs_and_delete_restore(env):
    c = env["c"]
    run_id = new_run(env, run_name="findme")
    c.post(
        f"{API}/runs/log-metric",
        json={"run_id": run_id, "key": "acc", "value": 0.99, "timestamp": 1},
    )
    body = {"experiment_ids": [env["exp"]], "filter": "metrics.acc > 0.9"}
    found = c.post(f"{API}/runs/search", json=body).get_json()["runs"]
    assert [r["info"]["run_id"] for r in found] == [run_id]
    c.post(f"{API}/runs/delete", json={"run_id": run_id})
    assert c.post(f"{API}/runs/search", json=body).get_json() == {}
    body["run_view_type"] = "DELETED_ONLY"
    assert len(c.post(f"{API}/runs/search", json=body).get_json()["runs"]) == 1
    # A deleted run refuses new data, as in MLflow.
    err(
        c.post(
            f"{API}/runs/log-metric",
            json={"run_id": run_id, "key": "acc", "value": 1, "timestamp": 2},
        ),
        400,
    )
    c.post(f"{API}/runs/restore", json={"run_id": run_id})
    assert (
        c.get(f"{API}/runs/get?run_id={run_id}").get_json()["run"]["info"]["lifecycle_stage"]
        == "active"
    )
    err(
        c.post(f"{API}/runs/search", json={"experiment_ids": [env["exp"]], "max_results": 50001}),
        400,
    )


def test_log_inputs_round_trip(env):
    c = env["c"]
    run_id = new_run(env)
    ds = {
        "name": "wine",
        "digest": "abc123",
        "source_type": "local",
        "source": "{}",
        "schema": "{}",
    }
    body = {
        "run_id": run_id,
        "datasets": [{"dataset": ds, "tags": [{"key": "mlflow.data.context", "value": "train"}]}],
    }
    assert c.post(f"{API}/runs/log-inputs", json=body).status_code == 200
    run = c.get(f"{API}/runs/get?run_id={run_id}").get_json()["run"]
    item = run["inputs"]["dataset_inputs"][0]
    assert item["dataset"]["name"] == "wine" and item["dataset"]["digest"] == "abc123"
    assert item["tags"] == [{"key": "mlflow.data.context", "value": "train"}]


# -- bad input: the right error and nothing written ------------------------------------


BAD_BODIES = [
    ("malformed json", b'{"run_id": "x", "metrics": [', 400),
    ("metrics not a list", {"metrics": {"key": "m"}}, 400),
    ("value not a number", {"metrics": [{"key": "m", "value": "abc", "timestamp": 1}]}, 400),
    ("lowercase nan", {"metrics": [{"key": "m", "value": "nan", "timestamp": 1}]}, 400),
    ("bool value", {"metrics": [{"key": "m", "value": True, "timestamp": 1}]}, 400),
    ("step not an int", {"metrics": [{"key": "m", "value": 1, "timestamp": 1, "step": 1.5}]}, 400),
    ("bool timestamp", {"metrics": [{"key": "m", "value": 1, "timestamp": True}]}, 400),
    ("missing timestamp", {"metrics": [{"key": "m", "value": 1}]}, 400),
    ("int64 overflow", {"metrics": [{"key": "m", "value": 1, "timestamp": 2**63}]}, 400),
    ("bad key", {"metrics": [{"key": "../m", "value": 1, "timestamp": 1}]}, 400),
    ("tag value not a string", {"tags": [{"key": "t", "value": 5}]}, 400),
    ("param key missing", {"params": [{"value": "v"}]}, 400),
    ("too many metrics", {"metrics": [{"key": "m", "value": 1, "timestamp": 1}] * 1001}, 400),
    (
        "good metrics then a bad one",
        {
            "metrics": [{"key": "ok", "value": 1, "timestamp": 1}] * 5
            + [{"key": "m", "value": None, "timestamp": 1}]
        },
        400,
    ),
]


@pytest.mark.parametrize("name,body,status", BAD_BODIES, ids=[b[0] for b in BAD_BODIES])
def test_bad_log_batch_writes_nothing(env, name, body, status):
    run_id = new_run(env)
    before = store_files(env["store"])
    if isinstance(body, bytes):
        resp = env["c"].post(f"{API}/runs/log-batch", data=body, content_type="application/json")
    else:
        resp = env["c"].post(f"{API}/runs/log-batch", json={"run_id": run_id, **body})
    err(resp, status)
    assert store_files(env["store"]) == before
    assert MlflowClient(env["store"]).get_run(run_id).data.metrics == {}


def test_wrong_types_and_missing_fields(env):
    c = env["c"]
    err(c.post(f"{API}/runs/log-batch", json={"run_id": 5}), 400)
    err(c.post(f"{API}/runs/log-batch", json=[1, 2]), 400)
    assert "Missing value for required parameter 'run_id'" in err(
        c.post(f"{API}/runs/log-batch", json={}), 400
    )
    err(c.post(f"{API}/experiments/create", json={"name": 12}), 400)
    err(c.get(f"{API}/runs/get"), 400)
    err(c.post(f"{API}/runs/search", json={"max_results": "many"}), 400)
    err(c.post(f"{API}/runs/update", json={"run_id": new_run(env), "status": "DONE"}), 400)
    err(c.get(f"{API}/runs/get?run_id=does-not-exist"), 404, "RESOURCE_DOES_NOT_EXIST")


def test_content_type_and_unknown_fields(env):
    c = env["c"]
    run_id = new_run(env)
    body = json.dumps({"run_id": run_id, "key": "k", "value": 1, "timestamp": 1})
    err(c.post(f"{API}/runs/log-metric", data=body, content_type="text/plain"), 400)
    # Unknown fields are ignored, as MLflow's ParseDict(ignore_unknown_fields=True) does.
    extra = {"run_id": run_id, "key": "k", "value": 1, "timestamp": 1, "future_field": {"x": 1}}
    assert c.post(f"{API}/runs/log-metric", json=extra).status_code == 200


def test_oversized_body_is_refused_and_writes_nothing(tmp_path):
    app = create_app(str(tmp_path / "s"), max_json_bytes=1000, max_artifact_bytes=100)
    c = app.test_client()
    eid = c.post(f"{API}/experiments/create", json={"name": "big"}).get_json()["experiment_id"]
    run_id = c.post(f"{API}/runs/create", json={"experiment_id": eid}).get_json()["run"]["info"][
        "run_id"
    ]
    before = store_files(tmp_path / "s")
    metrics = [{"key": "m", "value": 1, "timestamp": i} for i in range(100)]
    assert "at most 1000 bytes" in err(
        c.post(f"{API}/runs/log-batch", json={"run_id": run_id, "metrics": metrics}), 400
    )
    path = f"/api/2.0/mlflow-artifacts/artifacts/{eid}/{run_id}/artifacts/big.bin"
    err(c.put(path, data=b"x" * 101), 400)
    assert store_files(tmp_path / "s") == before


# -- artifacts -------------------------------------------------------------------------


def test_artifact_proxy_round_trip(env):
    c = env["c"]
    run_id = new_run(env)
    base = f"/api/2.0/mlflow-artifacts/artifacts/{env['exp']}/{run_id}/artifacts"
    assert c.put(f"{base}/dir/a.txt", data=b"alpha").status_code == 200
    assert c.put(f"{base}/b.bin", data=b"\x00\x01").status_code == 200
    r = c.get(f"{base}/dir/a.txt")
    assert r.data == b"alpha" and "attachment" in r.headers["Content-Disposition"]
    listing = c.get(
        f"/api/2.0/mlflow-artifacts/artifacts?path={env['exp']}/{run_id}/artifacts"
    ).get_json()
    assert listing["files"] == [
        {"path": "b.bin", "is_dir": False, "file_size": 2},
        {"path": "dir", "is_dir": True},
    ]
    runs_list = c.get(f"{API}/artifacts/list?run_id={run_id}&path=dir").get_json()
    assert runs_list["files"] == [{"path": "dir/a.txt", "is_dir": False, "file_size": 5}]
    assert runs_list["root_uri"].startswith("mlflow-artifacts:/")
    assert c.delete(f"{base}/b.bin").status_code == 200
    err(c.get(f"{base}/b.bin"), 404, "RESOURCE_DOES_NOT_EXIST")
    ev = MlflowClient(env["store"])
    assert ev.sql("select path from artifacts where run_id = ?", [run_id]).fetchall() == [
        ("dir/a.txt",)
    ]


TRAVERSALS = [
    "../escape.txt",
    "1/../../escape.txt",
    "%2e%2e/escape.txt",
    "%252e%252e/escape.txt",
    "a/..%2f..%2fescape.txt",
    "/etc/passwd",
    "C:/windows/x",
    "a\\..\\..\\x",
    "file:/etc/passwd",
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_artifact_path_traversal_is_refused(env, path):
    c = env["c"]
    before = store_files(env["root"])
    for resp in (
        c.put(f"/api/2.0/mlflow-artifacts/artifacts/{path}", data=b"x"),
        c.get(f"/api/2.0/mlflow-artifacts/artifacts/{path}"),
        c.delete(f"/api/2.0/mlflow-artifacts/artifacts/{path}"),
        c.get("/api/2.0/mlflow-artifacts/artifacts", query_string={"path": path}),
    ):
        assert resp.status_code in (400, 404), (path, resp.status_code)
        assert resp.get_json()["error_code"] in ("INVALID_PARAMETER_VALUE", "ENDPOINT_NOT_FOUND")
    run_id = new_run(env)
    err(c.get(f"{API}/artifacts/list", query_string={"run_id": run_id, "path": path}), 400)
    assert store_files(env["root"]) - before <= {
        f for f in store_files(env["root"]) if f.startswith("store/")
    }
    assert not (env["root"].parent / "escape.txt").exists()


def test_no_serve_artifacts(tmp_path):
    c = create_app(str(tmp_path / "s"), serve_artifacts=False).test_client()
    assert c.put("/api/2.0/mlflow-artifacts/artifacts/x.txt", data=b"1").status_code == 503
    eid = c.post(f"{API}/experiments/create", json={"name": "x"}).get_json()["experiment_id"]
    e = c.get(f"{API}/experiments/get?experiment_id={eid}").get_json()["experiment"]
    assert e["artifact_location"].startswith("file://")


def test_default_artifact_root_is_written_directly(tmp_path):
    # As `mlflow server --default-artifact-root`: the location clients see is the real
    # one, and they write there themselves (issue 12); it is not proxied.
    root = tmp_path / "arts"
    c = create_app(str(tmp_path / "s"), default_artifact_root=str(root)).test_client()
    eid = c.post(f"{API}/experiments/create", json={"name": "x"}).get_json()["experiment_id"]
    run = c.post(f"{API}/runs/create", json={"experiment_id": eid}).get_json()["run"]["info"]
    assert run["artifact_uri"] == f"file://{root}/{eid}/{run['run_id']}/artifacts"


def test_search_datasets_is_a_read(tmp_path):
    # A POST that only reads: a read-only server answers it (it refused it before).
    c = create_app(str(tmp_path / "s"), read_only=True).test_client()
    r = c.post("/ajax-api/2.0/mlflow/experiments/search-datasets", json={"experiment_ids": ["0"]})
    assert r.status_code == 200 and r.get_json() == {}


def test_artifacts_destination_is_proxied(tmp_path):
    dest = tmp_path / "dest"
    c = create_app(str(tmp_path / "s"), artifacts_destination=str(dest)).test_client()
    eid = c.post(f"{API}/experiments/create", json={"name": "x"}).get_json()["experiment_id"]
    run = c.post(f"{API}/runs/create", json={"experiment_id": eid}).get_json()["run"]["info"]
    assert run["artifact_uri"] == f"mlflow-artifacts:/{eid}/{run['run_id']}/artifacts"
    c.put(f"/api/2.0/mlflow-artifacts/artifacts/{eid}/{run['run_id']}/artifacts/f.txt", data=b"hi")
    assert (dest / eid / run["run_id"] / "artifacts" / "f.txt").read_bytes() == b"hi"


# -- auth and read-only ----------------------------------------------------------------


def test_bearer_token(tmp_path):
    c = create_app(str(tmp_path / "s"), auth="s3cret").test_client()
    before = store_files(tmp_path / "s")
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic eDp5"}):
        err(
            c.post(f"{API}/experiments/create", json={"name": "a"}, headers=headers),
            401,
            "UNAUTHENTICATED",
        )
    assert store_files(tmp_path / "s") == before
    ok = c.post(
        f"{API}/experiments/create", json={"name": "a"}, headers={"Authorization": "Bearer s3cret"}
    )
    assert ok.status_code == 200
    # Reads stay open unless protect_reads; health always is.
    assert c.get(f"{API}/experiments/get-by-name?experiment_name=a").status_code == 200
    assert c.post(f"{API}/experiments/search", json={}).status_code == 200
    assert c.get("/health").status_code == 200


def test_basic_auth_users_file(tmp_path):
    import hashlib

    users = tmp_path / "users"
    users.write_text(
        "# users\nalice:wonderland\nbob:sha256:" + hashlib.sha256(b"builder").hexdigest() + "\n"
    )
    auth = Auth.from_users_file(str(users), protect_reads=True)
    c = create_app(str(tmp_path / "s"), auth=auth).test_client()

    def basic(user, pw):
        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()}

    err(c.get(f"{API}/experiments/search"), 401, "UNAUTHENTICATED")
    err(
        c.post(f"{API}/experiments/create", json={"name": "a"}, headers=basic("alice", "nope")),
        401,
        "UNAUTHENTICATED",
    )
    err(
        c.post(f"{API}/experiments/create", json={"name": "a"}, headers=basic("eve", "wonderland")),
        401,
        "UNAUTHENTICATED",
    )
    assert (
        c.post(
            f"{API}/experiments/create", json={"name": "a"}, headers=basic("alice", "wonderland")
        ).status_code
        == 200
    )
    assert c.get(f"{API}/experiments/search", headers=basic("bob", "builder")).status_code == 200
    assert c.get("/health").status_code == 200


def test_read_only(tmp_path):
    store = str(tmp_path / "s")
    create_app(store).test_client().post(f"{API}/experiments/create", json={"name": "ro"})
    c = create_app(store, read_only=True).test_client()
    before = store_files(tmp_path / "s")
    err(c.post(f"{API}/experiments/create", json={"name": "b"}), 403, "PERMISSION_DENIED")
    err(c.put("/api/2.0/mlflow-artifacts/artifacts/1/x.txt", data=b"1"), 403, "PERMISSION_DENIED")
    err(c.post(f"{API}/runs/log-batch", json={"run_id": "x"}), 403, "PERMISSION_DENIED")
    assert store_files(tmp_path / "s") == before
    assert c.get(f"{API}/experiments/get-by-name?experiment_name=ro").status_code == 200
    assert c.post(f"{API}/experiments/search", json={}).status_code == 200


# -- group commit ----------------------------------------------------------------------


def test_group_commit_shares_flushes_and_reports_errors():
    import time

    calls = []
    fail = {"on": False}

    def flush():
        calls.append(1)
        time.sleep(0.01)
        if fail["on"]:
            raise OSError("disk full")

    group = GroupCommit(flush)
    threads = [threading.Thread(target=group.commit) for _ in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert 1 <= len(calls) < 40  # concurrent commits shared flushes
    fail["on"] = True
    with pytest.raises(OSError):
        group.commit()
    fail["on"] = False
    group.commit()


def test_concurrent_requests_are_all_durable(env):
    run_id = new_run(env)
    app = env["app"]
    errors = []

    def worker(i):
        c = app.test_client()
        for j in range(20):
            ms = [
                {"key": "conc", "value": i, "timestamp": j, "step": i * 1000 + j * 10 + k}
                for k in range(10)
            ]
            r = c.post(f"{API}/runs/log-batch", json={"run_id": run_id, "metrics": ms})
            if r.status_code != 200:
                errors.append(r.get_data(as_text=True))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    # Read from a fresh process view of the store: all 1600 points are there.
    from evtrack.store.log.layout import Store
    from evtrack.store.log.views import load_events

    events = load_events(Store(env["store"] if "://" in env["store"] else "file://" + env["store"]))
    steps = [
        s
        for s, k, r in zip(
            events["step"].to_pylist(),
            events["key"].to_pylist(),
            events["run_id"].to_pylist(),
            strict=True,
        )
        if k == "conc" and r == run_id
    ]
    assert len(steps) == len(set(steps)) == 1600
