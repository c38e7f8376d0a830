"""Finding a Python interpreter of a given version on this machine, never downloading one.

The interpreter running evtrack is used when it matches (nothing else is looked at, so a
warm run starts no probe). Otherwise: pyenv's installs (``<root>/versions/X.Y.Z``, the root
being ``~/.pyenv`` or the one of the ``pyenv`` command or shims on ``PATH``), read by
name, and ``pythonX.Y`` on ``PATH`` (``python3`` / ``python`` only when nothing matched),
asked for its version by one quick subprocess. A requested ``3.11`` matches any
``3.11.x`` (the newest wins), ``3.11.7`` only itself. pyenv's shims are skipped: they
answer for whatever version is selected in the current folder, not for the one asked.
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
    if _matches(requested, current):  # the interpreter running evtrack will do: no probes
        return sys.executable, ".".join(map(str, current))
    candidates = [(v, p) for v, p in _pyenv_versions() if _matches(requested, v)]
    known = {os.path.realpath(p) for _, p in candidates} | {os.path.realpath(sys.executable)}
    major_minor = ".".join(requested.split(".")[:2])
    for name in (f"python{major_minor}", "python3", "python"):
        path = shutil.which(name)
        if not path or "/shims/" in path or os.path.realpath(path) in known:
            continue
        if candidates and name != f"python{major_minor}":
            break  # python3/python are probed only when nothing better was found
        known.add(os.path.realpath(path))
        version = _version_of(path)
        if version and _matches(requested, version):
            candidates.append((version, path))
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
