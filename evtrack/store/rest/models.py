"""Logged models and the registry through an evtrack (or MLflow) tracking server's REST
API: the same methods as :class:`evtrack.store.log.models.ModelStore`, for clients
whose tracking URI is ``http(s)://``. A logged model's files go through the server's
``mlflow-artifacts`` proxy to the location the server chose."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from evtrack.entities import Metric
from evtrack.models.entities import LoggedModel, ModelVersion, RegisteredModel
from evtrack.store.base import PagedList

if TYPE_CHECKING:  # pragma: no cover
    from evtrack.store.rest.store import RestStore

__all__ = ["RestModelStore"]


def _kv(d: dict[str, str] | None) -> list[dict[str, str]]:
    return [{"key": k, "value": str(v)} for k, v in (d or {}).items()]


def _search_query(filter_string, max_results, order_by, page_token) -> dict[str, Any]:
    query: dict[str, Any] = {"max_results": max_results}
    if filter_string:
        query["filter"] = filter_string
    if order_by:
        query["order_by"] = list(order_by)  # repeated query parameter
    if page_token:
        query["page_token"] = page_token
    return query


class RestModelStore:
    def __init__(self, client: RestStore) -> None:
        self.client = client
        self._call = client._call

    # -- logged models -----------------------------------------------------------------

    def create_logged_model(
        self, experiment_id: str, name: str | None = None, source_run_id: str | None = None,
        tags: dict[str, str] | None = None, params: dict[str, str] | None = None,
        model_type: str | None = None, artifact_location: str | None = None,
    ) -> LoggedModel:  # fmt: skip
        # the server picks the artifact location; `artifact_location` is ignored here
        body = {"experiment_id": str(experiment_id), "name": name, "source_run_id": source_run_id,
                "model_type": model_type, "tags": _kv(tags), "params": _kv(params)}  # fmt: skip
        out = self._call("POST", "/logged-models", {k: v for k, v in body.items() if v is not None})
        return LoggedModel.from_json(out["model"])

    def upload(self, model: LoggedModel, local_dir: str) -> None:
        """Put a saved model folder at the logged model's (proxied) artifact location."""
        from evtrack.store.rest.artifacts import ProxiedArtifacts

        ProxiedArtifacts(self.client.http, model.artifact_location).upload_dir(local_dir, None)

    def get_logged_model(self, model_id: str, allow_deleted: bool = False) -> LoggedModel:
        return LoggedModel.from_json(self._call("GET", f"/logged-models/{model_id}")["model"])

    def search_logged_models(self, experiment_ids, filter_string=None, max_results=None,
                             order_by=None, page_token=None) -> PagedList[LoggedModel]:  # fmt: skip
        body: dict[str, Any] = {"experiment_ids": [str(e) for e in experiment_ids]}
        if filter_string:
            body["filter"] = filter_string
        if max_results:
            body["max_results"] = max_results
        if order_by:
            body["order_by"] = list(order_by)
        if page_token:
            body["page_token"] = page_token
        out = self._call("POST", "/logged-models/search", body)
        models = [LoggedModel.from_json(m) for m in out.get("models", [])]
        return PagedList(models, out.get("next_page_token") or None)

    def log_model_metrics(self, run_id: str | None, metrics: Sequence[Metric]) -> None:
        """Points linked to logged models go in one direct ``log-batch`` (not through the
        buffered sink), carrying ``model_id``/``dataset_*`` as MLflow 3's client sends them."""
        self.client.writer.flush()  # keep this run's earlier points ahead of these
        from evtrack.jsonfloat import float_to_json

        points = [{**m.to_dictionary(), "value": float_to_json(m.value)} for m in metrics]
        body = {"run_id": run_id, "metrics": points}
        self._call("POST", "/runs/log-batch", body)

    def finalize_logged_model(self, model_id: str, status: str) -> LoggedModel:
        status = {"READY": "LOGGED_MODEL_READY", "FAILED": "LOGGED_MODEL_UPLOAD_FAILED"}.get(
            status, status
        )
        out = self._call(
            "PATCH", f"/logged-models/{model_id}", {"model_id": model_id, "status": status}
        )
        return LoggedModel.from_json(out["model"])

    def set_logged_model_tags(self, model_id: str, tags: dict[str, str]) -> None:
        self._call("PATCH", f"/logged-models/{model_id}/tags", {"tags": _kv(tags)})

    def delete_logged_model_tag(self, model_id: str, key: str) -> None:
        import urllib.parse

        self._call("DELETE", f"/logged-models/{model_id}/tags/{urllib.parse.quote(key)}")

    def log_model_params(self, model_id: str, params: dict[str, str]) -> None:
        self._call("POST", f"/logged-models/{model_id}/params", {"params": _kv(params)})

    def delete_logged_model(self, model_id: str) -> None:
        self._call("DELETE", f"/logged-models/{model_id}")

    # -- registry -------------------------------------------------------------------------

    def create_registered_model(self, name, tags=None, description=None) -> RegisteredModel:
        body = {"name": name, "tags": _kv(tags)}
        if description:
            body["description"] = description
        out = self._call("POST", "/registered-models/create", body)
        return RegisteredModel.from_json(out["registered_model"])

    def get_registered_model(self, name: str) -> RegisteredModel:
        out = self._call("GET", "/registered-models/get", {"name": name})
        return RegisteredModel.from_json(out["registered_model"])

    def search_registered_models(
        self, filter_string=None, max_results=None, order_by=None, page_token=None
    ) -> PagedList[RegisteredModel]:
        query = _search_query(filter_string, max_results or 1000, order_by, page_token)
        out = self._call("GET", "/registered-models/search", query)
        models = [RegisteredModel.from_json(m) for m in out.get("registered_models", [])]
        return PagedList(models, out.get("next_page_token") or None)

    def update_registered_model(self, name, description) -> RegisteredModel:
        out = self._call(
            "PATCH", "/registered-models/update", {"name": name, "description": description or ""}
        )
        return RegisteredModel.from_json(out["registered_model"])

    def rename_registered_model(self, name, new_name) -> RegisteredModel:
        out = self._call("POST", "/registered-models/rename", {"name": name, "new_name": new_name})
        return RegisteredModel.from_json(out["registered_model"])

    def delete_registered_model(self, name) -> None:
        self._call("DELETE", "/registered-models/delete", {"name": name})

    def set_registered_model_tag(self, name, key, value) -> None:
        self._call("POST", "/registered-models/set-tag", {"name": name, "key": key, "value": value})

    def delete_registered_model_tag(self, name, key) -> None:
        self._call("DELETE", "/registered-models/delete-tag", {"name": name, "key": key})

    def create_model_version(self, name, source, run_id=None, tags=None, run_link=None,
                             description=None, model_id=None) -> ModelVersion:  # fmt: skip
        body = {"name": name, "source": source, "run_id": run_id, "tags": _kv(tags),
                "run_link": run_link, "description": description, "model_id": model_id}  # fmt: skip
        out = self._call(
            "POST", "/model-versions/create", {k: v for k, v in body.items() if v is not None}
        )
        return ModelVersion.from_json(out["model_version"])

    def get_model_version(self, name, version) -> ModelVersion:
        out = self._call("GET", "/model-versions/get", {"name": name, "version": str(version)})
        return ModelVersion.from_json(out["model_version"])

    def search_model_versions(
        self, filter_string=None, max_results=None, order_by=None, page_token=None
    ) -> PagedList[ModelVersion]:
        query = _search_query(filter_string, max_results or 10_000, order_by, page_token)
        out = self._call("GET", "/model-versions/search", query)
        versions = [ModelVersion.from_json(v) for v in out.get("model_versions", [])]
        return PagedList(versions, out.get("next_page_token") or None)

    def update_model_version(self, name, version, description) -> ModelVersion:
        body = {"name": name, "version": str(version), "description": description or ""}
        return ModelVersion.from_json(
            self._call("PATCH", "/model-versions/update", body)["model_version"]
        )

    def delete_model_version(self, name, version) -> None:
        self._call("DELETE", "/model-versions/delete", {"name": name, "version": str(version)})

    def set_model_version_tag(self, name, version, key, value) -> None:
        body = {"name": name, "version": str(version), "key": key, "value": value}
        self._call("POST", "/model-versions/set-tag", body)

    def delete_model_version_tag(self, name, version, key) -> None:
        body = {"name": name, "version": str(version), "key": key}
        self._call("DELETE", "/model-versions/delete-tag", body)

    def set_registered_model_alias(self, name, alias, version) -> None:
        body = {"name": name, "alias": alias, "version": str(version)}
        self._call("POST", "/registered-models/alias", body)

    def delete_registered_model_alias(self, name, alias) -> None:
        self._call("DELETE", "/registered-models/alias", {"name": name, "alias": alias})

    def get_model_version_by_alias(self, name, alias) -> ModelVersion:
        out = self._call("GET", "/registered-models/alias", {"name": name, "alias": alias})
        return ModelVersion.from_json(out["model_version"])
