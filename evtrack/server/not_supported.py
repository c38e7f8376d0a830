"""MLflow 3 endpoints outside this server's scope, and how each is answered.

The logged-models API (``/api/2.0/mlflow/logged-models…``), traces, assessments,
datasets, scorers, prompts, gateway and the model registry are not implemented:
their routes answer MLflow's ``ENDPOINT_NOT_FOUND`` (404), as an older
``mlflow server`` does. One exception: ``logged-models/search`` answers an empty page,
which is the truth on a server that never creates logged models, and is what lets the
stock client resolve ``runs:/<run_id>/<path>`` URIs (it first looks for a logged model
of that name). See ``docs/server.md``.
"""

from __future__ import annotations

from flask import Flask, Response

from evtrack.server.incoming import message
from evtrack.server.mlflow_api import ok

__all__ = ["register"]


def search_logged_models() -> Response:
    message(
        {
            "experiment_ids": ("list", "string"),
            "filter": "string",
            "max_results": "int32",
            "page_token": "string",
        }
    )
    return ok({"models": []})


def register(app: Flask) -> None:
    for prefix in ("/api/2.0", "/ajax-api/2.0"):
        path = f"{prefix}/mlflow/logged-models/search"
        app.add_url_rule(path, path, search_logged_models, methods=["POST"])
