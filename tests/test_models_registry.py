"""Logged models and the model registry: events folded into views, URIs that load."""

from __future__ import annotations

import json

import numpy as np
import pytest
from models_helpers import wine_data, wine_model

import evtrack
from evtrack.errors import InvalidParameterValue, ResourceAlreadyExists, ResourceDoesNotExist


@pytest.fixture
def client(store_uri):
    evtrack.set_tracking_uri(store_uri)
    return evtrack.MlflowClient(store_uri)


def _log(name="model"):
    x, _ = wine_data()
    with evtrack.start_run() as run:
        info = evtrack.sklearn.log_model(wine_model(), name=name, input_example=x.head(2))
    return run, info


def test_registry_lifecycle_and_uris(client):
    run, info = _log()
    x, _ = wine_data()
    want = wine_model().predict(x.head(4))

    v1 = evtrack.register_model(info.model_uri, "wine")
    v2 = evtrack.register_model(f"runs:/{run.info.run_id}/model", "wine")
    assert (v1.version, v2.version) == ("1", "2")
    assert v1.model_id == info.model_id and v1.run_id == run.info.run_id
    assert v2.run_id == run.info.run_id and v2.model_id is None

    client.set_registered_model_alias("wine", "champion", 1)
    client.set_registered_model_tag("wine", "team", "ml")
    client.set_model_version_tag("wine", 2, "validated", "yes")
    client.update_registered_model("wine", "ElasticNet on wine quality")
    client.update_model_version("wine", 1, "first")

    model = client.get_registered_model("wine")
    assert model.aliases == {"champion": "1"} and model.tags == {"team": "ml"}
    assert model.description == "ElasticNet on wine quality"
    assert [v.version for v in model.latest_versions] == ["2"]
    assert client.get_model_version_by_alias("wine", "champion").version == "1"
    assert client.get_model_version("wine", 2).tags == {"validated": "yes"}
    assert client.get_model_version("wine", 1).description == "first"

    for uri in ("models:/wine/1", "models:/wine/2", "models:/wine@champion", "models:/wine/latest",
                info.model_uri):  # fmt: skip
        assert np.allclose(evtrack.pyfunc.load_model(uri).predict(x.head(4)), want), uri

    # the same facts in SQL
    assert evtrack.sql("select name, alias, version from registered_model_aliases").fetchall() == [
        ("wine", "champion", 1)
    ]
    rows = evtrack.sql(
        "select name, version, model_id from model_versions order by version"
    ).fetchall()
    assert rows == [("wine", 1, info.model_id), ("wine", 2, None)]
    logged = evtrack.sql("select model_id, status, source_run_id from logged_models").fetchall()
    assert logged == [(info.model_id, "READY", run.info.run_id)]

    # deletion is an event: the views forget, the log remembers
    client.delete_registered_model_alias("wine", "champion")
    with pytest.raises(ResourceDoesNotExist):
        evtrack.pyfunc.load_model("models:/wine@champion")
    client.delete_model_version("wine", 2)
    assert [v.version for v in client.search_model_versions("name = 'wine'")] == ["1"]
    client.delete_registered_model("wine")
    with pytest.raises(ResourceDoesNotExist):
        client.get_registered_model("wine")
    kinds = evtrack.sql(
        "select kind, count(*) from events where kind in ('registered_model', 'model_version') group by kind order by kind"
    ).fetchall()
    assert kinds == [("model_version", 12), ("registered_model", 7)]  # every change kept
    client.create_registered_model("wine")  # the name is free again, with no versions
    assert client.get_registered_model("wine").latest_versions == []


def test_search_and_filters(client):
    for name in ("alpha", "beta", "alphabet"):
        client.create_registered_model(name, tags={"kind": name[:4]})
    names = lambda models: [m.name for m in models]  # noqa: E731
    assert names(client.search_registered_models("name LIKE 'alpha%'")) == ["alpha", "alphabet"]
    assert names(client.search_registered_models("name = 'beta'")) == ["beta"]
    assert names(client.search_registered_models("tags.kind = 'alph'")) == ["alpha", "alphabet"]
    assert names(client.search_registered_models(max_results=1)) == ["alpha"]
    with pytest.raises(InvalidParameterValue, match="Invalid attribute"):
        client.search_registered_models("owner = 'x'")
    with pytest.raises(InvalidParameterValue, match="Invalid filter"):
        client.search_registered_models("name ~ 'x'")
    # runs:/ sources: a server refuses local paths it may not read (docs/security.md)
    client.create_model_version("beta", "runs:/r1/model", run_id="r1")
    client.create_model_version("beta", "runs:/r2/model", run_id="r2")
    assert [v.version for v in client.search_model_versions("run_id IN ('r1', 'r2')")] == ["2", "1"]
    assert [v.source for v in client.search_model_versions("name = 'beta' AND run_id = 'r1'")] == [
        "runs:/r1/model"
    ]


def test_errors(client):
    client.create_registered_model("m")
    with pytest.raises(ResourceAlreadyExists):
        client.create_registered_model("m")
    with pytest.raises(InvalidParameterValue):
        client.create_registered_model("")
    with pytest.raises(ResourceDoesNotExist):
        client.get_registered_model("nope")
    with pytest.raises(ResourceDoesNotExist):
        client.get_model_version("m", 3)
    with pytest.raises(InvalidParameterValue, match="integer"):
        client.get_model_version("m", "x")
    client.create_model_version("m", "runs:/r/p")
    for alias in ("latest", "v2", "bad alias"):
        with pytest.raises(InvalidParameterValue, match="Invalid alias"):
            client.set_registered_model_alias("m", alias, 1)
    with pytest.raises(ResourceDoesNotExist):
        client.get_logged_model("m-" + "0" * 32)
    with pytest.raises(InvalidParameterValue):
        client.get_logged_model("nope")
    with pytest.raises(InvalidParameterValue, match="stages are not supported"):
        evtrack.pyfunc.load_model("models:/m/Production")


def test_logged_model_entity(client):
    run, info = _log("clf")
    model = client.get_logged_model(info.model_id)
    assert model.name == "clf" and model.status == "READY"
    if client.tracking_uri.startswith("http"):  # the server's proxied model location
        assert model.artifact_location.endswith(f"models/{info.model_id}/artifacts")
    else:  # a local client writes the model into its run's artifacts
        assert model.artifact_location.endswith(f"{run.info.run_id}/artifacts/clf")
    client.set_logged_model_tags(info.model_id, {"stage": "test"})
    client.log_model_params(info.model_id, {"alpha": "0.5"})
    with pytest.raises(InvalidParameterValue, match="immutable"):
        client.log_model_params(info.model_id, {"alpha": "0.7"})
    model = client.get_logged_model(info.model_id)
    assert model.tags == {"stage": "test"} and model.params == {"alpha": "0.5"}
    found = client.search_logged_models([run.info.experiment_id], "name = 'clf'")
    assert [m.model_id for m in found] == [info.model_id]
    assert json.loads(json.dumps(model.to_json()))["info"]["status"] == "LOGGED_MODEL_READY"
    client.delete_logged_model(info.model_id)
    assert client.search_logged_models([run.info.experiment_id]) == []
    with pytest.raises(ResourceDoesNotExist):
        client.get_logged_model(info.model_id)


def test_concurrent_version_numbers_are_distinct(tmp_path):
    """Four processes create 10 versions each of one model: 40 distinct numbers."""
    import subprocess
    import sys

    from helpers import subprocess_env

    store = str(tmp_path / "store")
    evtrack.MlflowClient(store).create_registered_model("shared")
    code = (
        "import evtrack\n"
        "c = evtrack.MlflowClient()\n"
        "for i in range(10):\n"
        "    c.create_model_version('shared', '/p')\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code], env=subprocess_env(store)) for _ in range(4)
    ]
    assert [p.wait(120) for p in procs] == [0, 0, 0, 0]
    versions = sorted(
        int(v.version) for v in evtrack.MlflowClient(store).search_model_versions("name = 'shared'")
    )
    assert versions == list(range(1, 41))


def test_compaction_keeps_every_model_fact(tmp_path):
    """Registry and logged-model events survive compaction: the views read the same from
    the compacted files (full and reduced) as from the segments."""
    from evtrack.store.log.compaction import compact_all
    from evtrack.store.log.model_views import MODEL_VIEWS
    from evtrack.store.log.views import connect, load_events

    store_uri = str(tmp_path / "store")
    evtrack.set_tracking_uri(store_uri)
    client = evtrack.MlflowClient(store_uri)
    run, info = _log()
    client.set_logged_model_tags(info.model_id, {"a": "1"})
    client.set_logged_model_tags(info.model_id, {"a": "2"})
    evtrack.register_model(info.model_uri, "wine")
    evtrack.register_model(info.model_uri, "wine")
    client.set_registered_model_alias("wine", "prod", 1)
    client.set_registered_model_alias("wine", "prod", 2)
    client.set_model_version_tag("wine", 1, "k", "v")
    client.delete_model_version_tag("wine", 1, "k")

    def snapshot(history: bool) -> dict:
        con = connect(load_events(client.store.layout, None, None, history))
        return {v: sorted(map(str, con.sql(f"select * from {v}").fetchall())) for v in MODEL_VIEWS}

    before = snapshot(True)
    assert "('wine', 'prod', 2)" in before["registered_model_aliases"]
    compact_all(client.store.layout)
    assert snapshot(True) == before
    assert snapshot(False) == before  # the reduced files hold every fact's winner


def test_models_on_a_store_without_a_registry_is_a_clear_error():
    # A client may be given any TrackingStore; one that is neither the event log nor the
    # REST store keeps no models, and saying so beats an AttributeError deep inside.
    from evtrack.errors import StoreError

    class OtherStore:  # stands for a third-party TrackingStore
        uri = "other://store"

    client = evtrack.MlflowClient(store=OtherStore())
    with pytest.raises(StoreError, match="no logged models or registry"):
        client.search_registered_models()


def test_metrics_linked_to_a_logged_model(client):
    """MLflow 3: a metric point with ``model_id`` goes to the run and to the logged model."""
    from evtrack.entities import Metric

    with evtrack.start_run() as run:
        model = client.create_logged_model("0", name="clf", source_run_id=run.info.run_id)
        mid, rid = model.model_id, run.info.run_id
        evtrack.log_metric("acc", 0.9, step=1, model_id=mid)
        evtrack.log_metrics({"f1": 0.5, "auc": float("nan")}, step=2, model_id=mid)
        client.log_metric(rid, "rmse", 1.5, timestamp=7, step=3, model_id=mid,
                          dataset_name="wine", dataset_digest="d1")  # fmt: skip
        client.log_batch(
            rid, metrics=[Metric("mae", 0.25, 8, 4, model_id=mid), Metric("loss", 2.0, 8)]
        )
        evtrack.log_metric("unlinked", 3.0)

    got = client.get_logged_model(mid).metrics
    assert {m.key for m in got} == {"acc", "f1", "auc", "rmse", "mae"}
    assert all(m.model_id == mid and m.run_id == rid for m in got)
    rmse = next(m for m in got if m.key == "rmse")
    assert (rmse.value, rmse.timestamp, rmse.step) == (1.5, 7, 3)
    assert (rmse.dataset_name, rmse.dataset_digest) == ("wine", "d1")
    assert np.isnan(next(m.value for m in got if m.key == "auc"))
    # the run has every point, linked or not
    assert set(client.get_run(rid).data.metrics) == {
        "acc", "f1", "auc", "rmse", "mae", "loss", "unlinked"
    }  # fmt: skip
    # in SQL and in the REST JSON
    rows = evtrack.sql(
        "select key, value, step, dataset_name from logged_model_metrics "
        "where key in ('acc', 'rmse', 'mae') order by key"
    ).fetchall()
    assert rows == [("acc", 0.9, 1, None), ("mae", 0.25, 4, None), ("rmse", 1.5, 3, "wine")]
    body = client.get_logged_model(mid).to_json()["data"]["metrics"]
    assert {"key": "mae", "value": 0.25, "timestamp": 8, "step": 4, "model_id": mid,
            "run_id": rid} in body  # fmt: skip
    # logging a point to an unknown model fails and logs nothing to the run
    with pytest.raises(ResourceDoesNotExist):
        client.log_metric(rid, "ghost", 1.0, model_id="m-" + "0" * 32)
    assert "ghost" not in client.get_run(rid).data.metrics


def test_searches_order_and_page(client):
    """order_by and page tokens of the three searches, as MLflow's client takes them."""
    for name in ("b", "c", "a"):
        client.create_registered_model(name)
    client.update_registered_model("b", "touched last")
    with evtrack.start_run() as src:
        pass
    for _ in range(3):
        client.create_model_version("a", f"runs:/{src.info.run_id}/model")

    first = client.search_registered_models(max_results=2)
    assert [m.name for m in first] == ["a", "b"] and first.token
    rest = client.search_registered_models(max_results=2, page_token=first.token)
    assert [m.name for m in rest] == ["c"] and rest.token is None
    by_desc = client.search_registered_models(order_by=["name DESC"])
    assert [m.name for m in by_desc] == ["c", "b", "a"]
    newest = client.search_registered_models(order_by=["last_updated_timestamp DESC"])
    assert newest[-1].last_updated_timestamp <= newest[0].last_updated_timestamp
    with pytest.raises(InvalidParameterValue, match="order_by"):
        client.search_registered_models(order_by=["colour"])

    versions = client.search_model_versions("name = 'a'", max_results=2)
    assert [v.version for v in versions] == ["3", "2"] and versions.token
    tail = client.search_model_versions("name = 'a'", max_results=2, page_token=versions.token)
    assert [v.version for v in tail] == ["1"] and tail.token is None
    up = client.search_model_versions("name = 'a'", order_by=["version_number ASC"])
    assert [v.version for v in up] == ["1", "2", "3"]

    with evtrack.start_run() as run:
        ids = []
        for name, acc in (("m1", 0.5), ("m2", 0.9), ("m3", 0.7)):
            mid = client.create_logged_model("0", name=name, source_run_id=run.info.run_id).model_id
            client.log_metric(run.info.run_id, "acc", acc, model_id=mid)
            ids.append(mid)
        client.create_logged_model("0", name="m4")  # no metric: last in either direction
    best = client.search_logged_models(
        ["0"], order_by=[{"field_name": "metrics.acc", "ascending": False}]
    )
    assert [m.name for m in best] == ["m2", "m3", "m1", "m4"]
    page1 = client.search_logged_models(["0"], max_results=3, order_by=[{"field_name": "name"}])
    assert [m.name for m in page1] == ["m1", "m2", "m3"] and page1.token
    page2 = client.search_logged_models(
        ["0"], max_results=3, order_by=[{"field_name": "name"}], page_token=page1.token
    )
    assert [m.name for m in page2] == ["m4"] and page2.token is None
    with pytest.raises(InvalidParameterValue):
        client.search_logged_models(["0"], order_by=[{"field_name": "colour"}])
