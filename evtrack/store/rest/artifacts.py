"""A run's artifacts through an ``evtrack server``'s ``mlflow-artifacts`` proxy."""

from __future__ import annotations

import os
import posixpath
import urllib.parse
from collections.abc import Sequence

from evtrack.entities import FileInfo
from evtrack.errors import InvalidParameterValue
from evtrack.store.rest.transport import _Http, _http_error

__all__ = ["ProxiedArtifacts"]


#: ``list`` is a method name inside ProxiedArtifacts; the builtin type, spelled outside it.
_Paths = list[str]


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
        infos = []
        for f in body.get("files", []):
            # The server's answer is input like any other: a name with ".." or an absolute
            # path would otherwise steer a download outside its folder.
            name = check_artifact_path(
                f.get("path") if isinstance(f, dict) else f, allow_root=False
            )
            infos.append(
                FileInfo(
                    path=posixpath.join(rel, name) if rel else name,
                    is_dir=bool(f.get("is_dir")),
                    file_size=f.get("file_size"),
                )
            )
        return sorted(infos, key=lambda i: i.path)

    def read_bytes(self, path: str) -> bytes:
        status, body = self.http.request("GET", self._path(path))
        if status != 200:
            raise _http_error(status, body)
        return body

    def download(self, path: str | None, dst_path: str | None = None) -> str:
        """Download a file or folder. Every path the server lists is checked (no ``..``,
        nothing through a symlink out of the destination) before any file is opened, and
        files are written under a temporary name then renamed, so a hostile or broken
        server can neither write outside the destination nor truncate a file there."""
        import tempfile

        from evtrack.artifacts.repository import local_target, write_local
        from evtrack.tracking.validation import check_artifact_path

        rel = check_artifact_path(path)
        root = os.path.abspath(dst_path) if dst_path else tempfile.mkdtemp(prefix="evtrack-")
        local = os.path.join(root, *rel.split("/")) if rel else root
        entries = self.list(rel)
        if not entries and rel:  # a file
            target = local_target(root, rel)
            write_local(target, self.read_bytes(rel))
            return local
        plan = [(f, local_target(root, f)) for f in self._files(entries)]
        os.makedirs(local, exist_ok=True)
        for f, target in plan:
            write_local(target, self.read_bytes(f))
        return local

    def _files(self, entries: Sequence[FileInfo], depth: int = 0) -> Sequence[str]:
        """Relative paths of every file under listed entries (folders listed recursively)."""
        if depth > 100:
            raise InvalidParameterValue("Artifact folders nest more than 100 levels deep.")
        out: _Paths = []
        for entry in entries:
            if entry.is_dir:
                out += self._files(self.list(entry.path), depth + 1)
            else:
                out.append(entry.path)
        return out

    def delete(self, path: str | None) -> _Paths:  # `list` here is the method above
        status, body = self.http.request("DELETE", self._path(path or ""))
        if status != 200:
            raise _http_error(status, body)
        return []  # the server recorded the deletion events
