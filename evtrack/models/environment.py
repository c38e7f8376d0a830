"""The environment files of a model folder: ``requirements.txt``, ``python_env.yaml``,
``conda.yaml``, written as MLflow writes them so ``--env-manager`` of either tool
can rebuild the environment.

Requirements are the pinned versions of the packages the flavor needs (scikit-learn,
its serializer, numpy, pandas...), read from the running interpreter; nothing is
inferred by importing the model in a subprocess, as MLflow does, so a model that needs
more packages should list them in ``extra_pip_requirements``.
"""

from __future__ import annotations

import os
import platform
from importlib import metadata

__all__ = ["pinned", "write_environment"]

REQUIREMENTS_FILE = "requirements.txt"
PYTHON_ENV_FILE = "python_env.yaml"
CONDA_ENV_FILE = "conda.yaml"
_BUILD_PACKAGES = ("pip", "setuptools", "wheel")


def pinned(package: str) -> str:
    """``name==version`` for an installed package, ``name`` when it is not installed."""
    try:
        return f"{package}=={metadata.version(package)}"
    except metadata.PackageNotFoundError:
        return package


def write_environment(
    path: str,
    default_requirements: list[str],
    pip_requirements: list[str] | str | None = None,
    extra_pip_requirements: list[str] | str | None = None,
) -> list[str]:
    """Write the three environment files into the model folder; return the requirements."""
    import yaml

    reqs = _read_requirements(pip_requirements) if pip_requirements else list(default_requirements)
    if extra_pip_requirements:
        reqs += [r for r in _read_requirements(extra_pip_requirements) if r not in reqs]
    with open(os.path.join(path, REQUIREMENTS_FILE), "w") as f:
        f.write("\n".join(reqs))
    python = platform.python_version()
    build = [pinned(p) for p in _BUILD_PACKAGES]
    with open(os.path.join(path, PYTHON_ENV_FILE), "w") as f:
        yaml.safe_dump(
            {
                "python": python,
                "build_dependencies": build,
                "dependencies": [f"-r {REQUIREMENTS_FILE}"],
            },
            f,
            sort_keys=False,
            default_flow_style=False,
        )
    conda = {
        "channels": ["conda-forge"],
        "dependencies": [f"python={python}", "pip", {"pip": reqs}],
        "name": "mlflow-env",
    }
    with open(os.path.join(path, CONDA_ENV_FILE), "w") as f:
        yaml.safe_dump(conda, f, default_flow_style=False)
    return reqs


def _read_requirements(value: list[str] | str) -> list[str]:
    """A list of requirement strings, or the path of a requirements file."""
    if isinstance(value, str):
        with open(value) as f:
            return [ln.strip() for ln in f if ln.strip() and not ln.lstrip().startswith("#")]
    return [str(v) for v in value]
