"""Projects: run an ``MLproject`` folder or git repository as a recorded run.

``evtrack.projects.run(uri, parameters={...})`` (MLflow's ``mlflow.projects.run``) and
``evtrack run URI -P name=value`` fetch the project (:mod:`.sources`), read its
``MLproject`` (:mod:`.spec`), build or find its environment (:mod:`.environments`:
local, uv, virtualenv, conda, docker) and run its entry point as a child process that
logs into the run (:mod:`.runner`). See ``docs/projects.md``.
"""

from __future__ import annotations

from evtrack.errors import ExecutionError
from evtrack.projects.runner import ERROR_TAG, SubmittedRun, run
from evtrack.projects.spec import EntryPoint, Parameter, Project, load_project

__all__ = [
    "ERROR_TAG",
    "EntryPoint",
    "ExecutionError",
    "Parameter",
    "Project",
    "SubmittedRun",
    "load_project",
    "run",
]
