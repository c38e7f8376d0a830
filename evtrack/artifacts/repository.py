"""Artifacts: files a run produced, under its artifact URI on any fsspec filesystem.

A run's artifact URI is ``<experiment artifact_location>/<run_id>/artifacts`` (MLflow's
layout). Every file written becomes an ``artifact`` event with its size and SHA-256.
Writing a path that already exists replaces what readers see; the earlier content is
kept under ``<run_id>/artifact-history/<sha256>`` first, so every version named in
the log can still be fetched.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import secrets
import tempfile
from dataclasses import dataclass
from typing import Any

from evtrack.entities import FileInfo
from evtrack.errors import ArtifactNotFound, InvalidParameterValue

__all__ = ["ArtifactRepository", "WrittenArtifact"]


@dataclass(frozen=True)
class WrittenArtifact:
    path: str  # relative to the run's artifact root
    size: int
    sha256: str


def _clean_relative(path: str | None) -> str:
    """Normalise a relative artifact path; refuse anything that could escape the root."""
    from evtrack.tracking.validation import check_artifact_path

    if path is None or path in ("", "."):
        return ""
    check_artifact_path(path)
    cleaned = posixpath.normpath(path.replace("\\", "/")).strip("/")
    if cleaned in ("", "."):
        return ""
    if cleaned == ".." or cleaned.startswith("../") or cleaned.startswith("/"):
        raise InvalidParameterValue(f"Invalid artifact path {path!r}: it escapes the run's folder.")
    return cleaned


class ArtifactRepository:
    """The artifact tree of one run."""

    def __init__(self, artifact_uri: str, storage_options: dict[str, Any] | None = None) -> None:
        import fsspec

        self.artifact_uri = artifact_uri.rstrip("/")
        self.fs, root = fsspec.core.url_to_fs(self.artifact_uri, **(storage_options or {}))
        self.root = root.rstrip("/")
        protocol = self.fs.protocol
        protocols = protocol if isinstance(protocol, (tuple, list)) else (protocol,)
        self.is_local = "file" in protocols or "local" in protocols

    def _full(self, rel: str) -> str:
        return f"{self.root}/{rel}" if rel else self.root

    # -- writing -------------------------------------------------------------------

    def write_bytes(self, rel_path: str, data: bytes) -> WrittenArtifact:
        rel = _clean_relative(rel_path)
        if not rel:
            raise InvalidParameterValue("An artifact needs a file name.")
        dest = self._full(rel)
        digest = hashlib.sha256(data).hexdigest()
        self._keep_previous(dest)
        if self.is_local:
            folder = os.path.dirname(dest)
            os.makedirs(folder, exist_ok=True)
            tmp = os.path.join(folder, f".tmp-{secrets.token_hex(6)}-{os.path.basename(dest)}")
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, dest)
        else:
            self.fs.pipe_file(dest, data)
        return WrittenArtifact(rel, len(data), digest)

    def _keep_previous(self, dest: str) -> None:
        try:
            old = self.fs.cat_file(dest)
        except (FileNotFoundError, IsADirectoryError):
            return
        history = f"{posixpath.dirname(self.root)}/artifact-history"
        target = f"{history}/{hashlib.sha256(old).hexdigest()}"
        if not self.fs.exists(target):
            if self.is_local:
                os.makedirs(history, exist_ok=True)
            self.fs.pipe_file(target, old)

    def upload_file(self, local_path: str, artifact_path: str | None) -> WrittenArtifact:
        if not os.path.isfile(local_path):
            raise InvalidParameterValue(f"Cannot log artifact: {local_path!r} is not a file.")
        name = os.path.basename(local_path)
        rel = _clean_relative(posixpath.join(_clean_relative(artifact_path), name))
        with open(local_path, "rb") as f:
            return self.write_bytes(rel, f.read())

    def upload_dir(self, local_dir: str, artifact_path: str | None) -> list[WrittenArtifact]:
        if not os.path.isdir(local_dir):
            raise InvalidParameterValue(f"Cannot log artifacts: {local_dir!r} is not a folder.")
        base = _clean_relative(artifact_path)
        written = []
        for folder, dirs, files in os.walk(local_dir):
            dirs.sort()
            rel_dir = os.path.relpath(folder, local_dir).replace(os.sep, "/")
            for name in sorted(files):
                rel = posixpath.normpath(posixpath.join(base, rel_dir, name))
                with open(os.path.join(folder, name), "rb") as f:
                    written.append(self.write_bytes(rel, f.read()))
        return written

    def delete(self, rel_path: str | None) -> list[str]:
        """Remove a file or folder; returns the relative paths of the files removed."""
        rel = _clean_relative(rel_path)
        full = self._full(rel)
        if not self.fs.exists(full):
            raise ArtifactNotFound(f"No artifact at {rel_path!r}.")
        if self.fs.isdir(full):
            files = [f for f in self.fs.find(full) if not posixpath.basename(f).startswith(".tmp-")]
        else:
            files = [full]
        for f in files:
            self._keep_previous(f)
        self.fs.rm(full, recursive=True)
        return [posixpath.relpath(f, self.root) for f in files]

    # -- reading -------------------------------------------------------------------

    def list(self, path: str | None = None) -> list[FileInfo]:
        rel = _clean_relative(path)
        full = self._full(rel)
        try:
            entries = (
                self.fs.ls(full, detail=True, refresh=True)
                if not self.is_local
                else self.fs.ls(full, detail=True)
            )
        except FileNotFoundError:
            return []
        infos = []
        for e in entries:
            name = posixpath.basename(e["name"].rstrip("/"))
            if name.startswith(".tmp-"):
                continue
            if e["type"] != "directory" and posixpath.normpath(e["name"]) == posixpath.normpath(
                full
            ):
                return []  # a file, not a folder: MLflow lists nothing
            is_dir = e["type"] == "directory"
            infos.append(
                FileInfo(
                    path=posixpath.join(rel, name) if rel else name,
                    is_dir=is_dir,
                    file_size=None if is_dir else int(e.get("size") or 0),
                )
            )
        return sorted(infos, key=lambda i: i.path)

    def read_bytes(self, path: str) -> bytes:
        rel = _clean_relative(path)
        try:
            return self.fs.cat_file(self._full(rel))
        except (FileNotFoundError, IsADirectoryError):
            raise ArtifactNotFound(f"No artifact file at {path!r}.") from None

    def download(self, path: str | None, dst_path: str | None = None) -> str:
        """Copy a file or folder to a local path; returns that path."""
        rel = _clean_relative(path)
        full = self._full(rel)
        if not self.fs.exists(full):
            raise ArtifactNotFound(f"No artifact at {path!r} under {self.artifact_uri}.")
        dst_root = os.path.abspath(dst_path) if dst_path else tempfile.mkdtemp(prefix="evtrack-")
        local = os.path.join(dst_root, *rel.split("/")) if rel else dst_root
        if self.fs.isdir(full):
            os.makedirs(local, exist_ok=True)
            for f in self.fs.find(full):
                sub = posixpath.relpath(f, full)
                if posixpath.basename(sub).startswith(".tmp-"):
                    continue
                target = os.path.join(local, *sub.split("/"))
                os.makedirs(os.path.dirname(target), exist_ok=True)
                self.fs.get_file(f, target)
        else:
            os.makedirs(os.path.dirname(local) or ".", exist_ok=True)
            self.fs.get_file(full, local)
        return local
