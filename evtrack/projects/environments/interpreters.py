"""Finding a Python interpreter of a given version on this machine, never downloading one.

Looked at, in order: the interpreter running evtrack, ``pythonX.Y`` / ``python3`` /
``python`` on ``PATH``, and pyenv's installs (``<root>/versions/*``, the root being
``~/.pyenv`` or the one of the ``pyenv`` command or shims on ``PATH``). A requested ``3.11`` matches any ``3.11.x`` (the newest wins),
``3.11.7`` only itself. pyenv's shims are skipped: they answer for whatever version is
selected in the current folder, not for the one asked. Candidates on PATH are asked for
their version (one quick subprocess each), pyenv's folders are read by name.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys

from evtrack.projects.environments.base import EnvironmentUnavailable

__all__ = ["find_python"]


def _matches(requested: str, version: tuple[int, ...]) -> bool:
    wanted = tuple(int(p) for p in requested.split("."))
    return version[: len(wanted)] == wanted


def _version_of(python: str) -> tuple[int, ...] | None:
    try:
        out = subprocess.run(
            [python, "-c", "import sys; print('.'.join(map(str, sys.version_info[:3])))"],
            capture_output=True,
            text=True,
            timeout=20,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return tuple(int(p) for p in out.split(".")) if re.fullmatch(r"\d+\.\d+\.\d+", out) else None


def _pyenv_roots() -> set[str]:
    """pyenv's root: ``~/.pyenv``, or found from ``pyenv`` / its shims on PATH (a root
    holds ``bin/pyenv`` or ``libexec/pyenv``, and ``shims/``, next to ``versions/``)."""
    roots = {os.path.expanduser("~/.pyenv")}
    for tool in ("pyenv", "python", "python3"):
        path = shutil.which(tool)
        if path:
            for p in (path, os.path.realpath(path)):
                roots.add(os.path.dirname(os.path.dirname(p)))
    return {r for r in roots if os.path.isdir(os.path.join(r, "versions"))}


def _pyenv_versions() -> list[tuple[tuple[int, ...], str]]:
    found = []
    folders = [f for root in _pyenv_roots() for f in glob.glob(os.path.join(root, "versions", "*"))]
    for folder in folders:
        name = os.path.basename(folder)
        python = os.path.join(folder, "bin", "python")
        if re.fullmatch(r"\d+\.\d+\.\d+", name) and os.access(python, os.X_OK):
            found.append((tuple(int(p) for p in name.split(".")), python))
    return found


def find_python(requested: str | None) -> tuple[str, str]:
    """``(path, "X.Y.Z")`` of a local interpreter matching ``requested`` (None: this one)."""
    current = tuple(sys.version_info[:3])
    if not requested:
        return sys.executable, ".".join(map(str, current))
    requested = str(requested).strip()
    if not re.fullmatch(r"\d+(\.\d+){0,2}", requested):
        raise EnvironmentUnavailable(
            f"Python version '{requested}' is not a version number like 3.11 or 3.11.7."
        )
    candidates: list[tuple[tuple[int, ...], str]] = []
    if _matches(requested, current):
        candidates.append((current, sys.executable))
    major_minor = ".".join(requested.split(".")[:2])
    for name in (f"python{major_minor}", "python3", "python"):
        path = shutil.which(name)
        if path and "/shims/" not in path:
            version = _version_of(path)
            if version and _matches(requested, version):
                candidates.append((version, path))
    candidates += [(v, p) for v, p in _pyenv_versions() if _matches(requested, v)]
    if not candidates:
        have = sorted(
            {".".join(map(str, v)) for v, _ in _pyenv_versions()} | {".".join(map(str, current))}
        )
        raise EnvironmentUnavailable(
            f"The project needs Python {requested}, which is not installed here (found "
            f"{', '.join(have)}; evtrack never downloads interpreters): install it, e.g. "
            f"`pyenv install {requested}` or your system's python{major_minor} package, or run "
            "with --env-manager local to use the current interpreter."
        )
    version, path = max(candidates, key=lambda c: c[0])
    return path, ".".join(map(str, version))
