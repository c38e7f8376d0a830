"""Environment managers for project runs: ``local``, ``uv``, ``virtualenv``, ``conda``,
``docker`` (see :mod:`.base` for the interface and the registry)."""

from __future__ import annotations

from evtrack.projects.environments.base import (
    MANAGER_MODULES,
    BuildContext,
    EnvironmentUnavailable,
    EnvManager,
    Prepared,
    get_manager,
    register,
)
from evtrack.projects.spec import Project

__all__ = [
    "MANAGER_MODULES",
    "BuildContext",
    "EnvManager",
    "EnvironmentUnavailable",
    "Prepared",
    "default_manager",
    "get_manager",
    "register",
]


def default_manager(project: Project) -> str:
    """The manager used when none is asked for.

    ``docker_env`` → docker; a ``conda.yaml`` → conda when conda is installed; otherwise an
    environment file → uv when installed, else virtualenv (MLflow's default); no
    environment file → local (MLflow would build a virtualenv with just mlflow in it).
    """
    if project.env_type == "docker_env":
        return "docker"
    if project.env_file is None:
        return "local"
    if project.env_type == "conda_env":
        from evtrack.projects.environments.conda import find_conda

        if find_conda():
            return "conda"
    from evtrack.projects.environments.venvs import find_uv

    return "uv" if find_uv() else "virtualenv"
