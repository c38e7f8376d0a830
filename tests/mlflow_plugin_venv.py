"""A cached virtualenv where stock ``mlflow`` runs with evtrack installed as its plugin.

The plugin runs inside MLflow's own process, so its tests need an interpreter that has
both: the ``mlflow`` venv of :mod:`tests.mlflow_venv` (built first, reused as is) plus
evtrack installed from this checkout so that its ``mlflow.*`` entry points are
registered. To avoid a second multi-minute install of MLflow, the plugin venv sees the
MLflow venv's packages through a ``.pth`` file and gets only evtrack (editable, so code
changes need no rebuild) and evtrack's own dependencies installed into itself.

* location: ``~/.cache/evtrack/mlflow-plugin-venv-<mlflow version>-<checkout hash>``;
* rebuilt when ``pyproject.toml`` (the entry points) changes: the marker holds its hash.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import venv
from pathlib import Path

import pytest
from mlflow_venv import (
    MLFLOW_VERSION,
    MlflowVenvUnavailable,
    _python_in,
    _run,
    ensure_mlflow_venv,
)

ROOT = Path(__file__).resolve().parent.parent
_MARKER = ".evtrack-plugin-ok"


def _site_packages(python: Path) -> str:
    out = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def plugin_venv_dir() -> Path:
    checkout = hashlib.sha256(str(ROOT).encode()).hexdigest()[:10]
    return Path.home() / ".cache" / "evtrack" / f"mlflow-plugin-venv-{MLFLOW_VERSION}-{checkout}"


def ensure_plugin_venv() -> Path:
    """The plugin venv's python, (re)built when missing, half-built or out of date."""
    mlflow_python = ensure_mlflow_venv()
    path = plugin_venv_dir()
    python = _python_in(path)
    marker = path / _MARKER
    want = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if marker.exists() and python.exists() and marker.read_text().strip() == want:
        return python
    venv.EnvBuilder(with_pip=True, clear=True).create(path)
    (Path(_site_packages(python)) / "_evtrack_mlflow_venv.pth").write_text(
        _site_packages(mlflow_python) + "\n"
    )
    log = path / "build.log"
    _run([str(python), "-m", "pip", "install", "-q", "-e", f"{ROOT}[s3]"], log)
    _run([str(python), "-c", "import mlflow, evtrack.mlflow_plugin.tracking_store"], log)
    marker.write_text(want + "\n")
    return python


@pytest.fixture(scope="session", name="plugin_python")
def plugin_python_fixture() -> Path:
    try:
        return ensure_plugin_venv()
    except (MlflowVenvUnavailable, OSError, subprocess.SubprocessError) as exc:
        import required

        required.missing(
            "mlflow", f"cannot build the mlflow plugin venv at {plugin_venv_dir()}: {exc}"
        )
        raise  # not reached: missing() fails or skips


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    print(ensure_plugin_venv())
