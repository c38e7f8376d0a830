"""Model flavors as a registry: each flavor registers itself, none is an if-branch.

A flavor knows how to save one kind of model object into a model folder and how to
load it back, natively and as a ``python_function`` (an object with
``predict(data, params=None)``). The ``python_function`` section of an ``MLmodel``
file names a ``loader_module``; MLflow's module names (``mlflow.sklearn``) and
evtrack's (``evtrack.sklearn``) both map to the registered flavor, so folders written
by either tool load here. Third-party flavors register through the
``evtrack.model_flavors`` entry point group (``name = "package.module:FLAVOR"``).
Imports are lazy: scikit-learn is imported only when an sklearn model is touched.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from evtrack.errors import InvalidParameterValue

__all__ = ["FlavorSpec", "flavor_for_loader_module", "get_flavor", "register_flavor"]


@dataclass(frozen=True)
class FlavorSpec:
    """Where a flavor lives and which ``loader_module`` names it answers to."""

    name: str
    module: str  # imported on first use; must define load_model(path) and load_pyfunc(path)
    loader_modules: tuple[str, ...]


_FLAVORS: dict[str, FlavorSpec] = {}
_entry_points_loaded = False


def register_flavor(spec: FlavorSpec) -> None:
    _FLAVORS[spec.name] = spec


register_flavor(
    FlavorSpec("sklearn", "evtrack.models.flavors.sklearn", ("mlflow.sklearn", "evtrack.sklearn"))
)
register_flavor(
    FlavorSpec(
        "python_model",
        "evtrack.models.flavors.python_model",
        ("mlflow.pyfunc.model", "evtrack.pyfunc.model", "evtrack.models.flavors.python_model"),
    )
)


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    from importlib.metadata import entry_points

    for ep in entry_points(group="evtrack.model_flavors"):
        spec = ep.load()
        if isinstance(spec, FlavorSpec):
            register_flavor(spec)


def get_flavor(name: str):
    """The module implementing flavor ``name``."""
    _load_entry_points()
    spec = _FLAVORS.get(name)
    if spec is None:
        raise InvalidParameterValue(
            f"No model flavor {name!r} in evtrack; known flavors: {sorted(_FLAVORS)}."
        )
    return importlib.import_module(spec.module)


def flavor_for_loader_module(loader_module: str):
    """The flavor module that loads a ``python_function`` with this ``loader_module``."""
    _load_entry_points()
    for spec in _FLAVORS.values():
        if loader_module in spec.loader_modules:
            return importlib.import_module(spec.module)
    known = sorted(m for s in _FLAVORS.values() for m in s.loader_modules)
    raise InvalidParameterValue(
        f"The model's python_function flavor is loaded by {loader_module!r}, which evtrack "
        f"does not have; it can load {known}. Install a plugin that registers it in the "
        "'evtrack.model_flavors' entry point group."
    )
