"""A project's Python environment as PyPI requirements: ``python_env.yaml``, or a
``conda.yaml`` translated when conda itself is not used.

``python_env.yaml`` is MLflow's format::

    python: "3.11"
    build_dependencies: [pip]
    dependencies: [scikit-learn==1.5.0, -r requirements.txt]

A ``conda.yaml`` becomes the same thing: ``python=3.8`` gives the version, the ``pip:``
list is kept as it is, and conda packages become PyPI requirements (``numpy=1.26`` →
``numpy==1.26.*``, ``conda-forge::pandas`` → ``pandas``, a few renamed ones like
``pytorch`` → ``torch``). Packages that only exist in conda (compilers, CUDA toolkits, C
libraries, R) cannot be translated: they are refused with a message naming them, rather
than silently dropped. Packages not on either list are assumed to have the same name on
PyPI; if they do not, the build fails with the installer's message in the log.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from evtrack.errors import InvalidParameterValue
from evtrack.projects.environments.base import EnvironmentUnavailable

__all__ = ["PythonEnv", "from_conda_yaml", "from_python_env_yaml", "load_python_env"]

#: conda names whose PyPI name differs.
CONDA_TO_PYPI = {
    "pytorch": "torch",
    "pytorch-cpu": "torch",
    "py-xgboost": "xgboost",
    "py-xgboost-cpu": "xgboost",
    "tensorflow-base": "tensorflow",
    "pyyaml": "PyYAML",
    "matplotlib-base": "matplotlib",
    "lightgbm": "lightgbm",
    "python-dateutil": "python-dateutil",
    "msgpack-python": "msgpack",
    "pytables": "tables",
    "graphviz": "graphviz",
}
#: conda packages with no PyPI equivalent (build tools and C/C++/CUDA/R runtimes).
CONDA_ONLY = {
    "cudatoolkit", "cudnn", "cuda", "cuda-toolkit", "nccl", "mkl", "mkl-service", "blas",
    "openblas", "libblas", "liblapack", "gcc", "gxx", "gfortran", "compilers", "make",
    "cmake", "openssl", "ca-certificates", "certifi-conda", "libgcc", "libgcc-ng",
    "libstdcxx-ng", "libgomp", "_libgcc_mutex", "_openmp_mutex", "zlib", "xz", "bzip2",
    "readline", "sqlite", "tk", "ncurses", "libffi", "nodejs", "r-base", "openjdk",
    "ffmpeg", "hdf5", "git", "curl",
}  # fmt: skip
#: Installed by every venv builder anyway.
_BUILD_TOOLS = {"pip", "setuptools", "wheel"}


@dataclass(frozen=True)
class PythonEnv:
    """An interpreter version and the requirements to install, in order."""

    python: str | None = None
    build_dependencies: tuple[str, ...] = ()
    dependencies: tuple[str, ...] = ()
    #: Contents of requirement files named by ``-r`` lines: part of the cache key.
    included: tuple[str, ...] = field(default=())


def _string_list(doc: Mapping[str, Any], key: str, path: str) -> tuple[str, ...]:
    value = doc.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, (str, int, float)) for v in value):
        raise InvalidParameterValue(f"{path}: '{key}' must be a list of requirement strings.")
    return tuple(str(v) for v in value)


def _included(project_dir: str, deps: tuple[str, ...]) -> tuple[str, ...]:
    texts = []
    for dep in deps:
        m = re.match(r"^(-r|--requirement|-c|--constraint)\s*(\S+)$", dep.strip())
        if m:
            path = os.path.join(project_dir, m.group(2))
            if not os.path.isfile(path):
                raise InvalidParameterValue(f"Requirement file {m.group(2)} is not in the project.")
            with open(path, encoding="utf-8") as f:
                texts.append(f.read())
    return tuple(texts)


def _read_yaml(path: str) -> Mapping[str, Any]:
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            doc = yaml.safe_load(f) or {}
    except yaml.YAMLError as exc:
        raise InvalidParameterValue(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(doc, Mapping):
        raise InvalidParameterValue(f"{path} must be a YAML mapping.")
    return doc


def from_python_env_yaml(path: str) -> PythonEnv:
    doc = _read_yaml(path)
    python = doc.get("python")
    deps = _string_list(doc, "dependencies", path)
    return PythonEnv(
        str(python) if python is not None else None,
        _string_list(doc, "build_dependencies", path),
        deps,
        _included(os.path.dirname(path), deps),
    )


def _conda_requirement(spec: str) -> tuple[str | None, str | None]:
    """``(name, PyPI requirement)`` of one conda dependency line; requirement None for python."""
    spec = spec.split("::")[-1].strip()  # channel::package
    m = re.match(r"^([A-Za-z0-9_.\-]+)\s*(.*)$", spec)
    if not m:
        raise InvalidParameterValue(f"Cannot read conda dependency '{spec}'.")
    name, rest = m.group(1).lower(), m.group(2).strip().replace(" ", "")
    if name == "python":
        return name, None
    version = ""
    if rest:
        if rest.startswith("=") and not rest.startswith("=="):
            # conda's "=1.2" is "1.2.*"; "=1.2=build_0" pins a build, which PyPI has not.
            number = rest[1:].split("=")[0]
            version = f"=={number}" if number.endswith("*") else f"=={number}.*"
            version = version.replace(".*.*", ".*")
        else:
            version = rest.split("=", 2)[0] if rest.count("=") > 2 else rest
    return name, f"{CONDA_TO_PYPI.get(name, name)}{version}"


def from_conda_yaml(path: str) -> PythonEnv:
    """The PyPI equivalent of a conda environment file, or a message naming what has none."""
    doc = _read_yaml(path)
    python = None
    reqs: list[str] = []
    pip_reqs: list[str] = []
    untranslatable = []
    for dep in doc.get("dependencies") or []:
        if isinstance(dep, Mapping) and "pip" in dep:
            pip_reqs += [str(d) for d in dep["pip"] or []]
            continue
        if not isinstance(dep, str):
            raise InvalidParameterValue(f"{path}: cannot read dependency {dep!r}.")
        name, req = _conda_requirement(dep)
        if name == "python":
            m = re.search(r"(\d+(?:\.\d+){0,2})", dep.split("::")[-1])
            python = m.group(1) if m else None
        elif name in _BUILD_TOOLS:
            continue
        elif name in CONDA_ONLY or (name and name.startswith(("r-", "lib", "cuda"))):
            untranslatable.append(dep)
        elif req:
            reqs.append(req)
    if untranslatable:
        raise EnvironmentUnavailable(
            f"{os.path.basename(path)} needs conda-only packages with no PyPI equivalent: "
            f"{', '.join(untranslatable)}. Install conda (or mamba/micromamba) and run with "
            "--env-manager conda, or remove them from the file."
        )
    deps = tuple(reqs + pip_reqs)
    return PythonEnv(python, (), deps, _included(os.path.dirname(path), deps))


def load_python_env(env_type: str | None, env_file: str | None) -> PythonEnv:
    """The environment to build for a project (no file: this interpreter, no requirements)."""
    if env_file is None:
        return PythonEnv()
    if env_type == "conda_env":
        return from_conda_yaml(env_file)
    return from_python_env_yaml(env_file)
