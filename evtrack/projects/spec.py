"""The ``MLproject`` file, read exactly as MLflow reads it.

A project is a folder with an ``MLproject`` file (the name is matched case-insensitively)::

    name: tutorial
    python_env: python_env.yaml        # or conda_env: conda.yaml, or docker_env: {image: ...}
    entry_points:
      main:
        parameters:
          alpha: {type: float, default: 0.5}
          data: path                   # a bare type: required
        command: "python train.py {alpha} {data}"

Without an ``MLproject`` file, ``python_env.yaml`` or ``conda.yaml`` next to it is the
environment and any ``.py``/``.sh`` file is an entry point.

Where evtrack differs from MLflow on purpose: ``int`` and ``float`` values are checked
(and logged in their parsed form, ``5`` given to a float parameter becomes ``5.0``, the
text a script doing ``float(arg)`` logs itself), before anything starts; MLflow passes
``alpha=abc`` through to the script. An unknown parameter type is an error rather than
being treated as ``string``.
"""

from __future__ import annotations

import math
import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from evtrack.errors import InvalidParameterValue, ResourceDoesNotExist

__all__ = [
    "ENV_TYPES",
    "EntryPoint",
    "Parameter",
    "Project",
    "load_project",
]

MLPROJECT_FILE = "mlproject"
PYTHON_ENV_FILE = "python_env.yaml"
CONDA_ENV_FILE = "conda.yaml"
#: The environment kinds a project can declare: ``python_env``, ``conda_env``, ``docker_env``.
ENV_TYPES = ("python_env", "conda_env", "docker_env")
PARAM_TYPES = ("string", "float", "int", "path", "uri")


def _invalid(message: str) -> InvalidParameterValue:
    return InvalidParameterValue(message)


@dataclass(frozen=True)
class Parameter:
    """One typed entry point parameter; ``default is None`` means required."""

    name: str
    type: str = "string"
    default: Any = None

    @classmethod
    def from_yaml(cls, name: str, value: Any) -> Parameter:
        if isinstance(value, str):  # a bare type, e.g. ``data: path``
            ptype, default = value, None
        elif isinstance(value, Mapping):
            ptype, default = value.get("type", "string"), value.get("default")
        else:
            raise _invalid(
                f"MLproject parameter '{name}' must be a type name or a mapping with 'type' "
                f"and 'default', got {value!r}."
            )
        if ptype not in PARAM_TYPES:
            raise _invalid(
                f"MLproject parameter '{name}' has unknown type '{ptype}': use one of "
                f"{', '.join(PARAM_TYPES)}."
            )
        return cls(str(name), ptype, default)

    def parse(self, value: Any) -> str:
        """The value as text for the command and the run's params, checked for its type.

        ``float`` and ``int`` come back in Python's canonical form (``"5"`` → ``"5.0"``
        for a float), so the param the runner logs equals the one a script logs after
        ``float(sys.argv[1])``; ``path`` and ``uri`` are checked later, when resolved.
        """
        text = str(value)
        if self.type == "float":
            try:
                number = float(text)
            except ValueError:
                raise _invalid(
                    f"Parameter '{self.name}' must be a float, got {text!r} "
                    f"(pass e.g. -P {self.name}=0.5)."
                ) from None
            return repr(number) if math.isfinite(number) else str(number)
        if self.type == "int":
            try:
                return str(int(text))
            except ValueError:
                raise _invalid(
                    f"Parameter '{self.name}' must be an int, got {text!r} "
                    f"(pass e.g. -P {self.name}=10)."
                ) from None
        if self.type == "uri" and not _is_uri(text):
            raise _invalid(
                f"Parameter '{self.name}' must be a URI (scheme://... or a local path), "
                f"got {text!r}."
            )
        return text


def _is_uri(text: str) -> bool:
    # MLflow's data_utils.is_uri: anything with a scheme, or a plain local path.
    return bool(text) and ("://" in text or ":" not in text)


@dataclass(frozen=True)
class EntryPoint:
    """A named command with typed parameters."""

    name: str
    command: str
    parameters: dict[str, Parameter] = field(default_factory=dict)

    def resolve(self, given: Mapping[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
        """``(declared, extra)`` parameter values as text, defaults filled in, types checked.

        Raises :class:`InvalidParameterValue` naming every missing required parameter,
        or the first one whose value has the wrong type.
        """
        missing = [n for n, p in self.parameters.items() if n not in given and p.default is None]
        if missing:
            names = ", ".join(f"'{n}'" for n in missing)
            flags = " ".join(f"-P {n}=..." for n in missing)
            raise _invalid(
                f"No value given for missing parameters: {names} of entry point "
                f"'{self.name}' (pass {flags})."
            )
        declared = {
            name: param.parse(given[name] if name in given else param.default)
            for name, param in self.parameters.items()
        }
        extra = {str(k): str(v) for k, v in given.items() if k not in self.parameters}
        return declared, extra

    def command_line(self, declared: Mapping[str, str], extra: Mapping[str, str]) -> str:
        """The shell command: placeholders filled with shell-quoted values, then the
        parameters the entry point does not declare appended as ``--key value``."""
        try:
            command = self.command.format(**{k: shlex.quote(v) for k, v in declared.items()})
        except (KeyError, IndexError) as exc:
            raise _invalid(
                f"The command of entry point '{self.name}' uses placeholder {exc} that is not "
                f"one of its parameters ({', '.join(self.parameters) or 'none'}): declare it "
                "under 'parameters' in MLproject."
            ) from None
        parts = [command]
        parts += [f"--{shlex.quote(k)} {shlex.quote(v)}" for k, v in extra.items()]
        return " ".join(parts)


@dataclass(frozen=True)
class Project:
    """A parsed project folder: where it is, its environment and its entry points."""

    directory: str
    name: str | None = None
    env_type: str | None = None  # one of ENV_TYPES, or None: no environment file
    env_file: str | None = None  # absolute path of python_env.yaml / conda.yaml
    docker_env: dict[str, Any] | None = None
    entry_points: dict[str, EntryPoint] = field(default_factory=dict)

    def entry_point(self, name: str) -> EntryPoint:
        """The named entry point, or a ``.py``/``.sh`` file of the project run as one."""
        if name in self.entry_points:
            return self.entry_points[name]
        ext = os.path.splitext(name)[1]
        runners = {".py": "python", ".sh": "bash"}
        if ext in runners:
            if not os.path.isfile(os.path.join(self.directory, name)):
                raise ResourceDoesNotExist(
                    f"Entry point file '{name}' does not exist in project {self.directory}."
                )
            return EntryPoint(name, f"{runners[ext]} {shlex.quote(name)}")
        known = ", ".join(repr(n) for n in self.entry_points) or "none"
        raise ResourceDoesNotExist(
            f"Could not find entry point '{name}' among the project's entry points ({known}), "
            "nor run it as a script: pass -e with one of them or a .py/.sh file of the project."
        )


def _find_mlproject(directory: str) -> str | None:
    for filename in os.listdir(directory):
        if filename.lower() == MLPROJECT_FILE:
            return os.path.join(directory, filename)
    return None


def _env_file(directory: str, key: str, relative: Any) -> str:
    if not isinstance(relative, str) or not relative:
        raise _invalid(f"MLproject field '{key}' must be the name of a file in the project.")
    path = os.path.join(directory, relative)
    if not os.path.isfile(path):
        raise ResourceDoesNotExist(
            f"The project names {key}: {relative}, but there is no such file in {directory}."
        )
    return os.path.abspath(path)


def _check_docker_env(docker_env: Any) -> dict[str, Any]:
    where = "MLproject docker_env"
    if not isinstance(docker_env, Mapping) or not docker_env.get("image"):
        raise _invalid(f"{where} must be a mapping with an 'image' (e.g. image: python:3.11).")
    volumes = docker_env.get("volumes") or []
    if not (isinstance(volumes, list) and all(isinstance(v, str) for v in volumes)):
        raise _invalid(f"{where}: volumes must be a list of strings like '/host:/container'.")
    environment = docker_env.get("environment") or []
    ok = isinstance(environment, list) and all(
        isinstance(e, str) or (isinstance(e, list) and len(e) == 2) for e in environment
    )
    if not ok:
        raise _invalid(
            f"{where}: environment must be a list of names to copy from the host or "
            '[name, value] pairs, e.g. [["NEW_VAR", "value"], "VAR_TO_COPY"].'
        )
    return dict(docker_env)


def load_project(directory: str) -> Project:
    """Parse the project in ``directory`` (a local folder)."""
    import yaml

    directory = os.path.abspath(directory)
    if not os.path.isdir(directory):
        raise ResourceDoesNotExist(f"Project folder {directory} does not exist.")
    path = _find_mlproject(directory)
    doc: Any = {}
    if path is not None:
        try:
            with open(path, encoding="utf-8") as f:
                doc = yaml.safe_load(f) or {}
        except yaml.YAMLError as exc:
            raise _invalid(f"{path} is not valid YAML: {exc}") from None
        if not isinstance(doc, Mapping):
            raise _invalid(f"{path} must be a YAML mapping (name, entry_points, ...).")
    envs = [k for k in ENV_TYPES if k in doc]
    if len(envs) > 1:
        raise _invalid(f"A project declares one environment, {path} has {', '.join(envs)}.")

    entry_points = {}
    raw_entry_points = doc.get("entry_points") or {}
    if not isinstance(raw_entry_points, Mapping):
        raise _invalid(f"{path}: entry_points must be a mapping of name -> {{command, ...}}.")
    for name, ep in raw_entry_points.items():
        if not isinstance(ep, Mapping) or not isinstance(ep.get("command"), str):
            raise _invalid(f"{path}: entry point '{name}' needs a 'command' string.")
        params = ep.get("parameters") or {}
        if not isinstance(params, Mapping):
            raise _invalid(f"{path}: parameters of entry point '{name}' must be a mapping.")
        entry_points[str(name)] = EntryPoint(
            str(name),
            ep["command"],
            {str(k): Parameter.from_yaml(k, v) for k, v in params.items()},
        )

    name = doc.get("name")
    common = {"directory": directory, "name": name, "entry_points": entry_points}
    if "docker_env" in doc:
        return Project(
            env_type="docker_env", docker_env=_check_docker_env(doc["docker_env"]), **common
        )
    for key in ("python_env", "conda_env"):
        if key in doc:
            return Project(env_type=key, env_file=_env_file(directory, key, doc[key]), **common)
    for key, filename in (("python_env", PYTHON_ENV_FILE), ("conda_env", CONDA_ENV_FILE)):
        if os.path.isfile(os.path.join(directory, filename)):
            return Project(env_type=key, env_file=os.path.join(directory, filename), **common)
    return Project(**common)
