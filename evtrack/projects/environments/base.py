"""What an environment manager is, and the registry that names them.

A manager turns a project into a :class:`Prepared` environment in two steps:

* :meth:`EnvManager.check` runs before the run is created and must be quick: it fails
  at once, with what to install or which ``--env-manager`` to use, when its tool is absent;
* :meth:`EnvManager.prepare` builds (or finds in the cache) the environment. It may take
  minutes; a failure there ends the run FAILED with the reason, and leaves nothing
  half-built behind.

Managers register themselves with :func:`register` (``local``, ``uv``, ``virtualenv``,
``conda``, ``docker``); :func:`get_manager` imports them lazily.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING

from evtrack.errors import InvalidParameterValue

if TYPE_CHECKING:  # pragma: no cover
    from evtrack.projects.sources import Source
    from evtrack.projects.spec import Project

__all__ = [
    "MANAGER_MODULES",
    "BuildContext",
    "EnvManager",
    "EnvironmentUnavailable",
    "Prepared",
    "get_manager",
    "register",
]


class EnvironmentUnavailable(InvalidParameterValue):
    """The environment manager asked for cannot run here (its tool is not installed)."""


@dataclass(frozen=True)
class BuildContext:
    """What a build may use: where progress goes, the run it is for, docker options."""

    source: Source
    out: IO[str]
    build_image: bool = False
    docker_args: Mapping[str, str | bool] = field(default_factory=dict)
    #: The run's artifact folder when it is local (a container gets it mounted).
    artifact_dir: str | None = None
    #: The environment the child starts from (the runner's, decided in one place).
    environ: Mapping[str, str] = field(default_factory=dict)


@dataclass
class Prepared:
    """A ready environment: how to run a shell command line in it."""

    #: ``mlflow.project.env`` tag value.
    name: str
    #: Environment variables set for the child on top of the runner's (PATH, VIRTUAL_ENV).
    env: dict[str, str] = field(default_factory=dict)
    #: Whether ``import mlflow`` works in it: False only when known to be absent, in which
    #: case no loopback server is started for MLflow clients.
    has_mlflow: bool | None = None
    #: The child runs elsewhere (a container): tracking must go through the loopback server.
    remote: bool = False
    #: The build log to keep with the run (None: nothing was built).
    build_log: str | None = None
    #: Extra run tags (``mlflow.docker.image.uri``...).
    tags: dict[str, str] = field(default_factory=dict)
    #: argv prefix that runs ``bash -c <command>`` in the environment (empty: run directly).
    prefix: Sequence[str] = ()
    #: A built environment: the runner's ``PYTHONPATH``/``PYTHONHOME`` are not passed in
    #: (they point at the runner's packages, maybe for another Python version).
    isolated: bool = False

    def argv(self, command: str, child_env: Mapping[str, str]) -> list[str]:
        """The argv that runs the shell ``command``; ``child_env`` is what the child must
        see (a container needs it passed explicitly)."""
        return [*self.prefix, "bash", "-c", command]


class EnvManager:
    """Base of the managers: a name and the two steps described in the module docstring."""

    name = ""

    def check(self, project: Project) -> None:
        """Fail at once (:class:`EnvironmentUnavailable`) when this manager cannot run."""

    def prepare(self, project: Project, ctx: BuildContext) -> Prepared:
        raise NotImplementedError


_REGISTRY: dict[str, type[EnvManager]] = {}

#: name -> module that registers it; imported on first use so `evtrack run` stays quick.
MANAGER_MODULES = {
    "local": "evtrack.projects.environments.local",
    "uv": "evtrack.projects.environments.venvs",
    "virtualenv": "evtrack.projects.environments.venvs",
    "conda": "evtrack.projects.environments.conda",
    "docker": "evtrack.projects.environments.docker",
}


def register(cls: type[EnvManager]) -> type[EnvManager]:
    """Class decorator: make ``cls`` available as ``--env-manager cls.name``."""
    _REGISTRY[cls.name] = cls
    return cls


def get_manager(name: str) -> EnvManager:
    if name not in _REGISTRY and name in MANAGER_MODULES:
        importlib.import_module(MANAGER_MODULES[name])
    if name not in _REGISTRY:
        raise InvalidParameterValue(
            f"Unknown environment manager '{name}': use one of {', '.join(MANAGER_MODULES)}."
        )
    return _REGISTRY[name]()
