"""``conda``: ``conda env create`` from the project's ``conda.yaml``, then ``conda run``.

The first of ``conda``, ``mamba``, ``micromamba`` on PATH is used. The environment is
created by prefix inside the projects cache (``envs/conda-<hash of conda.yaml>``), not by
name, so it never collides with the user's own environments and removing the cache
removes it. The command runs as ``conda run --prefix ENV --no-capture-output bash -c
COMMAND`` so output streams live. Not tested against a real conda here (none can be
installed on the build machine): the tests check the exact command lines through a
stand-in ``conda`` on PATH.
"""

from __future__ import annotations

import glob
import os
import shutil

from evtrack.projects.cache import content_hash
from evtrack.projects.environments.base import (
    BuildContext,
    EnvironmentUnavailable,
    EnvManager,
    Prepared,
    register,
)
from evtrack.projects.environments.build import Step, cached_build
from evtrack.projects.spec import Project

__all__ = ["CondaManager", "find_conda"]

_TOOLS = ("conda", "mamba", "micromamba")


def find_conda() -> str | None:
    for tool in _TOOLS:
        path = shutil.which(tool)
        if path:
            return path
    return None


@register
class CondaManager(EnvManager):
    name = "conda"

    def check(self, project: Project) -> None:
        if project.env_type == "python_env":
            raise EnvironmentUnavailable(
                "This project has a python_env, which conda does not build: run it with "
                "--env-manager uv, virtualenv or local."
            )
        if project.env_type == "docker_env":
            raise EnvironmentUnavailable(
                "This project declares docker_env: run it with --env-manager docker (or local)."
            )
        if project.env_file is None:
            raise EnvironmentUnavailable(
                "--env-manager conda needs a conda.yaml in the project (or conda_env in "
                "MLproject); this project has none: use --env-manager local."
            )
        if find_conda() is None:
            raise EnvironmentUnavailable(
                "--env-manager conda needs conda, mamba or micromamba on PATH: install one "
                "(e.g. Miniforge), or use --env-manager uv or virtualenv, which build a "
                "conda.yaml's pip-installable packages without conda."
            )

    def prepare(self, project: Project, ctx: BuildContext) -> Prepared:
        conda = find_conda()
        assert conda is not None and project.env_file is not None
        micromamba = os.path.basename(conda).startswith("micromamba")
        with open(project.env_file, "rb") as f:
            key = content_hash(os.path.basename(conda), f.read().decode("utf-8", "replace"))

        def build(folder: str, step: Step) -> None:
            create = [conda, "create"] if micromamba else [conda, "env", "create"]
            extra = ["--yes"] if micromamba else []
            step([*create, "--prefix", folder, "--file", project.env_file, *extra])

        folder, log = cached_build(
            "conda", key, f"conda environment from {os.path.basename(project.env_file)}",
            build, ctx.out,
        )  # fmt: skip
        prefix = [conda, "run", "--prefix", folder]
        if not micromamba:
            prefix.append("--no-capture-output")
        has_mlflow = bool(
            glob.glob(os.path.join(folder, "lib", "python*", "site-packages", "mlflow"))
        )
        return Prepared(
            self.name, has_mlflow=has_mlflow, build_log=log, prefix=prefix, isolated=True
        )
