"""A run's artifacts: the file tree, previews, and downloads.

With ``?model=<model_id>`` the same pages show the files of one of the run's logged
models that live in a folder of their own (``<experiment>/models/<model_id>/artifacts``,
where MLflow 3's client uploads them through a server).

Previews are rendered by the server as escaped text (text, JSON, YAML, MLmodel, CSV as
a table) or as ``<img>`` (raster images and SVG: an image element never runs script).
Files are opened only at allowed locations (``WebState.locations``: no URL a client
chose is fetched) and never through a symlink out of the run's folder.
Raw files are served with ``X-Content-Type-Options: nosniff`` and
``Content-Security-Policy: sandbox``; only raster images and plain text are served
inline, everything else (HTML and SVG included) as a download, so a file a run wrote
can never run script in the web view's origin.
"""

from __future__ import annotations

import csv
import io
import json
import posixpath
from typing import Any

from flask import Response, request

from evtrack.errors import ArtifactNotFound, InvalidParameterValue, ResourceDoesNotExist
from evtrack.web.views.base import blueprint, page, state

MAX_TREE = 5000
PREVIEW_BYTES = 1_000_000
CSV_ROWS = 500
RAW_CSP = "sandbox; default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'"

_IMAGES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".bmp": "image/bmp",
    ".ico": "image/x-icon",
}
_TEXT = {
    ".txt", ".log", ".md", ".rst", ".py", ".sh", ".cfg", ".ini", ".toml", ".r", ".sql",
    ".json", ".yaml", ".yml", ".csv", ".tsv", ".out", ".err", ".ipynb", ".jsonl", ".env",
}  # fmt: skip
_YAML_NAMES = {"MLmodel", "MLproject"}
_NEVER_INLINE = {".html", ".htm", ".xhtml", ".svg", ".xml", ".js", ".mjs", ".pdf"}


def _location(run_id: str) -> tuple[str, dict[str, Any] | None]:
    """The folder shown: the run's artifacts, or (``?model=``) one of its logged models'."""
    snap, row = state().snapshots.run(run_id)
    model_id = request.args.get("model")
    if not model_id:
        return row["artifact_uri"], None
    found = snap.query(
        "SELECT model_id, name, artifact_location FROM logged_models "
        "WHERE model_id = ? AND source_run_id = ? AND lifecycle_stage = 'active'",
        [model_id, run_id],
    )
    if not found:
        raise ResourceDoesNotExist(f"Run {run_id} has no logged model {model_id!r}.")
    return found[0]["artifact_location"], found[0]


def _repo(run_id: str):
    from evtrack.artifacts.repository import ArtifactRepository

    st = state()
    uri, _ = _location(run_id)
    if st.locations is not None:  # never fetch a URL a client chose (SSRF)
        st.locations.check_read(uri)
    return ArtifactRepository(uri, st.store.storage_options)


def _clean(path: str | None) -> str:
    from evtrack.tracking import validation

    return validation.check_artifact_path(path or "")


def _full(repo, rel: str) -> str:
    """The checked full path: a symlink out of the run's folder is refused."""
    return repo.path_of(rel)


def tree(repo) -> tuple[list[dict[str, Any]], bool]:
    """Nested ``{"name", "path", "is_dir", "size", "children"}``; and whether it was cut."""
    found = repo.walk()  # files only; symlinks out of the folder are left out
    root: dict[str, Any] = {"children": {}}
    truncated = len(found) > MAX_TREE
    for full, size in found[:MAX_TREE]:
        rel = posixpath.relpath(full.rstrip("/"), repo.root)
        if rel in (".", "") or any(p.startswith(".tmp-") for p in rel.split("/")):
            continue
        node = root
        parts = rel.split("/")
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            child = node["children"].get(part)
            if child is None:
                child = node["children"][part] = {
                    "name": part,
                    "path": "/".join(parts[: depth + 1]),
                    "is_dir": True,
                    "size": None,
                    "children": {},
                }
            if last:
                child["is_dir"] = False
                child["size"] = size
            node = child

    def finish(node: dict[str, Any]) -> list[dict[str, Any]]:
        items = sorted(node["children"].values(), key=lambda c: (not c["is_dir"], c["name"]))
        for item in items:
            item["children"] = finish(item)
        return items

    return finish(root), truncated


def kind_of(path: str) -> str:
    """image | json | yaml | mlmodel | csv | text | html | binary (by name only)."""
    name = posixpath.basename(path)
    ext = posixpath.splitext(name)[1].lower()
    if name == "MLmodel":
        return "mlmodel"
    if ext in _IMAGES or ext == ".svg":
        return "image"
    if ext in (".html", ".htm", ".xhtml"):
        return "html"
    if ext == ".json":
        return "json"
    if ext in (".yaml", ".yml") or name in _YAML_NAMES:
        return "yaml"
    if ext in (".csv", ".tsv"):
        return "csv"
    if ext in _TEXT or not ext:
        return "text"
    return "binary"


def preview(repo, rel: str) -> dict[str, Any]:
    full = _full(repo, rel)
    try:
        size = repo.fs.size(full)
    except FileNotFoundError:
        raise ArtifactNotFound(f"No artifact file at {rel!r}.") from None
    kind = kind_of(rel)
    out: dict[str, Any] = {"path": rel, "size": size, "kind": kind, "truncated": False}
    if kind in ("image", "html"):
        return out
    with repo.fs.open(full, "rb") as f:
        data = f.read(PREVIEW_BYTES + 1)
    out["truncated"] = len(data) > PREVIEW_BYTES
    data = data[:PREVIEW_BYTES]
    if b"\x00" in data[:8192]:
        out["kind"] = "binary"
        return out
    text = data.decode("utf-8", errors="replace")
    if kind == "binary" and "\ufffd" in text[:4096]:
        return out
    out["text"] = text
    if kind == "json" and not out["truncated"]:
        try:
            out["text"] = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
        except ValueError:
            out["note"] = "Not valid JSON: shown as text."
    elif kind == "csv":
        dialect = "excel-tab" if rel.lower().endswith(".tsv") else "excel"
        rows = []
        for i, row in enumerate(csv.reader(io.StringIO(text), dialect=dialect)):
            if i > CSV_ROWS:
                out["truncated"] = True
                break
            rows.append(row)
        out["rows"] = rows
    elif kind == "mlmodel":
        out["model"] = _mlmodel(text)
    elif kind == "binary":
        out["kind"] = "text"
    return out


def _mlmodel(text: str) -> dict[str, Any] | None:
    """The parts of an MLmodel file worth a summary: flavors, signature, run, time."""
    import yaml

    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError:
        return None
    if not isinstance(doc, dict):
        return None
    raw_flavors, raw_signature = doc.get("flavors"), doc.get("signature")
    flavors: dict[Any, Any] = raw_flavors if isinstance(raw_flavors, dict) else {}
    signature: dict[Any, Any] = raw_signature if isinstance(raw_signature, dict) else {}

    def columns(raw: Any) -> list[str]:
        try:
            spec = json.loads(raw) if isinstance(raw, str) else raw
            out = []
            for c in spec or []:
                kind = str(c.get("type", c.get("tensor-spec", "?")))
                out.append(f"{c['name']}: {kind}" if c.get("name") else kind)
            return out
        except (TypeError, ValueError, AttributeError):
            return []

    return {
        "flavors": [
            {"name": str(name), "details": {str(k): str(v) for k, v in (conf or {}).items()}}
            for name, conf in flavors.items()
            if isinstance(conf, dict) or conf is None
        ],
        "inputs": columns(signature.get("inputs")),
        "outputs": columns(signature.get("outputs")),
        "run_id": doc.get("run_id"),
        "created": doc.get("utc_time_created"),
    }


@blueprint.get("/runs/<run_id>/artifacts")
def artifacts(run_id: str):
    snap, row = state().snapshots.run(run_id)
    uri, model = _location(run_id)
    repo = _repo(run_id)
    rel = _clean(request.args.get("path"))
    nodes, truncated = tree(repo)
    shown = None
    error = None
    if rel:
        try:
            if repo.fs.isdir(_full(repo, rel)):
                shown = {"path": rel, "kind": "dir"}
            else:
                shown = preview(repo, rel)
        except ArtifactNotFound as exc:
            error = exc.message
    data = {
        "run": {
            "run_id": run_id,
            "run_name": row["run_name"],
            "experiment_id": snap.experiment_id,
            "artifact_uri": row["artifact_uri"],
        },
        "model": model,  # None: the run's own artifacts
        "location": uri,
        "experiment": {
            "experiment_id": snap.experiment_id,
            # None: the store holds the run's events but not its experiment's (as run.py)
            "name": snap.experiment["name"] if snap.experiment else None,
        },
        "tree": nodes,
        "truncated": truncated,
        "path": rel,
        "preview": shown,
        "error": error,
    }
    return page("artifacts.html", data, 404 if error else 200)


@blueprint.get("/runs/<run_id>/artifacts/raw")
def artifact_raw(run_id: str):
    rel = _clean(request.args.get("path"))
    if not rel:
        raise InvalidParameterValue("path is required.")
    repo = _repo(run_id)
    full = _full(repo, rel)
    try:
        if repo.fs.isdir(full):
            raise InvalidParameterValue(f"{rel!r} is a folder: download its files one by one.")
        size = repo.fs.size(full)
    except FileNotFoundError:
        raise ArtifactNotFound(f"No artifact file at {rel!r}.") from None
    name = posixpath.basename(rel)
    ext = posixpath.splitext(name)[1].lower()
    download = request.args.get("download") == "1"
    if ext in _IMAGES:
        mimetype = _IMAGES[ext]
    elif ext == ".svg":
        mimetype = "image/svg+xml"  # for <img>; a navigation gets the attachment below
    elif kind_of(rel) in ("text", "json", "yaml", "mlmodel", "csv") and ext not in _NEVER_INLINE:
        mimetype = "text/plain"
    else:
        mimetype = "application/octet-stream"
    attachment = download or ext in _NEVER_INLINE or mimetype == "application/octet-stream"

    def chunks():
        with repo.fs.open(full, "rb") as f:
            while True:
                block = f.read(1 << 20)
                if not block:
                    return
                yield block

    resp = Response(chunks(), mimetype=mimetype)
    if mimetype == "text/plain":
        resp.headers["Content-Type"] = "text/plain; charset=utf-8"
    resp.headers["Content-Length"] = str(size)
    resp.headers["Content-Security-Policy"] = RAW_CSP
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Cross-Origin-Resource-Policy"] = "same-origin"
    if attachment:
        from evtrack.web.headers import content_disposition

        resp.headers["Content-Disposition"] = content_disposition(name)
    return resp
