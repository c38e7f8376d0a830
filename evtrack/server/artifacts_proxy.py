"""The ``mlflow-artifacts`` proxy: clients upload, list, download and delete artifacts
through the server, under its artifact root, exactly as with ``mlflow server``.

``/api/2.0/mlflow-artifacts/artifacts/<path>`` (GET, PUT, DELETE) and
``/api/2.0/mlflow-artifacts/artifacts?path=…`` (listing). Paths are checked with
:func:`evtrack.server.mlflow_compat.check_path` (no ``..``, no absolute paths, no
%-encoded tricks; MLflow's exact ``"Invalid path"`` answer), so nothing outside the
artifact root can be read or written.

A file put under a run's artifact folder (``…/<run_id>/artifacts/<file>``) is written
through that run's :class:`~evtrack.artifacts.repository.ArtifactRepository` and recorded as an
``artifact`` event, so evtrack's ``artifacts`` view sees what the stock client logged.
"""

from __future__ import annotations

import posixpath
import re
import urllib.parse
from typing import Any

from flask import Flask, Response, request

from evtrack.artifacts.repository import ArtifactRepository
from evtrack.errors import ArtifactNotFound
from evtrack.server.incoming import backend, body_bytes, config, message
from evtrack.server.mlflow_api import ok
from evtrack.server.mlflow_compat import check_path, guess_mime_type
from evtrack.server.protocol import file_info_json

__all__ = ["register"]

_RUN_PATH = re.compile(r"^(?:(?P<prefix>.*)/)?(?P<run>[0-9a-f]{32})/artifacts(?:/(?P<rel>.+))?$")


def _disabled() -> Response | None:
    if not backend().serve_artifacts:
        return Response(
            f"Endpoint: {request.url_rule} disabled due to the evtrack server running with "
            "`--no-serve-artifacts`. To enable artifacts server functionality, run "
            "`evtrack server` with `--serve-artifacts`",
            503,
        )
    return None


def _repo() -> ArtifactRepository:
    b = backend()
    return ArtifactRepository(b.proxied_root, b.client.store.storage_options)


def _run_of(rel: str) -> tuple[Any, str] | None:
    """(run, path inside the run) when ``rel`` is inside a run's artifact folder."""
    m = _RUN_PATH.match(rel)
    if m is None or not m["rel"]:
        return None
    b = backend()
    if b.client.store.experiment_of_run(m["run"]) is None:
        return None
    run = b.client.get_run(m["run"])
    if run.info.artifact_uri.rstrip("/") != b.proxied_path(rel[: m.start("rel")].rstrip("/")):
        return None
    return run, m["rel"]


def download(artifact_path: str) -> Response:
    if (r := _disabled()) is not None:
        return r
    rel = check_path(artifact_path, allow_root=False)
    try:
        data = _repo().read_bytes(rel)
    except ArtifactNotFound:
        raise ArtifactNotFound(f"File {artifact_path} not found.") from None
    return file_response(posixpath.basename(rel), data)


def file_response(name: str, data: bytes) -> Response:
    """A file sent as an attachment (never rendered on the server's origin), as MLflow does."""
    resp = Response(data, mimetype=guess_mime_type(name))
    try:
        name.encode("ascii")
        disposition = f'attachment; filename="{name}"'
    except UnicodeEncodeError:
        disposition = f"attachment; filename*=UTF-8''{urllib.parse.quote(name)}"
    resp.headers["Content-Disposition"] = disposition
    resp.headers["X-Content-Type-Options"] = "nosniff"
    return resp


def upload(artifact_path: str) -> Response:
    if (r := _disabled()) is not None:
        return r
    rel = check_path(artifact_path, allow_root=False)
    data = body_bytes(config("EVTRACK_MAX_ARTIFACT_BYTES"))
    target = _run_of(rel)
    if target is None:
        _repo().write_bytes(rel, data)
    else:
        run, inner = target
        client = backend().client
        repo = ArtifactRepository(run.info.artifact_uri, client.store.storage_options)
        client._record_artifacts(run, [repo.write_bytes(inner, data)])
    return ok()


def delete(artifact_path: str) -> Response:
    if (r := _disabled()) is not None:
        return r
    rel = check_path(artifact_path, allow_root=False)
    target = _run_of(rel)
    if target is None:
        _repo().delete(rel)
    else:
        run, inner = target
        backend().client.delete_artifact(run.info.run_id, inner)
    return ok()


def listing() -> Response:
    if (r := _disabled()) is not None:
        return r
    m = message({"path": "string"})
    rel = check_path(m.get("path"))
    files = [file_info_json(f, posixpath.basename(f.path)) for f in _repo().list(rel or None)]
    return ok({"files": files} if files else {})


def register(app: Flask) -> None:
    base = "/api/2.0/mlflow-artifacts"
    for prefix in (base, "/ajax-api/2.0/mlflow-artifacts"):
        app.add_url_rule(
            f"{prefix}/artifacts/<path:artifact_path>", f"{prefix}-get", download, methods=["GET"]
        )
        app.add_url_rule(
            f"{prefix}/artifacts/<path:artifact_path>", f"{prefix}-put", upload, methods=["PUT"]
        )
        app.add_url_rule(
            f"{prefix}/artifacts/<path:artifact_path>",
            f"{prefix}-delete",
            delete,
            methods=["DELETE"],
        )
        app.add_url_rule(f"{prefix}/artifacts", f"{prefix}-list", listing, methods=["GET"])
