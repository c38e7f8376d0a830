"""Helpers shared by the test modules (fixtures live in conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import evtrack

ROOT = Path(__file__).resolve().parent.parent


def events_snapshot(client: evtrack.MlflowClient) -> list[dict]:
    """Every event in the store (the rows of the ``events`` view), ordered by identity.

    What "the store is unchanged" compares. Read as Arrow, without DuckDB: a hundred
    times cheaper than ``select * from events``, and bad-input tests take many.
    """
    from evtrack.store.log.views import load_events

    client.flush()
    rows = load_events(client.store.layout).to_pylist()
    return sorted(rows, key=lambda r: (r["writer"], r["seq"]))


def subprocess_env(tracking_uri: str | os.PathLike[str] | None = None, **extra: str) -> dict:
    """The environment for a child Python process: this one's, minus evtrack settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVTRACK_")}
    if "EVTRACK_INDEX_CACHE_DIR" in os.environ:  # saved run indexes: the test's folder
        env["EVTRACK_INDEX_CACHE_DIR"] = os.environ["EVTRACK_INDEX_CACHE_DIR"]
    if tracking_uri is not None:
        env["EVTRACK_TRACKING_URI"] = str(tracking_uri)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def run_python(
    code: str, *args: str, env: dict, timeout: float = 60, cwd: str | None = None
) -> subprocess.CompletedProcess:
    """Run ``python -c code`` to completion; fail the test with its stderr if it fails."""
    proc = subprocess.run(
        [sys.executable, "-c", code, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
    )
    assert proc.returncode == 0, f"child failed ({proc.returncode}):\n{proc.stderr}"
    return proc


def captured_segment(
    fill: Callable[[Any], None], writer_id: str | None = None
) -> tuple[str, bytes]:
    """``(name, bytes)`` of the one segment a writer flushes after ``fill(writer)``, built
    without a store: what a remote client's writer PUTs to ``/api/evtrack/segments/``."""
    from evtrack.store.log.writer import Writer

    class Capture:
        uri, is_local = "capture", False

        def __init__(self) -> None:
            self.got: list[tuple[str, bytes]] = []

        def events_dir(self, experiment_id: str) -> str:
            return experiment_id

        def put(self, path: str, data: bytes, create_only: bool = False) -> None:
            self.got.append((path, data))

    cap = Capture()
    w = Writer(cap)
    if writer_id:
        w.id = writer_id
    fill(w)
    w.flush()
    path, data = cap.got[0]
    return path.split("/", 1)[1], data


def make_project(folder: Path, mlproject: str | None, **files: str) -> Path:
    """A project folder: an ``MLproject`` (dedented) and files (``train__py`` -> ``train.py``)."""
    import textwrap

    folder.mkdir(parents=True, exist_ok=True)
    if mlproject is not None:
        (folder / "MLproject").write_text(textwrap.dedent(mlproject))
    for name, text in files.items():
        (folder / name.replace("__", ".")).write_text(textwrap.dedent(text))
    return folder
