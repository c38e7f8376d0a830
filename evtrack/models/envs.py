"""Environment managers for ``evtrack models serve --env-manager uv|virtualenv``:
rebuild the model's environment from its ``python_env.yaml`` and ``requirements.txt``,
install evtrack into it, and run the server there.

Managers are a registry (``ENV_MANAGERS``), not an if-chain. Environments are cached
under ``~/.cache/evtrack/envs/<hash>`` keyed by the manager, Python version and
requirements, built in a temporary folder and renamed into place, so an interrupted
build is never reused. Limits: the Python version must already be installed (``uv``
is asked with ``--python-preference only-system``, so it never downloads an
interpreter); ``mlflow`` pins in requirements written by MLflow are dropped (evtrack
serves the model); evtrack is installed from the source tree it runs from when there
is one, else from the package index at the same version.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from evtrack.errors import EvtrackError, InvalidParameterValue

__all__ = ["ENV_MANAGERS", "build_env", "reexec_in_env"]


def _python_version(model_dir: str) -> str:
    import yaml

    path = os.path.join(model_dir, "python_env.yaml")
    if not os.path.exists(path):
        return f"{sys.version_info.major}.{sys.version_info.minor}"
    with open(path) as f:
        version = str((yaml.safe_load(f) or {}).get("python") or "")
    parts = version.split(".")
    return (
        ".".join(parts[:2])
        if len(parts) >= 2
        else f"{sys.version_info.major}.{sys.version_info.minor}"
    )


def _requirements(model_dir: str) -> list[str]:
    path = os.path.join(model_dir, "requirements.txt")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        lines = [ln.strip() for ln in f if ln.strip() and not ln.lstrip().startswith("#")]
    # MLflow lists itself; evtrack is the server here
    return [ln for ln in lines if not ln.lower().startswith(("mlflow", "evtrack"))]


def _evtrack_requirement() -> str:
    import evtrack

    source = Path(evtrack.__file__).resolve().parent.parent
    if (source / "pyproject.toml").exists():
        return f"{source}[serve]"
    return f"evtrack[serve]=={evtrack.__version__}"


def _run(cmd: list[str], what: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise EvtrackError(f"{what} failed ({' '.join(cmd[:3])} …):\n{proc.stderr[-2000:]}")


def _uv(env: Path, python: str, reqs: list[str]) -> None:
    uv = shutil.which("uv")
    if uv is None:
        raise InvalidParameterValue("--env-manager uv needs the `uv` command on PATH.")
    _run([uv, "venv", "--python", python, "--python-preference", "only-system", str(env)],
         f"Creating a Python {python} environment with uv")  # fmt: skip
    _run([uv, "pip", "install", "--python", str(env / "bin" / "python"), *reqs],
         "Installing the model's requirements with uv")  # fmt: skip


def _virtualenv(env: Path, python: str, reqs: list[str]) -> None:
    interpreter = shutil.which(f"python{python}")
    if interpreter is None:
        raise InvalidParameterValue(
            f"The model needs Python {python}, which is not installed here (no python{python} "
            "on PATH); install it or serve with --env-manager local."
        )
    _run([sys.executable, "-m", "virtualenv", "-p", interpreter, str(env)],
         f"Creating a Python {python} virtualenv")  # fmt: skip
    _run([str(env / "bin" / "python"), "-m", "pip", "install", "-q", *reqs],
         "Installing the model's requirements with pip")  # fmt: skip


ENV_MANAGERS: dict[str, Callable[[Path, str, list[str]], None]] = {
    "uv": _uv,
    "virtualenv": _virtualenv,
}


def build_env(model_dir: str, manager: str, cache: str | None = None) -> Path:
    """The cached environment's folder for this model (built when missing)."""
    if manager not in ENV_MANAGERS:
        raise InvalidParameterValue(
            f"Unknown env manager {manager!r}: use local, {', '.join(ENV_MANAGERS)}."
        )
    python = _python_version(model_dir)
    reqs = [*_requirements(model_dir), _evtrack_requirement()]
    key = hashlib.sha256("\n".join([manager, python, *reqs]).encode()).hexdigest()[:20]
    root = Path(cache or Path.home() / ".cache" / "evtrack" / "envs")
    env = root / f"{manager}-{key}"
    if (env / ".evtrack-env-ok").exists():
        return env
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{manager}-{key}-", dir=root))
    shutil.rmtree(tmp)
    try:
        ENV_MANAGERS[manager](tmp, python, reqs)
        (tmp / ".evtrack-env-ok").write_text("\n".join(reqs) + "\n")
        try:
            tmp.rename(env)
        except OSError:  # another process finished first: use its env
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return env


def reexec_in_env(model_dir: str, manager: str, cli_args: list[str]) -> None:
    """Replace this process with ``python -m evtrack.cli <cli_args> --env-manager local``
    inside the model's environment (signals then reach the server directly)."""
    env = build_env(model_dir, manager)
    python = str(env / "bin" / "python")
    os.execv(python, [python, "-m", "evtrack.cli", *cli_args, "--env-manager", "local"])
