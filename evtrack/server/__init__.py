"""The tracking server: MLflow's REST API, the artifact proxy and evtrack's own API.

``create_app(backend_store_uri, ...)`` builds the WSGI app; ``run_server(...)`` (and
``evtrack server``) serves it. Importing :mod:`evtrack` never imports this package:
it needs Flask.
"""

from __future__ import annotations

from evtrack.server.app import create_app
from evtrack.server.auth import Auth
from evtrack.server.serve import run_server

__all__ = ["Auth", "create_app", "run_server"]
