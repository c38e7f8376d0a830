"""The ``mlflow-artifacts`` proxy: clients upload, list, download and delete artifacts
through the server, under its artifact root, exactly as with ``mlflow server``.

``/api/2.0/mlflow-artifacts/artifacts/<path>`` (GET, PUT, DELETE) and
``/api/2.0/mlflow-artifacts/artifacts?path=…`` (listing). Paths are checked with
:func:`evtrack.server.mlflow_compat.check_path` (no ``..``, no absolute paths, no
%-encoded tricks; MLflow's exact ``"Invalid path"`` answer), and then must lie inside a run's artifact folder
(``<location>/<run_id>/artifacts/…``, matched against that run's own artifact URI and the
server's allowed locations): experiment folders, the event log and anything else under
the root are refused with 400 before a file is touched. Inside the folder,
:class:`~evtrack.artifacts.repository.ArtifactRepository` refuses symlinks that lead out.

Unlike ``mlflow server``, which serves any path under its artifact root, this proxy
serves run folders only; evtrack has no logged-model artifact folders yet.

A file put is written through the run's repository and recorded as an ``artifact``
event, so evtrack's ``artifacts`` view sees what the stock client logged.
"""

from __future__ import annotations

import posixpath
import re
from typing import Any

from flask import Flask, Response, request

from evtrack.artifacts.repository import ArtifactRepository
from evtrack.errors import ArtifactNotFound, InvalidParameterValue
from evtrack.server.backend import PROXY_SCHEME
from evtrack.server.incoming import backend, body_bytes, config, message
from evtrack.server.mlflow_api import ok
from evtrack.server.mlflow_compat import check_path, guess_mime_type
from evtrack.server.protocol import file_info_json
from evtrack.web.headers import content_disposition

__all__ = ["register"]

#: ``…/<run_id>/artifacts``: where a run's artifact folder may end in a proxied path.
_RUN_FOLDER = re.compile(r"(?:^|/)(?P<run>[0-9a-f]{32})/artifacts(?=/|$)")


def _disabled() -> Response | None:
    if not backend().serve_artifacts:
        return Response(
            f"Endpoint: {request.url_rule} disabled due to the evtrack server running with "
            "`--no-serve-artifacts`. To enable artifacts server functionality, run "
            "`evtrack server` with `--serve-artifacts`",
            503,
        )
    return None


def _target(rel: str) -> tuple[Any, ArtifactRepository, str]:
    """(run, its repository, path inside its artifact folder) for a proxied path.

    The proxy serves run artifact folders and nothing else: the path must be
    ``<the run's public artifact URI>/<inner path>``. Everything else (experiment
    folders, the event log, the root) is refused before any file is touched, whatever
    the artifact root is.
    """
    b = backend()
    client = b.client
    for m in _RUN_FOLDER.finditer(rel):
        run_id = m["run"]
        if b.store.layout.experiment_of_run(run_id) is None:
            continue
        run = client.get_run(run_id)
        uri = run.info.artifact_uri.rstrip("/")
        if b.public_uri(uri) != f"{PROXY_SCHEME}/{rel[: m.end()]}":
            continue
        b.locations.check_read(uri)
        repo = b.store.artifact_repository(uri)
        return run, repo, rel[m.end() :].lstrip("/")
    raise InvalidParameterValue(
        f"Invalid path {rel!r}: the artifact proxy serves only run artifact folders "
        "(<artifact location>/<run_id>/artifacts/...), and this path is not inside one. "
        "Use the run's artifact_uri from runs/get."
    )


def download(artifact_path: str) -> Response:
    if (r := _disabled()) is not None:
        return r
    rel = check_path(artifact_path, allow_root=False)
    _, repo, inner = _target(rel)
    try:
        data = repo.read_bytes(inner)
    except ArtifactNotFound:
        raise ArtifactNotFound(f"File {artifact_path} not found.") from None
    return file_response(posixpath.basename(rel), data)


def file_response(name: str, data: bytes) -> Response:
    """A file sent as an attachment (never rendered on the server's origin), as MLflow does."""
    resp = Response(data, mimetype=guess_mime_type(name))
    resp.headers["Content-Disposition"] = content_disposition(name)
    resp.headers["X-Content-Type-Options"] = "nosniff"
    return resp


def upload(artifact_path: str) -> Response:
    if (r := _disabled()) is not None:
        return r
    rel = check_path(artifact_path, allow_root=False)
    run, repo, inner = _target(rel)
    if not inner:
        raise InvalidParameterValue(f"Invalid path {rel!r}: a file name is required.")
    data = body_bytes(config("EVTRACK_MAX_ARTIFACT_BYTES"))
    backend().store.record_artifacts(run.info.run_id, [repo.write_bytes(inner, data)])
    return ok()


def delete(artifact_path: str) -> Response:
    if (r := _disabled()) is not None:
        return r
    rel = check_path(artifact_path, allow_root=False)
    run, _, inner = _target(rel)
    backend().client.delete_artifact(run.info.run_id, inner)
    return ok()


def listing() -> Response:
    if (r := _disabled()) is not None:
        return r
    m = message({"path": "string"})
    rel = check_path(m.get("path"))
    _, repo, inner = _target(rel)
    files = [file_info_json(f, posixpath.basename(f.path)) for f in repo.list(inner or None)]
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
