"""``uv`` and ``virtualenv``: a virtual environment built from ``python_env.yaml`` (or a
translated ``conda.yaml``), cached by the hash of its definition.

Both find the interpreter locally (:mod:`.interpreters`) and never download one; ``uv``
additionally runs with ``--python-preference only-system --no-python-downloads``. The
child runs with the environment's ``bin/`` first on ``PATH`` and ``VIRTUAL_ENV`` set,
which is what activating it does. ``uv`` is the default manager for Python projects
whenever it is installed (on PATH, or the ``uv`` PyPI package); it builds in seconds
where virtualenv + pip take tens of seconds (see ``docs/projects.md``).
"""

from __future__ import annotations

import glob
import importlib.util
import os
import shutil
import sys

from evtrack.projects.cache import content_hash
from evtrack.projects.environments.base import (
    BuildContext,
    EnvironmentUnavailable,
    EnvManager,
    Prepared,
    register,
)
from evtrack.projects.environments.build import Step, cached_build
from evtrack.projects.environments.interpreters import find_python
from evtrack.projects.environments.python_env import PythonEnv, load_python_env
from evtrack.projects.spec import Project

__all__ = ["UvManager", "VirtualenvManager", "find_uv"]


def find_uv() -> str | None:
    """The uv executable: on PATH, or the one the ``uv`` PyPI package ships."""
    path = shutil.which("uv")
    if path:
        return path
    if importlib.util.find_spec("uv") is not None:
        from uv import find_uv_bin

        try:
            return find_uv_bin()
        except FileNotFoundError:
            return None
    return None


def _has_package(folder: str, package: str) -> bool:
    return bool(glob.glob(os.path.join(folder, "lib", "python*", "site-packages", package)))


class _VenvManager(EnvManager):
    _plan: tuple[PythonEnv, str, str] | None = None

    def _check_tool(self) -> None:
        raise NotImplementedError

    def check(self, project: Project) -> None:
        """The tool, the environment file and its interpreter: errors before the run starts."""
        if project.env_type == "docker_env":
            raise EnvironmentUnavailable(
                f"This project declares docker_env: run it with --env-manager docker "
                f"(or local), not {self.name}."
            )
        self._check_tool()
        env = load_python_env(project.env_type, project.env_file)
        self._plan = (env, *find_python(env.python))

    def _build(self, folder: str, step: Step, python: str, env: PythonEnv, cwd: str) -> None:
        raise NotImplementedError

    def prepare(self, project: Project, ctx: BuildContext) -> Prepared:
        if self._plan is None:
            self.check(project)
        assert self._plan is not None
        env, python, version = self._plan
        what = (
            f"{self.name} environment (Python {version}, "
            f"{len(env.dependencies)} requirement{'s' * (len(env.dependencies) != 1)})"
        )
        folder, log = cached_build(
            self.name,
            content_hash(self.name, version, env),
            what,
            lambda f, step: self._build(f, step, python, env, project.directory),
            ctx.out,
        )
        bin_dir = os.path.join(folder, "bin")
        return Prepared(
            self.name,
            env={"PATH": bin_dir + os.pathsep + ctx.environ.get("PATH", ""), "VIRTUAL_ENV": folder},
            has_mlflow=_has_package(folder, "mlflow"),
            build_log=log,
            isolated=True,
        )


@register
class UvManager(_VenvManager):
    name = "uv"

    def _check_tool(self) -> None:
        if find_uv() is None:
            raise EnvironmentUnavailable(
                "--env-manager uv needs uv: `pip install uv` (or see "
                "https://docs.astral.sh/uv/), or use --env-manager virtualenv or local."
            )

    def _build(self, folder: str, step: Step, python: str, env: PythonEnv, cwd: str) -> None:
        uv = find_uv()
        assert uv is not None
        no_downloads = ["--python-preference", "only-system", "--no-python-downloads"]
        step([uv, "venv", "--no-config", *no_downloads, "--python", python, folder])
        target = ["--python", os.path.join(folder, "bin", "python")]
        if env.build_dependencies:
            step([uv, "pip", "install", "--no-config", *target, *env.build_dependencies], cwd=cwd)
        if env.dependencies:
            step([uv, "pip", "install", "--no-config", *target, *_args(env.dependencies)], cwd=cwd)


@register
class VirtualenvManager(_VenvManager):
    name = "virtualenv"

    def _check_tool(self) -> None:
        if importlib.util.find_spec("virtualenv") is None and not shutil.which("virtualenv"):
            raise EnvironmentUnavailable(
                "--env-manager virtualenv needs virtualenv: `pip install virtualenv`, or use "
                "--env-manager uv or local."
            )

    def _build(self, folder: str, step: Step, python: str, env: PythonEnv, cwd: str) -> None:
        if importlib.util.find_spec("virtualenv") is not None:
            create = [sys.executable, "-m", "virtualenv"]
        else:
            create = [shutil.which("virtualenv") or "virtualenv"]
        step([*create, "--quiet", "--python", python, folder])
        pip = [os.path.join(folder, "bin", "python"), "-m", "pip", "install"]
        pip += ["--disable-pip-version-check", "--no-input"]
        if env.build_dependencies:
            step([*pip, *env.build_dependencies], cwd=cwd)
        if env.dependencies:
            step([*pip, *_args(env.dependencies)], cwd=cwd)


def _args(deps: tuple[str, ...]) -> list[str]:
    """Requirement strings as installer arguments: ``-r file`` lines split in two."""
    out: list[str] = []
    for dep in deps:
        parts = dep.split(None, 1)
        if parts and parts[0] in ("-r", "--requirement", "-c", "--constraint") and len(parts) == 2:
            out += parts
        else:
            out.append(dep)
    return out
