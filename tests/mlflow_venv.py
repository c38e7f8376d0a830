"""A separate, cached virtualenv with the real ``mlflow``, used as a peer to compare against.

MLflow is never a dependency of evtrack: importing it into the test process would let
its import-time side effects (logging config, environment variables, plugins) leak into
evtrack's tests and would hide missing dependencies of our own. So the comparison tests
run MLflow in its own interpreter, in a virtualenv built once and cached:

* location: ``$EVTRACK_MLFLOW_VENV`` or ``~/.cache/evtrack/mlflow-venv-<version>``;
* built with ``python -m venv`` + ``pip install mlflow==<version>`` (a few minutes, once);
* a marker file written after a successful import check means "complete", so a build
  killed halfway is detected and redone instead of being trusted;
* a test that needs it and cannot get it fails (see ``required.py``); only
  ``EVTRACK_TEST_ALLOW_MISSING=mlflow`` turns that into a skip, and then nothing is built.

Run ``python tests/mlflow_venv.py`` to build it ahead of time; it prints the python path.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

# 3.18.0 is on the index here but cannot be installed: it pins mlflow-skinny==3.18.0,
# which was never published to it (the newest skinny is 3.17.2). 3.17.2 is the newest
# release whose whole dependency set resolves; bump both together when that changes.
MLFLOW_VERSION = "3.17.2"
_MARKER = ".evtrack-mlflow-ok"
# One pip install of mlflow and its dependencies on a 2-core machine; generous on purpose.
_BUILD_TIMEOUT_S = 1800


class MlflowVenvUnavailable(RuntimeError):
    """The venv could not be built here (no network to PyPI, pip failure...)."""


def venv_dir() -> Path:
    """Where the venv lives: ``$EVTRACK_MLFLOW_VENV`` or the per-user cache."""
    override = os.environ.get("EVTRACK_MLFLOW_VENV")
    if override:
        return Path(override).expanduser()
    return Path.home() / ".cache" / "evtrack" / f"mlflow-venv-{MLFLOW_VERSION}"


def _python_in(path: Path) -> Path:
    return path / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _run(cmd: list[str], log: Path) -> None:
    with log.open("ab") as out:
        out.write(("\n$ " + " ".join(cmd) + "\n").encode())
        out.flush()
        proc = subprocess.run(
            cmd, stdout=out, stderr=subprocess.STDOUT, timeout=_BUILD_TIMEOUT_S, check=False
        )
    if proc.returncode != 0:
        tail = log.read_text(errors="replace")[-2000:]
        raise MlflowVenvUnavailable(
            f"{' '.join(cmd[:4])}... exited {proc.returncode}; log {log}:\n{tail}"
        )


def ensure_mlflow_venv() -> Path:
    """Return the venv's python, building the venv first if it is missing or incomplete.

    Raises :class:`MlflowVenvUnavailable` with the tail of the build log on failure.
    Not safe against two processes building the same directory at once; pytest-xdist
    users should build it ahead of time with ``python tests/mlflow_venv.py``.
    """
    path = venv_dir()
    python = _python_in(path)
    marker = path / _MARKER
    if marker.exists() and python.exists():
        return python
    if path.exists():
        shutil.rmtree(path)  # half-built: never trust it
    path.parent.mkdir(parents=True, exist_ok=True)
    venv.EnvBuilder(with_pip=True, clear=True).create(path)
    log = path / "build.log"
    _run([str(python), "-m", "pip", "install", "-q", "--upgrade", "pip"], log)
    # psycopg: the driver SQLAlchemy 2.1 uses for postgresql:// (the PostgreSQL import test).
    _run([str(python), "-m", "pip", "install", "-q", f"mlflow=={MLFLOW_VERSION}",
          "psycopg[binary]==3.3.9"], log)  # fmt: skip
    _run([str(python), "-c", "import mlflow, sys; print(mlflow.__version__)"], log)
    marker.write_text(MLFLOW_VERSION + "\n")
    return python


def require_mlflow_python() -> Path:
    """The MLflow venv's python, built if needed; a missing venv fails the test (see
    ``required.py``) unless ``EVTRACK_TEST_ALLOW_MISSING`` includes ``mlflow``."""
    import required

    ready = (venv_dir() / _MARKER).exists() and _python_in(venv_dir()).exists()
    if not ready and "mlflow" in required.allowed_missing():
        required.missing("mlflow", f"the mlflow=={MLFLOW_VERSION} venv is not built")
    try:
        return ensure_mlflow_venv()
    except (MlflowVenvUnavailable, OSError, subprocess.TimeoutExpired) as exc:
        required.missing(
            "mlflow", f"cannot build the mlflow=={MLFLOW_VERSION} venv at {venv_dir()}: {exc}"
        )
        raise  # not reached: missing() fails or skips


@pytest.fixture(scope="session", name="mlflow_python")
def mlflow_python_fixture() -> Path:
    """The MLflow venv's python (see :func:`require_mlflow_python`)."""
    return require_mlflow_python()


if __name__ == "__main__":
    try:
        print(ensure_mlflow_venv())
    except (MlflowVenvUnavailable, OSError, subprocess.TimeoutExpired) as exc:
        print(f"cannot build the mlflow venv: {exc}", file=sys.stderr)
        sys.exit(1)
