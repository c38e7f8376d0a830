"""``local``: run the command in the current environment, as MLflow's ``--env-manager local``.

Nothing is built and ``PATH`` is left as it is, so ``python`` in a command is whatever
interpreter the caller's environment resolves it to (an activated virtualenv, pyenv's
shim...), which may not be the one running ``evtrack run``: whether it has ``mlflow`` is
therefore unknown, and a loopback server is started for MLflow clients unless the
``python`` on PATH is this very interpreter and it has no ``mlflow``.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys

from evtrack.projects.environments.base import BuildContext, EnvManager, Prepared, register
from evtrack.projects.spec import Project

__all__ = ["LocalManager"]


@register
class LocalManager(EnvManager):
    name = "local"

    def prepare(self, project: Project, ctx: BuildContext) -> Prepared:
        return Prepared(self.name, has_mlflow=_mlflow_on_path_python())


def _mlflow_on_path_python() -> bool | None:
    python = shutil.which("python")
    if python is None or os.path.realpath(python) != os.path.realpath(sys.executable):
        return None
    return importlib.util.find_spec("mlflow") is not None
