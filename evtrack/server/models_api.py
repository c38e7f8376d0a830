"""MLflow 3's logged-models API and the model registry API over the store's events.

``/api/2.0/mlflow/logged-models…`` (create, get, finalize, search, delete, tags,
params), ``/mlflow/runs/outputs``, ``/mlflow/registered-models/…`` and
``/mlflow/model-versions/…`` with MLflow's field names, defaults and error codes, so
``mlflow.sklearn.log_model(model, name="model")`` and ``mlflow.register_model`` of the
stock client work against ``evtrack server``. A logged model's files go through the
``mlflow-artifacts`` proxy to ``<experiment artifacts>/models/<model_id>/artifacts``.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Response

from evtrack.errors import InvalidParameterValue
from evtrack.server.incoming import backend, message
from evtrack.server.mlflow_api import ok
from evtrack.server.protocol import KEY_VALUES

__all__ = ["register"]

_ROUTES: list[tuple[str, list[str], Any]] = []


def _route(path: str, *methods: str):
    def decorate(fn):
        _ROUTES.append((path, list(methods), fn))
        return fn

    return decorate


def _models():
    return backend().client._models


def _pairs(items: list[dict[str, str]] | None) -> dict[str, str]:
    return {i["key"]: i.get("value", "") for i in items or []}


def _logged(model) -> dict[str, Any]:
    return model.to_json(backend().public_uri(model.artifact_location))


def _public_source(source: str) -> str:
    b = backend()
    return b.public_uri(source) if "://" in source else source


def _version(mv) -> dict[str, Any]:
    body = mv.to_json()
    body["source"] = _public_source(mv.source)
    return body


#: MLflow 3's SearchLoggedModels.OrderBy
_ORDER_BY = {"field_name": "string", "ascending": "bool", "dataset_name": "string",
             "dataset_digest": "string"}  # fmt: skip
_SEARCH: dict[str, Any] = {
    "filter": "string",
    "max_results": "int64",
    "order_by": ("list", "string"),
    "page_token": "string",
}


def _paged(body: dict[str, Any], found: Any) -> dict[str, Any]:
    token = getattr(found, "token", None)
    return {**body, "next_page_token": token} if token else body


def _max_results(m: dict[str, Any], default: int, limit: int) -> int:
    n = m.get("max_results", default)
    if not 1 <= n <= limit:
        raise InvalidParameterValue(f"Invalid value {n} for parameter 'max_results': 1 to {limit}.")
    return n


# -- logged models ----------------------------------------------------------------------


@_route("/mlflow/logged-models", "POST")
def create_logged_model() -> Response:
    m = message(
        {
            "experiment_id": "string",
            "name": "string",
            "model_type": "string",
            "source_run_id": "string",
            "params": KEY_VALUES,
            "tags": KEY_VALUES,
        },
        ("experiment_id",),
    )
    model = _models().create_logged_model(
        m["experiment_id"],
        m.get("name"),
        m.get("source_run_id"),
        _pairs(m.get("tags")),
        _pairs(m.get("params")),
        m.get("model_type"),
    )
    return ok({"model": _logged(model)})


@_route("/mlflow/logged-models/<model_id>", "GET")
def get_logged_model(model_id: str) -> Response:
    return ok({"model": _logged(_models().get_logged_model(model_id))})


@_route("/mlflow/logged-models/<model_id>", "PATCH")
def finalize_logged_model(model_id: str) -> Response:
    m = message({"model_id": "string", "status": "string"}, ("status",))
    return ok({"model": _logged(_models().finalize_logged_model(model_id, m["status"]))})


@_route("/mlflow/logged-models/<model_id>", "DELETE")
def delete_logged_model(model_id: str) -> Response:
    _models().delete_logged_model(model_id)
    return ok()


@_route("/mlflow/logged-models/search", "POST")
def search_logged_models() -> Response:
    m = message(
        {
            "experiment_ids": ("list", "string"),
            "filter": "string",
            "max_results": "int32",
            "order_by": ("list", ("message", _ORDER_BY)),
            "page_token": "string",
        }
    )
    found = _models().search_logged_models(
        m.get("experiment_ids") or [], m.get("filter"), _max_results(m, 100, 50_000),
        m.get("order_by"), m.get("page_token"),
    )  # fmt: skip
    return ok(_paged({"models": [_logged(x) for x in found]}, found))


@_route("/mlflow/logged-models/<model_id>/tags", "PATCH")
def set_logged_model_tags(model_id: str) -> Response:
    m = message({"tags": KEY_VALUES})
    _models().set_logged_model_tags(model_id, _pairs(m.get("tags")))
    return ok()


@_route("/mlflow/logged-models/<model_id>/tags/<path:key>", "DELETE")
def delete_logged_model_tag(model_id: str, key: str) -> Response:
    _models().delete_logged_model_tag(model_id, key)
    return ok()


@_route("/mlflow/logged-models/<model_id>/params", "POST")
def log_logged_model_params(model_id: str) -> Response:
    m = message({"params": KEY_VALUES})
    _models().log_model_params(model_id, _pairs(m.get("params")))
    return ok()


@_route("/mlflow/runs/outputs", "POST")
def log_outputs() -> Response:
    m = message(
        {
            "run_id": "string",
            "models": ("list", ("message", {"model_id": "string", "step": "int64"})),
        },
        ("run_id",),
    )
    client = backend().client
    client.get_run(m["run_id"])
    for out in m.get("models") or []:
        _models().get_logged_model(out["model_id"])  # must exist
    return ok()


# -- registered models --------------------------------------------------------------------


@_route("/mlflow/registered-models/create", "POST")
def create_registered_model() -> Response:
    m = message({"name": "string", "tags": KEY_VALUES, "description": "string"}, ("name",))
    model = _models().create_registered_model(
        m["name"], _pairs(m.get("tags")), m.get("description")
    )
    return ok({"registered_model": model.to_json()})


@_route("/mlflow/registered-models/get", "GET")
def get_registered_model() -> Response:
    m = message({"name": "string"}, ("name",))
    return ok({"registered_model": _models().get_registered_model(m["name"]).to_json()})


@_route("/mlflow/registered-models/rename", "POST")
def rename_registered_model() -> Response:
    m = message({"name": "string", "new_name": "string"}, ("name", "new_name"))
    model = _models().rename_registered_model(m["name"], m["new_name"])
    return ok({"registered_model": model.to_json()})


@_route("/mlflow/registered-models/update", "PATCH")
def update_registered_model() -> Response:
    m = message({"name": "string", "description": "string"}, ("name",))
    model = _models().update_registered_model(m["name"], m.get("description"))
    return ok({"registered_model": model.to_json()})


@_route("/mlflow/registered-models/delete", "DELETE")
def delete_registered_model() -> Response:
    m = message({"name": "string"}, ("name",))
    _models().delete_registered_model(m["name"])
    return ok()


@_route("/mlflow/registered-models/search", "GET")
def search_registered_models() -> Response:
    m = message(_SEARCH)
    found = _models().search_registered_models(
        m.get("filter"), _max_results(m, 100, 1000), m.get("order_by"), m.get("page_token")
    )
    return ok(_paged({"registered_models": [x.to_json() for x in found]} if found else {}, found))


@_route("/mlflow/registered-models/set-tag", "POST")
def set_registered_model_tag() -> Response:
    m = message({"name": "string", "key": "string", "value": "string"}, ("name", "key"))
    _models().set_registered_model_tag(m["name"], m["key"], m.get("value", ""))
    return ok()


@_route("/mlflow/registered-models/delete-tag", "DELETE")
def delete_registered_model_tag() -> Response:
    m = message({"name": "string", "key": "string"}, ("name", "key"))
    _models().delete_registered_model_tag(m["name"], m["key"])
    return ok()


@_route("/mlflow/registered-models/alias", "POST")
def set_alias() -> Response:
    m = message(
        {"name": "string", "alias": "string", "version": "string"}, ("name", "alias", "version")
    )
    _models().set_registered_model_alias(m["name"], m["alias"], m["version"])
    return ok()


@_route("/mlflow/registered-models/alias", "DELETE")
def delete_alias() -> Response:
    m = message({"name": "string", "alias": "string"}, ("name", "alias"))
    _models().delete_registered_model_alias(m["name"], m["alias"])
    return ok()


@_route("/mlflow/registered-models/alias", "GET")
def get_by_alias() -> Response:
    m = message({"name": "string", "alias": "string"}, ("name", "alias"))
    return ok(
        {"model_version": _version(_models().get_model_version_by_alias(m["name"], m["alias"]))}
    )


@_route("/mlflow/registered-models/get-latest-versions", "POST", "GET")
def get_latest_versions() -> Response:
    m = message({"name": "string", "stages": ("list", "string")}, ("name",))
    model = _models().get_registered_model(m["name"])
    return ok({"model_versions": [_version(v) for v in model.latest_versions]})


# -- model versions ---------------------------------------------------------------------


@_route("/mlflow/model-versions/create", "POST")
def create_model_version() -> Response:
    m = message(
        {
            "name": "string",
            "source": "string",
            "run_id": "string",
            "tags": KEY_VALUES,
            "run_link": "string",
            "description": "string",
            "model_id": "string",
        },
        ("name", "source"),
    )
    source = backend().stored_source(m["source"])
    mv = _models().create_model_version(
        m["name"], source, m.get("run_id"), _pairs(m.get("tags")), m.get("run_link"),
        m.get("description"), m.get("model_id"),
    )  # fmt: skip
    return ok({"model_version": _version(mv)})


_NAME_VERSION = {"name": "string", "version": "string"}


@_route("/mlflow/model-versions/get", "GET")
def get_model_version() -> Response:
    m = message(_NAME_VERSION, ("name", "version"))
    return ok({"model_version": _version(_models().get_model_version(m["name"], m["version"]))})


@_route("/mlflow/model-versions/update", "PATCH")
def update_model_version() -> Response:
    m = message({**_NAME_VERSION, "description": "string"}, ("name", "version"))
    mv = _models().update_model_version(m["name"], m["version"], m.get("description"))
    return ok({"model_version": _version(mv)})


@_route("/mlflow/model-versions/delete", "DELETE")
def delete_model_version() -> Response:
    m = message(_NAME_VERSION, ("name", "version"))
    _models().delete_model_version(m["name"], m["version"])
    return ok()


@_route("/mlflow/model-versions/search", "GET")
def search_model_versions() -> Response:
    m = message(_SEARCH)
    found = _models().search_model_versions(
        m.get("filter"), _max_results(m, 10_000, 200_000), m.get("order_by"), m.get("page_token")
    )
    return ok(_paged({"model_versions": [_version(v) for v in found]} if found else {}, found))


@_route("/mlflow/model-versions/get-download-uri", "GET")
def get_download_uri() -> Response:
    m = message(_NAME_VERSION, ("name", "version"))
    client = backend().client
    uri = client.get_model_version_download_uri(m["name"], m["version"])
    return ok({"artifact_uri": _public_source(uri)})


@_route("/mlflow/model-versions/set-tag", "POST")
def set_model_version_tag() -> Response:
    m = message({**_NAME_VERSION, "key": "string", "value": "string"}, ("name", "version", "key"))
    _models().set_model_version_tag(m["name"], m["version"], m["key"], m.get("value", ""))
    return ok()


@_route("/mlflow/model-versions/delete-tag", "DELETE")
def delete_model_version_tag() -> Response:
    m = message({**_NAME_VERSION, "key": "string"}, ("name", "version", "key"))
    _models().delete_model_version_tag(m["name"], m["version"], m["key"])
    return ok()


def register(app: Flask) -> None:
    for path, methods, fn in _ROUTES:
        for prefix in ("/api/2.0", "/ajax-api/2.0"):
            name = f"models{prefix}{path}:{','.join(methods)}"
            app.add_url_rule(prefix + path, endpoint=name, view_func=fn, methods=methods)
