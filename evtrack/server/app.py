"""The Flask app factory: ``create_app(backend_store_uri, ...)``.

One app per worker process; each holds its own :class:`~evtrack.server.backend.Backend`
(store, writer with a random id, group commit). Workers share nothing but the store, so
any number of them, on any number of hosts, can serve one store (see ``docs/server.md``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from evtrack.errors import EvtrackError, PermissionDenied
from evtrack.server.auth import Auth, is_write
from evtrack.server.backend import Backend
from evtrack.server.protocol import dumps
from evtrack.server.sql_budget import SqlBudget
from evtrack.web import headers

__all__ = ["create_app"]

_log = logging.getLogger("evtrack.server")

#: Largest JSON request body (MLflow's biggest legal log-batch is ~1.7 MB).
MAX_JSON_BYTES = 8 * 1024 * 1024
#: Largest artifact upload through the proxy (held in memory while written).
MAX_ARTIFACT_BYTES = 1024 * 1024 * 1024
#: Largest segment or bulk-ingest body of evtrack's own API.
MAX_INGEST_BYTES = 256 * 1024 * 1024

_OPEN_PATHS = ("/health", "/version")


def _error(status: int, error_code: str, message: str, headers: dict | None = None) -> Response:
    resp = Response(
        dumps({"error_code": error_code, "message": message}),
        status=status,
        mimetype="application/json",
    )
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


def create_app(
    backend_store_uri: str,
    default_artifact_root: str | None = None,
    serve_artifacts: bool = True,
    auth: Auth | str | None = None,
    read_only: bool = False,
    *,
    artifacts_destination: str | None = None,
    max_json_bytes: int = MAX_JSON_BYTES,
    max_artifact_bytes: int = MAX_ARTIFACT_BYTES,
    max_ingest_bytes: int = MAX_INGEST_BYTES,
    allowed_artifact_locations: Sequence[str] = (),
    sql_budget: SqlBudget | None = None,
    web: bool = True,
) -> Flask:
    """A WSGI app serving MLflow's REST API, evtrack's own API and (``web``) the
    read-only web view at ``/`` over one store.

    ``auth`` is an :class:`~evtrack.server.auth.Auth` or a bearer token string; its
    ``protect_reads`` covers the web view's pages too. ``read_only`` refuses every
    write with ``PERMISSION_DENIED`` (403). ``allowed_artifact_locations`` are URL
    prefixes clients may name as artifact locations besides the artifact root (see
    :mod:`evtrack.artifacts.locations`); ``sql_budget`` caps user SQL
    (:mod:`evtrack.server.sql_budget`). ``default_artifact_root`` given means new
    experiments live there and clients write there directly; ``artifacts_destination``
    is what the ``mlflow-artifacts`` proxy serves (default ``<store>/artifacts``).
    """
    from evtrack import __version__
    from evtrack.server import (
        artifacts_proxy,
        mlflow_api,
        mlflow_compat,
        models_api,
        native,
        not_supported,
    )

    if isinstance(auth, str):
        auth = Auth(token=auth)
    app = Flask("evtrack.server")
    # "…/artifacts//etc/passwd" must reach the path check (and be refused), not redirect.
    app.url_map.merge_slashes = False
    app.config.update(
        EVTRACK_MAX_JSON_BYTES=max_json_bytes,
        EVTRACK_MAX_ARTIFACT_BYTES=max_artifact_bytes,
        EVTRACK_MAX_INGEST_BYTES=max_ingest_bytes,
        EVTRACK_READ_ONLY=read_only,
    )
    backend = Backend(
        backend_store_uri,
        default_artifact_root,
        serve_artifacts,
        allowed_artifact_locations=allowed_artifact_locations,
        artifacts_destination=artifacts_destination,
    )
    backend.store.ensure_ready()
    app.extensions["evtrack"] = backend
    app.extensions["evtrack_sql"] = sql_budget or SqlBudget()

    @app.before_request
    def _guard() -> Response | None:
        path = request.path
        if path in _OPEN_PATHS:
            return None
        write = is_write(request.method, path)
        if auth is not None and (write or auth.protect_reads):
            user = auth.user_for(request.headers.get("Authorization"))
            if user is not None and write and not auth.may_write(user):
                return _error(
                    403,
                    "PERMISSION_DENIED",
                    f"User {user!r} has the 'read' role: writes are refused. Ask for the "
                    "'write' role in the server's users file.",
                )
            if user is None:
                return _error(
                    401,
                    "UNAUTHENTICATED",
                    "You are not authenticated. Send a bearer token or basic-auth "
                    "credentials (MLFLOW_TRACKING_TOKEN, or MLFLOW_TRACKING_USERNAME and "
                    "MLFLOW_TRACKING_PASSWORD).",
                    {"WWW-Authenticate": 'Basic realm="evtrack"'},
                )
        if read_only and write:
            raise PermissionDenied("This evtrack server is read-only: writes are refused.")
        return None

    @app.get("/health")
    def health() -> Response:
        return Response("OK", mimetype="text/plain")

    @app.get("/version")
    def version() -> Response:
        return Response(__version__, mimetype="text/plain")

    mlflow_api.register(app)
    models_api.register(app)  # before not_supported: its logged-models/search stub yields
    mlflow_compat.register(app)
    artifacts_proxy.register(app)
    native.register(app)
    not_supported.register(app)
    if web:
        from evtrack import web as web_view

        # The same pages as `evtrack ui`, behind the same _guard (auth, --auth-reads).
        web_view.register(app, backend.client, locations=backend.locations)
    app.after_request(headers.apply)  # every response, 404s and errors included

    @app.errorhandler(EvtrackError)
    def _evtrack_error(exc: EvtrackError) -> Response:
        if exc.http_status >= 500:
            _log.error("%s %s failed: %s", request.method, request.path, exc, exc_info=exc)
        return _error(exc.http_status, exc.error_code, exc.message)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        code = exc.code or 500
        if code == 404:
            _log.info("no route for %s %s", request.method, request.path)
            return _error(
                404, "ENDPOINT_NOT_FOUND", f"No endpoint {request.method} {request.path}."
            )
        if code == 405:
            return _error(
                405, "ENDPOINT_NOT_FOUND", f"Method {request.method} not allowed on {request.path}."
            )
        return _error(
            code, "BAD_REQUEST" if code < 500 else "INTERNAL_ERROR", exc.description or ""
        )

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        _log.error("%s %s failed", request.method, request.path, exc_info=exc)
        return _error(500, "INTERNAL_ERROR", f"Internal error: {type(exc).__name__}: {exc}")

    return app
