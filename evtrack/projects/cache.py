"""The projects cache: git clones and built environments, shared by every run on the machine.

Layout under ``projects_cache_dir`` (default ``~/.cache/evtrack/projects``)::

    git/<hash of URL>/            bare clone, fetched again for each run that needs it
    checkouts/<random>/           one run's working tree, removed when the run ends
    envs/<manager>-<hash>/        a built environment; complete once it holds MARKER
    envs/<manager>-<hash>.log     the build log of that environment
    envs/<manager>-<hash>.lock    held while building it

A cache entry is written under an exclusive file lock (:mod:`filelock`), so two runs
needing the same clone or environment wait for each other instead of colliding; the
lock is an ``fcntl``/``flock`` lock that the kernel drops when its holder dies, so a
killed build never blocks the next one. An environment folder without :data:`MARKER`
is a build that died halfway and is rebuilt, never used.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

from evtrack import settings

__all__ = ["MARKER", "cache_dir", "content_hash", "locked"]

#: Written last into a built environment: its presence means "complete".
MARKER = ".evtrack-env-ok"


def cache_dir(*parts: str) -> str:
    """A folder of the projects cache, created if missing."""
    root = settings.get("projects_cache_dir") or os.path.join(
        os.path.expanduser("~"), ".cache", "evtrack", "projects"
    )
    path = os.path.join(os.path.abspath(os.path.expanduser(root)), *parts)
    os.makedirs(path, exist_ok=True)
    return path


def content_hash(*parts: Any) -> str:
    """A short, stable hash of JSON-able parts (an environment's definition)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@contextmanager
def locked(lock_path: str, what: str, out: IO[str] | None = None) -> Iterator[None]:
    """Hold the exclusive lock ``lock_path``; say so on ``out`` if another process has it."""
    from filelock import FileLock, Timeout

    lock = FileLock(lock_path)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        print(
            f"Waiting for another process building {what} (lock {lock_path})",
            file=out or sys.stderr,
            flush=True,
        )
        lock.acquire()
    try:
        yield
    finally:
        lock.release()
