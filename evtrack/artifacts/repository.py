"""Artifacts: files a run produced, under its artifact URI on any fsspec filesystem.

A run's artifact URI is ``<experiment artifact_location>/<run_id>/artifacts`` (MLflow's
layout). Every file written becomes an ``artifact`` event with its size and SHA-256.
Writing a path that already exists replaces what readers see; the earlier content is
kept under ``<run_id>/artifact-history/<sha256>`` first, so every version named in
the log can still be fetched.

On local folders a symbolic link planted in a run's folder (by someone with access to
the disk) is never followed out of it: reads, writes, listings, deletes and downloads
refuse or skip any path that resolves outside the folder. The check and the use are two
steps, so a link swapped in between them by a local user can still win that race.
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

__all__ = ["ArtifactRepository", "WrittenArtifact", "local_target", "write_local"]


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


def local_target(dst_root: str, rel_path: str) -> str:
    """Where a downloaded artifact ``rel_path`` goes under ``dst_root``.

    ``rel_path`` may come from a server or a bucket listing, so it is checked like any
    client input, and the folder it lands in must still be inside ``dst_root`` once
    symlinks are resolved. Callers check every path of a download before writing any.
    """
    from evtrack.tracking.validation import check_artifact_path

    rel = check_artifact_path(rel_path, allow_root=False)
    target = os.path.join(dst_root, *rel.split("/"))
    real_root = os.path.realpath(dst_root)
    parent = os.path.realpath(os.path.dirname(target))
    if parent != real_root and not parent.startswith(real_root.rstrip(os.sep) + os.sep):
        raise InvalidParameterValue(
            f"Refusing to download {rel_path!r}: it would be written outside {dst_root!r} "
            "(through a symbolic link). Nothing was written."
        )
    return target


def write_local(target: str, data: bytes) -> None:
    """Write a downloaded file: to a temporary name first, then renamed over ``target``,
    so a symlink already at ``target`` is replaced rather than followed, and a failed
    download never truncates an existing file."""
    folder = os.path.dirname(target) or "."
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".tmp-{secrets.token_hex(6)}-{os.path.basename(target)}")
    try:
        with open(tmp, "xb") as f:
            f.write(data)
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


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

    def contains(self, full: str) -> bool:
        """Whether ``full`` (a path under :attr:`root`) stays inside the root once symlinks
        are resolved. Always true on object stores, which have no symlinks."""
        if not self.is_local:
            return True
        real_root = os.path.realpath(self.root)
        real = os.path.realpath(full)
        return real == real_root or real.startswith(real_root.rstrip(os.sep) + os.sep)

    def path_of(self, rel_path: str | None) -> str:
        """The full path of a checked relative path; refuses one that a symlink leads out
        of the run's folder (read or write)."""
        rel = _clean_relative(rel_path)
        full = self._full(rel)
        if not self.contains(full):
            raise InvalidParameterValue(
                f"Invalid artifact path {rel_path!r}: it is (or passes through) a symbolic "
                "link that leads outside the run's artifact folder."
            )
        return full

    def files(self, rel_path: str | None = None) -> list[str]:
        """Full paths of the files under a folder (see :meth:`walk`)."""
        return [path for path, _ in self.walk(rel_path)]

    def walk(self, rel_path: str | None = None) -> list[tuple[str, int | None]]:
        """``(full path, size)`` of every file under a folder, never following a symlink
        out of the root and never descending into a symlinked folder (it could be ``/``)."""
        full = self.path_of(rel_path)
        if not self.is_local:
            try:
                found = self.fs.find(full, detail=True)
            except FileNotFoundError:
                return []
            return [(p, info.get("size")) for p, info in sorted(found.items())]
        out: list[tuple[str, int | None]] = []
        for folder, dirs, names in os.walk(full, followlinks=False):
            dirs[:] = sorted(d for d in dirs if not os.path.islink(os.path.join(folder, d)))
            for name in sorted(names):
                path = os.path.join(folder, name)
                if self.contains(path) and os.path.isfile(path):
                    out.append((path, os.path.getsize(path)))
        return out

    # -- writing -------------------------------------------------------------------

    def write_bytes(self, rel_path: str, data: bytes) -> WrittenArtifact:
        rel = _clean_relative(rel_path)
        if not rel:
            raise InvalidParameterValue("An artifact needs a file name.")
        dest = self.path_of(rel)
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
        full = self.path_of(rel)
        if not self.fs.exists(full):
            raise ArtifactNotFound(f"No artifact at {rel_path!r}.")
        if self.fs.isdir(full) and not (self.is_local and os.path.islink(full)):
            files = [f for f in self.files(rel) if not posixpath.basename(f).startswith(".tmp-")]
        else:
            files = [full]
        for f in files:
            self._keep_previous(f)
        self.fs.rm(full, recursive=True)
        return [posixpath.relpath(f, self.root) for f in files]

    # -- reading -------------------------------------------------------------------

    def list(self, path: str | None = None) -> list[FileInfo]:
        rel = _clean_relative(path)
        full = self.path_of(rel)
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
            if name.startswith(".tmp-") or not self.contains(e["name"]):
                continue  # a symlink out of the folder is not listed
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
        full = self.path_of(path)
        try:
            data: bytes = self.fs.cat_file(full)  # fsspec is untyped
        except (FileNotFoundError, IsADirectoryError):
            raise ArtifactNotFound(f"No artifact file at {path!r}.") from None
        return data

    def download(self, path: str | None, dst_path: str | None = None) -> str:
        """Copy a file or folder to a local path; returns that path."""
        rel = _clean_relative(path)
        full = self.path_of(rel)
        if not self.fs.exists(full):
            raise ArtifactNotFound(f"No artifact at {path!r} under {self.artifact_uri}.")
        dst_root = os.path.abspath(dst_path) if dst_path else tempfile.mkdtemp(prefix="evtrack-")
        local = os.path.join(dst_root, *rel.split("/")) if rel else dst_root
        if self.fs.isdir(full):
            os.makedirs(local, exist_ok=True)
            plan = []
            for f in self.files(rel):
                sub = posixpath.relpath(f, self.root)
                if not posixpath.basename(sub).startswith(".tmp-"):
                    plan.append((f, local_target(dst_root, sub)))  # all checked first
            for f, target in plan:
                write_local(target, self.fs.cat_file(f))
        else:
            write_local(local_target(dst_root, rel), self.fs.cat_file(full))
        return local
