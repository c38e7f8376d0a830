"""MLflow 3 endpoints outside this server's scope, and how each is answered.

Traces, assessments, datasets, scorers, prompts and the gateway are not implemented:
their routes answer MLflow's ``ENDPOINT_NOT_FOUND`` (404), as an older
``mlflow server`` does. The logged-models and registry APIs live in
:mod:`evtrack.server.models_api`, registered first; the ``logged-models/search`` stub
below is only reached by an app built without it. See ``docs/server.md``.
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
