"""The registry and logged-models REST endpoints in-process: shapes and error codes."""

from __future__ import annotations

import pytest

from evtrack.server import create_app

API = "/api/2.0/mlflow"


@pytest.fixture
def c(tmp_path):
    return create_app(str(tmp_path / "store")).test_client()


def err(resp, status, code):
    assert resp.status_code == status, resp.get_data(as_text=True)
    body = resp.get_json()
    assert body["error_code"] == code and body["message"]
    return body["message"]


def test_registry_endpoints(c):
    r = c.post(f"{API}/registered-models/create", json={"name": "m", "description": "d",
                                                         "tags": [{"key": "a", "value": "1"}]})  # fmt: skip
    body = r.get_json()["registered_model"]
    assert body["name"] == "m" and body["description"] == "d"
    assert body["tags"] == [{"key": "a", "value": "1"}]
    err(
        c.post(f"{API}/registered-models/create", json={"name": "m"}),
        400,
        "RESOURCE_ALREADY_EXISTS",
    )
    err(c.get(f"{API}/registered-models/get?name=zz"), 404, "RESOURCE_DOES_NOT_EXIST")
    err(c.post(f"{API}/registered-models/create", json={}), 400, "INVALID_PARAMETER_VALUE")

    # A source is a models:/ or runs:/ URI, an mlflow-artifacts:/ URI or an allowed
    # location: the server serves a version's files from it (docs/security.md).
    for source in ("/tmp/x", "file:///etc", "http://127.0.0.1:9/internal", "runs:/r/../../x"):
        body = {"name": "m", "source": source, "run_id": "r"}
        err(c.post(f"{API}/model-versions/create", json=body), 400, "INVALID_PARAMETER_VALUE")
    mv = c.post(
        f"{API}/model-versions/create",
        json={"name": "m", "source": "mlflow-artifacts:/x", "run_id": "r"},
    )
    assert mv.get_json()["model_version"]["version"] == "1"
    assert mv.get_json()["model_version"]["source"] == "mlflow-artifacts:/x"
    err(c.post(f"{API}/model-versions/create", json={"name": "m"}), 400, "INVALID_PARAMETER_VALUE")
    err(c.get(f"{API}/model-versions/get?name=m&version=9"), 404, "RESOURCE_DOES_NOT_EXIST")
    err(c.get(f"{API}/model-versions/get?name=m&version=x"), 400, "INVALID_PARAMETER_VALUE")

    assert (
        c.post(
            f"{API}/registered-models/alias", json={"name": "m", "alias": "prod", "version": "1"}
        ).status_code
        == 200
    )
    got = c.get(f"{API}/registered-models/alias?name=m&alias=prod").get_json()["model_version"]
    assert got["version"] == "1" and got["aliases"] == ["prod"]
    err(
        c.post(
            f"{API}/registered-models/alias", json={"name": "m", "alias": "latest", "version": "1"}
        ),
        400,
        "INVALID_PARAMETER_VALUE",
    )
    err(c.get(f"{API}/registered-models/alias?name=m&alias=nope"), 404, "RESOURCE_DOES_NOT_EXIST")

    found = c.get(f"{API}/registered-models/search?filter=name%20LIKE%20'm%25'").get_json()
    assert [m["name"] for m in found["registered_models"]] == ["m"]
    assert c.get(f"{API}/registered-models/search?filter=name%3D'q'").get_json() == {}
    err(c.get(f"{API}/registered-models/search?filter=bogus"), 400, "INVALID_PARAMETER_VALUE")
    versions = c.get(f"{API}/model-versions/search?filter=run_id%3D'r'").get_json()[
        "model_versions"
    ]
    assert [v["version"] for v in versions] == ["1"]
    assert c.get(f"{API}/model-versions/get-download-uri?name=m&version=1").get_json() == {
        "artifact_uri": "mlflow-artifacts:/x"
    }

    assert (
        c.patch(
            f"{API}/model-versions/update", json={"name": "m", "version": "1", "description": "v"}
        ).status_code
        == 200
    )
    assert (
        c.post(f"{API}/registered-models/rename", json={"name": "m", "new_name": "n"}).status_code
        == 200
    )
    err(c.get(f"{API}/registered-models/get?name=m"), 404, "RESOURCE_DOES_NOT_EXIST")
    assert (
        c.get(f"{API}/model-versions/get?name=n&version=1").get_json()["model_version"][
            "description"
        ]
        == "v"
    )
    assert (
        c.delete(f"{API}/model-versions/delete", json={"name": "n", "version": "1"}).status_code
        == 200
    )
    assert c.delete(f"{API}/registered-models/delete", json={"name": "n"}).status_code == 200
    err(c.get(f"{API}/registered-models/get?name=n"), 404, "RESOURCE_DOES_NOT_EXIST")


def test_logged_model_endpoints(c):
    exp = c.post(f"{API}/experiments/create", json={"name": "e"}).get_json()["experiment_id"]
    r = c.post(f"{API}/logged-models", json={"experiment_id": exp, "name": "clf",
                                            "params": [{"key": "alpha", "value": "0.5"}]})  # fmt: skip
    info = r.get_json()["model"]["info"]
    model_id = info["model_id"]
    assert info["status"] == "LOGGED_MODEL_PENDING"
    # MLflow's layout, under the server's own artifact root (<store>/artifacts)
    assert info["artifact_uri"] == f"mlflow-artifacts:/{exp}/models/{model_id}/artifacts"
    assert r.get_json()["model"]["data"]["params"] == [{"key": "alpha", "value": "0.5"}]
    done = c.patch(f"{API}/logged-models/{model_id}", json={"status": "LOGGED_MODEL_READY"})
    assert done.get_json()["model"]["info"]["status"] == "LOGGED_MODEL_READY"
    assert (
        c.patch(
            f"{API}/logged-models/{model_id}/tags", json={"tags": [{"key": "k", "value": "v"}]}
        ).status_code
        == 200
    )
    got = c.get(f"{API}/logged-models/{model_id}").get_json()["model"]["info"]
    assert got["tags"] == [{"key": "k", "value": "v"}]
    assert c.delete(f"{API}/logged-models/{model_id}/tags/k").status_code == 200
    err(c.delete(f"{API}/logged-models/{model_id}/tags/k"), 404, "RESOURCE_DOES_NOT_EXIST")
    found = c.post(f"{API}/logged-models/search", json={"experiment_ids": [exp]}).get_json()
    assert [m["info"]["model_id"] for m in found["models"]] == [model_id]
    err(c.get(f"{API}/logged-models/m-{'0' * 32}"), 404, "RESOURCE_DOES_NOT_EXIST")
    err(c.get(f"{API}/logged-models/bad"), 400, "INVALID_PARAMETER_VALUE")
    err(
        c.post(f"{API}/logged-models", json={"experiment_id": "999"}),
        404,
        "RESOURCE_DOES_NOT_EXIST",
    )
    err(
        c.patch(f"{API}/logged-models/{model_id}", json={"status": "WEIRD"}),
        400,
        "INVALID_PARAMETER_VALUE",
    )
    assert c.delete(f"{API}/logged-models/{model_id}").status_code == 200
    err(c.get(f"{API}/logged-models/{model_id}"), 404, "RESOURCE_DOES_NOT_EXIST")


def test_evtrack_client_over_http(tmp_path):
    """evtrack's own client with an http:// tracking URI: log_model, registry, models:/ loads."""
    import numpy as np
    from models_helpers import wine_data, wine_model

    import evtrack
    from evtrack.server.testing import ServerProcess

    srv = ServerProcess(str(tmp_path / "store"))
    srv.start()
    try:
        evtrack.set_tracking_uri(srv.url)
        x, _ = wine_data()
        with evtrack.start_run() as run:
            info = evtrack.sklearn.log_model(wine_model(), name="model", input_example=x.head(2))
        client = evtrack.MlflowClient()
        logged = client.get_logged_model(info.model_id)
        assert logged.status == "READY" and logged.artifact_location.startswith("mlflow-artifacts:")
        evtrack.register_model(info.model_uri, "wine")
        client.set_registered_model_alias("wine", "prod", 1)
        want = wine_model().predict(x.head(5))
        for uri in (info.model_uri, "models:/wine@prod", f"runs:/{run.info.run_id}/model"):
            assert np.allclose(evtrack.pyfunc.load_model(uri).predict(x.head(5)), want), uri
        assert client.get_registered_model("wine").aliases == {"prod": "1"}
        client.log_metric(run.info.run_id, "rmse", 0.5, step=2, model_id=info.model_id,
                          dataset_name="wine", dataset_digest="d1")  # fmt: skip
        (point,) = client.get_logged_model(info.model_id).metrics
        assert (point.key, point.value, point.step, point.dataset_name) == ("rmse", 0.5, 2, "wine")
        assert point.run_id == run.info.run_id
        assert [m.name for m in client.search_registered_models("name = 'wine'")] == ["wine"]
    finally:
        srv.stop()


def test_metrics_linked_to_a_logged_model_over_rest(c):
    """log-metric / log-batch with MLflow 3's ``model_id`` show on ``logged-models/get``."""
    exp = c.post(f"{API}/experiments/create", json={"name": "e"}).get_json()["experiment_id"]
    run_id = c.post(f"{API}/runs/create", json={"experiment_id": exp}).get_json()["run"]["info"][
        "run_id"
    ]
    mid = c.post(f"{API}/logged-models", json={"experiment_id": exp}).get_json()["model"]["info"][
        "model_id"
    ]
    point = {"key": "acc", "value": 0.75, "timestamp": 5, "step": 1, "model_id": mid,
             "dataset_name": "wine", "dataset_digest": "d1"}  # fmt: skip
    assert c.post(f"{API}/runs/log-metric", json={"run_id": run_id, **point}).status_code == 200
    batch = [{"key": "auc", "value": "NaN", "timestamp": 6, "step": 2, "model_id": mid},
             {"key": "loss", "value": 1.0, "timestamp": 6, "step": 2}]  # fmt: skip
    assert (
        c.post(f"{API}/runs/log-batch", json={"run_id": run_id, "metrics": batch}).status_code
        == 200
    )
    got = c.get(f"{API}/logged-models/{mid}").get_json()["model"]["data"]["metrics"]
    assert sorted(got, key=lambda m: m["key"]) == [
        {"key": "acc", "value": 0.75, "timestamp": 5, "step": 1, "model_id": mid,
         "dataset_name": "wine", "dataset_digest": "d1", "run_id": run_id},
        {"key": "auc", "value": "NaN", "timestamp": 6, "step": 2, "model_id": mid,
         "run_id": run_id},
    ]  # fmt: skip
    run = c.get(f"{API}/runs/get", query_string={"run_id": run_id}).get_json()["run"]
    assert {m["key"] for m in run["data"]["metrics"]} == {"acc", "auc", "loss"}
    unknown = {**point, "model_id": "m-" + "0" * 32}
    err(c.post(f"{API}/runs/log-metric", json={"run_id": run_id, **unknown}), 404,
        "RESOURCE_DOES_NOT_EXIST")  # fmt: skip


def test_searches_order_and_page_over_rest(c):
    """order_by (repeated query parameter / OrderBy messages) and next_page_token."""
    for name in ("b", "a", "c"):
        assert c.post(f"{API}/registered-models/create", json={"name": name}).status_code == 200
    url = f"{API}/registered-models/search"
    query = {"max_results": 2, "order_by": "name DESC"}
    first = c.get(url, query_string=query).get_json()
    assert [m["name"] for m in first["registered_models"]] == ["c", "b"]
    second = c.get(url, query_string={**query, "page_token": first["next_page_token"]}).get_json()
    assert [m["name"] for m in second["registered_models"]] == ["a"]
    assert "next_page_token" not in second
    err(c.get(f"{API}/registered-models/search?order_by=colour"), 400, "INVALID_PARAMETER_VALUE")
    err(c.get(f"{API}/model-versions/search?page_token=bad"), 400, "INVALID_PARAMETER_VALUE")

    exp = c.post(f"{API}/experiments/create", json={"name": "e"}).get_json()["experiment_id"]
    for name in ("y", "x", "z"):
        c.post(f"{API}/logged-models", json={"experiment_id": exp, "name": name})
    body = {"experiment_ids": [exp], "max_results": 2,
            "order_by": [{"field_name": "name", "ascending": True}]}  # fmt: skip
    one = c.post(f"{API}/logged-models/search", json=body).get_json()
    assert [m["info"]["name"] for m in one["models"]] == ["x", "y"]
    two = c.post(
        f"{API}/logged-models/search", json={**body, "page_token": one["next_page_token"]}
    ).get_json()
    assert [m["info"]["name"] for m in two["models"]] == ["z"] and "next_page_token" not in two
