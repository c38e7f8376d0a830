"""``docker``: ``docker run`` of the project's ``docker_env`` image.

The command line::

    docker run --rm --network host -v PROJECT:/mlflow/projects/code -w /mlflow/projects/code
        [-v ARTIFACTS:ARTIFACTS] [-v <docker_env volumes>] [-e NAME=VALUE ...] [-A args] IMAGE
        sh -c COMMAND

* the project folder is mounted where MLflow puts it, and is the working directory;
* ``--network host`` lets the container reach the loopback tracking server the runner
  starts (the child gets ``MLFLOW_TRACKING_URI``/``EVTRACK_TRACKING_URI`` pointing at it),
  unless ``-A network=...`` chooses another network;
* a local artifact folder of the run is mounted at the same path, so an MLflow client in
  the container writes artifacts where the run's ``artifact_uri`` says;
* ``docker_env.environment`` entries are passed (``[NAME, value]`` pairs, or names copied
  from the host, which must be set);
* ``--build-image`` first builds ``<project name>:<commit[:7] or latest>`` from the
  project's ``Dockerfile`` if it has one, otherwise from ``FROM <image>`` + the project
  copied to ``/mlflow/projects/code``, and runs that.

Not run against a real Docker daemon here (the build machine has none): the tests check
these command lines through a stand-in ``docker`` on PATH.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping

from evtrack.projects.cache import cache_dir
from evtrack.projects.environments.base import (
    BuildContext,
    EnvironmentUnavailable,
    EnvManager,
    Prepared,
    register,
)
from evtrack.projects.environments.build import BuildFailed, run_step
from evtrack.projects.spec import Project

__all__ = ["DockerManager", "WORKDIR", "docker_arg_flags"]

WORKDIR = "/mlflow/projects/code"


def docker_arg_flags(docker_args: Mapping[str, str | bool]) -> list[str]:
    """MLflow's ``-A name=value`` / ``-A name`` as docker flags (one letter: ``-n``)."""
    flags: list[str] = []
    for name, value in docker_args.items():
        flag = f"-{name}" if len(name) == 1 else f"--{name}"
        flags += [flag] if value is True else [flag, str(value)]
    return flags


class _DockerPrepared(Prepared):
    def __init__(self, base: list[str], image: str, **kwargs) -> None:
        super().__init__("docker", remote=True, **kwargs)
        self._base, self._image = base, image

    def argv(self, command: str, child_env: Mapping[str, str]) -> list[str]:
        env = [f for k, v in child_env.items() for f in ("-e", f"{k}={v}")]
        return [*self._base, *env, self._image, "sh", "-c", command]


@register
class DockerManager(EnvManager):
    name = "docker"

    def check(self, project: Project) -> None:
        if project.docker_env is None:
            raise EnvironmentUnavailable(
                "--env-manager docker needs a docker_env section in MLproject (with an image); "
                "this project has none: use --env-manager uv, virtualenv, conda or local."
            )
        docker = shutil.which("docker")
        if docker is None:
            raise EnvironmentUnavailable(
                "--env-manager docker needs Docker: install it (https://docs.docker.com/"
                "engine/install/), or run the project with --env-manager local."
            )
        info = subprocess.run([docker, "info"], capture_output=True, text=True)
        if info.returncode != 0:
            raise EnvironmentUnavailable(
                "Docker is installed but its daemon does not answer (`docker info` failed: "
                f"{(info.stderr or info.stdout).strip()[-300:]}): start it, or use "
                "--env-manager local."
            )
        for entry in project.docker_env.get("environment") or []:
            if isinstance(entry, str) and entry not in os.environ:
                raise EnvironmentUnavailable(
                    f"The project's docker_env copies the environment variable {entry} from "
                    "this machine, and it is not set: export it first."
                )

    def prepare(self, project: Project, ctx: BuildContext) -> Prepared:
        assert project.docker_env is not None
        docker = shutil.which("docker") or "docker"
        image = str(project.docker_env["image"])
        tags = {}
        build_log = None
        if ctx.build_image:
            image, build_log = _build_image(docker, project, ctx)
        tags["mlflow.docker.image.uri"] = image
        base = [docker, "run", "--rm"]
        if not any(k in ("network", "net") for k in ctx.docker_args):
            base += ["--network", "host"]
        base += ["-v", f"{project.directory}:{WORKDIR}", "-w", WORKDIR]
        if ctx.artifact_dir:
            base += ["-v", f"{ctx.artifact_dir}:{ctx.artifact_dir}"]
        for volume in project.docker_env.get("volumes") or []:
            base += ["-v", volume]
        env: dict[str, str] = {}
        for entry in project.docker_env.get("environment") or []:
            if isinstance(entry, list):
                env[str(entry[0])] = str(entry[1])
            else:
                env[entry] = ctx.environ[entry]
        for key, value in env.items():
            base += ["-e", f"{key}={value}"]
        base += docker_arg_flags(ctx.docker_args)
        return _DockerPrepared(base, image, has_mlflow=None, build_log=build_log, tags=tags)


def _build_image(docker: str, project: Project, ctx: BuildContext) -> tuple[str, str]:
    commit = ctx.source.git_commit
    # Docker repository names: lowercase letters, digits and . _ - only.
    name = re.sub(r"[^a-z0-9._-]+", "-", (project.name or "evtrack-project").lower()).strip("-._")
    tag = f"{name or 'evtrack-project'}:{commit[:7] if commit else 'latest'}"
    dockerfile = os.path.join(project.directory, "Dockerfile")
    tmp = None
    if not os.path.isfile(dockerfile):
        image = (project.docker_env or {}).get("image")  # only docker_env projects get here
        fd, tmp = tempfile.mkstemp(prefix="Dockerfile.evtrack-")
        with os.fdopen(fd, "w") as f:
            f.write(f"FROM {image}\nCOPY . {WORKDIR}/\nWORKDIR {WORKDIR}\n")
        dockerfile = tmp
    log_path = os.path.join(cache_dir("envs"), f"docker-{tag.replace(':', '-')}.log")
    what = f"docker image {tag}"
    print(f"=== Building {what} ===", file=ctx.out, flush=True)
    try:
        with open(log_path, "w", encoding="utf-8") as log:
            argv = [docker, "build", "-t", tag, "-f", dockerfile, project.directory]
            run_step(argv, log, ctx.out, what)
    except BuildFailed as exc:
        exc.log_path = log_path
        raise
    finally:
        if tmp:
            os.unlink(tmp)
    return tag, log_path
