"""Fluent registry calls: ``evtrack.register_model(model_uri, name)`` as MLflow's."""

from __future__ import annotations

from typing import Any

from evtrack.errors import ResourceAlreadyExists
from evtrack.models.entities import ModelVersion

__all__ = ["register_model"]


def register_model(
    model_uri: str, name: str, tags: dict[str, Any] | None = None, client: Any = None, **_: Any
) -> ModelVersion:
    """Create the registered model if needed and a new version from ``model_uri``
    (``runs:/…``, ``models:/m-…``, a path or URL)."""
    from evtrack.models.uri import parse_runs_uri
    from evtrack.tracking.fluent import _get_client

    client = client or _get_client()
    run_id = parse_runs_uri(model_uri)[0] if model_uri.startswith("runs:") else None
    model_id = None
    rest = model_uri[len("models:/") :] if model_uri.startswith("models:/") else ""
    if rest.startswith("m-"):
        model_id = rest.strip("/")
        run_id = client.get_logged_model(model_id).source_run_id
    try:  # after the URI checks, so a bad URI leaves no empty registered model behind
        client.create_registered_model(name)
    except ResourceAlreadyExists:
        pass
    return client.create_model_version(name, model_uri, run_id, tags, model_id=model_id)
