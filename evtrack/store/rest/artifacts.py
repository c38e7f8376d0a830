"""A run's artifacts through an ``evtrack server``'s ``mlflow-artifacts`` proxy."""

from __future__ import annotations

import builtins
import os
import posixpath
import urllib.parse

from evtrack.entities import FileInfo
from evtrack.store.rest.transport import _Http, _http_error

__all__ = ["ProxiedArtifacts"]


class ProxiedArtifacts:
    """A run's artifacts through the server's ``mlflow-artifacts`` proxy."""

    def __init__(self, http: _Http, artifact_uri: str) -> None:
        self.http = http
        self.rel_root = artifact_uri[len("mlflow-artifacts:") :].strip("/")

    def _path(self, rel: str) -> str:
        from evtrack.tracking.validation import check_artifact_path

        rel = check_artifact_path(rel)
        full = f"{self.rel_root}/{rel}" if rel else self.rel_root
        return "/api/2.0/mlflow-artifacts/artifacts/" + urllib.parse.quote(full)

    def write_bytes(self, rel: str, data: bytes):
        from evtrack.artifacts.repository import WrittenArtifact

        status, body = self.http.request(
            "PUT", self._path(rel), data, {"Content-Type": "application/octet-stream"}
        )
        if status != 200:
            raise _http_error(status, body)
        import hashlib

        return WrittenArtifact(rel, len(data), hashlib.sha256(data).hexdigest())

    def upload_file(self, local_path: str, artifact_path: str | None):
        name = os.path.basename(local_path)
        with open(local_path, "rb") as f:
            return self.write_bytes(posixpath.join(artifact_path or "", name), f.read())

    def upload_dir(self, local_dir: str, artifact_path: str | None) -> list:
        written = []
        for folder, dirs, files in os.walk(local_dir):
            dirs.sort()
            rel_dir = os.path.relpath(folder, local_dir).replace(os.sep, "/")
            for name in sorted(files):
                rel = posixpath.normpath(posixpath.join(artifact_path or "", rel_dir, name))
                with open(os.path.join(folder, name), "rb") as f:
                    written.append(self.write_bytes(rel, f.read()))
        return written

    def list(self, path: str | None = None) -> list[FileInfo]:
        from evtrack.tracking.validation import check_artifact_path

        rel = check_artifact_path(path)
        full = f"{self.rel_root}/{rel}" if rel else self.rel_root
        body = self.http.call("GET", "/api/2.0/mlflow-artifacts/artifacts", {"path": full})
        return sorted(
            (
                FileInfo(
                    path=posixpath.join(rel, f["path"]) if rel else f["path"],
                    is_dir=f["is_dir"],
                    file_size=f.get("file_size"),
                )
                for f in body.get("files", [])
            ),
            key=lambda i: i.path,
        )

    def read_bytes(self, path: str) -> bytes:
        status, body = self.http.request("GET", self._path(path))
        if status != 200:
            raise _http_error(status, body)
        return body

    def download(self, path: str | None, dst_path: str | None = None) -> str:
        import tempfile

        from evtrack.tracking.validation import check_artifact_path

        rel = check_artifact_path(path)
        root = os.path.abspath(dst_path) if dst_path else tempfile.mkdtemp(prefix="evtrack-")
        local = os.path.join(root, *rel.split("/")) if rel else root
        entries = self.list(rel)
        if not entries and rel:  # a file
            os.makedirs(os.path.dirname(local) or ".", exist_ok=True)
            with open(local, "wb") as f:
                f.write(self.read_bytes(rel))
            return local
        os.makedirs(local, exist_ok=True)
        for entry in entries:
            self.download(entry.path, root) if entry.is_dir else self._fetch(entry.path, root)
        return local

    def _fetch(self, rel: str, root: str) -> None:
        target = os.path.join(root, *rel.split("/"))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "wb") as f:
            f.write(self.read_bytes(rel))

    def delete(self, path: str | None) -> builtins.list[str]:
        status, body = self.http.request("DELETE", self._path(path or ""))
        if status != 200:
            raise _http_error(status, body)
        return []  # the server recorded the deletion events
