"""The ``mlflow-artifacts`` proxy: clients upload, list, download and delete artifacts
through the server, under its artifact root, exactly as with ``mlflow server``.

``/api/2.0/mlflow-artifacts/artifacts/<path>`` (GET, PUT, DELETE) and
``/api/2.0/mlflow-artifacts/artifacts?path=…`` (listing). Paths are checked with
:func:`evtrack.server.mlflow_compat.check_path` (no ``..``, no absolute paths, no
%-encoded tricks; MLflow's exact ``"Invalid path"`` answer), and then must lie inside an artifact folder the store knows:

* a run's, ``<location>/<run_id>/artifacts/…``, matched against that run's own artifact
  URI;
* a logged model's (MLflow 3's ``log_model`` uploads there),
  ``<location>/models/<model_id>/artifacts/…``, matched against that model's own
  artifact location; the model must exist (and not be deleted).

Either way the folder must also be under the server's allowed locations. Experiment
folders, the event log and anything else under the root are refused with 400 before a
file is touched. Inside the folder,
:class:`~evtrack.artifacts.repository.ArtifactRepository` refuses symlinks that lead out.

Unlike ``mlflow server``, which serves any path under its artifact root, this proxy
serves those folders only.

A file put into a run's folder is written through the run's repository and recorded as
an ``artifact`` event, so evtrack's ``artifacts`` view sees what the stock client logged.
A logged model's files are written as they are: the model's own events (its status,
once the client finalizes it) say when they are complete.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass

from flask import Flask, Response, request

from evtrack.artifacts.repository import ArtifactRepository
from evtrack.errors import ArtifactNotFound, InvalidParameterValue, ResourceDoesNotExist
from evtrack.server.backend import PROXY_SCHEME
from evtrack.server.incoming import backend, body_bytes, config, message
from evtrack.server.mlflow_api import ok
from evtrack.server.mlflow_compat import check_path, guess_mime_type
from evtrack.server.protocol import file_info_json
from evtrack.web.headers import content_disposition

__all__ = ["register"]

#: ``…/<run_id>/artifacts``: where a run's artifact folder may end in a proxied path.
_RUN_FOLDER = re.compile(r"(?:^|/)(?P<run>[0-9a-f]{32})/artifacts(?=/|$)")
#: ``…/models/<model_id>/artifacts``: where a logged model's artifact folder may end.
_MODEL_FOLDER = re.compile(r"(?:^|/)models/(?P<model>m-[0-9a-f]{32})/artifacts(?=/|$)")


@dataclass(frozen=True)
class _Folder:
    """The artifact folder a proxied path lies in, and the path inside it."""

    repo: ArtifactRepository
    inner: str
    run_id: str | None = None  # None: a logged model's folder


def _disabled() -> Response | None:
    if not backend().serve_artifacts:
        return Response(
            f"Endpoint: {request.url_rule} disabled due to the evtrack server running with "
            "`--no-serve-artifacts`. To enable artifacts server functionality, run "
            "`evtrack server` with `--serve-artifacts`",
            503,
        )
    return None


def _open(uri: str, rel: str, end: int) -> ArtifactRepository | None:
    """The repository of the folder ``uri`` if ``rel[:end]`` is its public form."""
    b = backend()
    uri = uri.rstrip("/")
    if b.public_uri(uri) != f"{PROXY_SCHEME}/{rel[:end]}":
        return None
    b.locations.check_read(uri)
    return b.store.artifact_repository(uri)


def _run_folder(rel: str) -> _Folder | None:
    b = backend()
    for m in _RUN_FOLDER.finditer(rel):
        run_id = m["run"]
        if b.store.layout.experiment_of_run(run_id) is None:
            continue
        run = b.client.get_run(run_id)
        repo = _open(run.info.artifact_uri, rel, m.end())
        if repo is not None:
            return _Folder(repo, rel[m.end() :].lstrip("/"), run_id=run_id)
    return None


def _model_folder(rel: str) -> _Folder | None:
    models = backend().client._models
    for m in _MODEL_FOLDER.finditer(rel):
        model_id = m["model"]
        try:
            model = models.get_logged_model(model_id)
        except ResourceDoesNotExist:  # no such model, or deleted
            continue
        repo = _open(model.artifact_location, rel, m.end())
        if repo is not None:
            return _Folder(repo, rel[m.end() :].lstrip("/"))
    return None


def _target(rel: str) -> _Folder:
    """The artifact folder a proxied path lies in (a run's or a logged model's).

    The path must be ``<the folder's public URI>/<inner path>``, checked against the
    run or logged model that owns the folder. Everything else (experiment folders, the
    event log, the root) is refused before any file is touched, whatever the artifact
    root is.
    """
    folder = _run_folder(rel) or _model_folder(rel)
    if folder is None:
        raise InvalidParameterValue(
            f"Invalid path {rel!r}: the artifact proxy serves only run and logged-model "
            "artifact folders (<artifact location>/<run_id>/artifacts/... or "
            "<artifact location>/models/<model_id>/artifacts/...), and this path is not "
            "inside one. Use the artifact_uri from runs/get or logged-models/get."
        )
    return folder


def download(artifact_path: str) -> Response:
    if (r := _disabled()) is not None:
        return r
    rel = check_path(artifact_path, allow_root=False)
    folder = _target(rel)
    try:
        data = folder.repo.read_bytes(folder.inner)
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
    folder = _target(rel)
    if not folder.inner:
        raise InvalidParameterValue(f"Invalid path {rel!r}: a file name is required.")
    data = body_bytes(config("EVTRACK_MAX_ARTIFACT_BYTES"))
    written = folder.repo.write_bytes(folder.inner, data)
    if folder.run_id is not None:
        backend().store.record_artifacts(folder.run_id, [written])
    return ok()


def delete(artifact_path: str) -> Response:
    if (r := _disabled()) is not None:
        return r
    rel = check_path(artifact_path, allow_root=False)
    folder = _target(rel)
    if folder.run_id is not None:
        backend().client.delete_artifact(folder.run_id, folder.inner)
    else:
        folder.repo.delete(folder.inner or None)
    return ok()


def listing() -> Response:
    if (r := _disabled()) is not None:
        return r
    m = message({"path": "string"})
    rel = check_path(m.get("path"))
    folder = _target(rel)
    listed = folder.repo.list(folder.inner or None)
    files = [file_info_json(f, posixpath.basename(f.path)) for f in listed]
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
