"""``python_function``: one calling convention for every model, ``predict(data, params)``.

:func:`load_model` reads any model folder (evtrack's or MLflow's), picks the flavor
named by its ``loader_module`` from the registry, and wraps it in a
:class:`PyFuncModel` that enforces the signature before calling the model.
Custom models subclass :class:`PythonModel`; they are stored with cloudpickle (there
is no safe format for arbitrary Python classes), plus their ``artifacts`` and
``code_paths``.

Limit: a custom model saved by evtrack pickles a subclass of evtrack's
``PythonModel``, so MLflow can load it only where evtrack is installed; and one saved
by MLflow needs ``mlflow`` installed to load here. scikit-learn models have no such tie.
"""

from __future__ import annotations

import inspect
import os
import sys
from typing import Any

from evtrack.errors import InvalidParameterValue
from evtrack.models.enforce import enforce_params, enforce_schema
from evtrack.models.mlmodel import Model

__all__ = [
    "FLAVOR_NAME",
    "PyFuncModel",
    "PythonModel",
    "PythonModelContext",
    "add_code_to_path",
    "load_model",
]

FLAVOR_NAME = "python_function"


class PythonModelContext:
    """What :meth:`PythonModel.load_context` gets: local paths of the artifacts."""

    def __init__(self, artifacts: dict[str, str], model_config: dict[str, Any] | None = None):
        self.artifacts = artifacts
        self.model_config = model_config or {}


class PythonModel:
    """Base class of custom models: override :meth:`predict` (and :meth:`load_context`).

    ``predict(self, context, model_input, params=None)`` is MLflow's classic
    signature; ``predict(self, model_input, params=None)`` without the context also works.
    """

    def load_context(self, context: PythonModelContext) -> None:
        """Called once after loading; read ``context.artifacts`` here."""

    def predict(self, context, model_input, params=None):  # noqa: D401 - MLflow's name
        raise NotImplementedError("Subclasses of PythonModel must implement predict().")


def _takes_params(fn: Any) -> bool:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return False
    return "params" in sig.parameters or any(
        p.kind is p.VAR_KEYWORD for p in sig.parameters.values()
    )


class PyFuncModel:
    """A loaded model: ``predict`` checks the input against the signature first."""

    def __init__(self, model_meta: Model, impl: Any, path: str) -> None:
        self.metadata = model_meta
        self._impl = impl
        self._path = path
        self._params_ok = _takes_params(impl.predict)

    @property
    def model_path(self) -> str:
        return self._path

    @property
    def loader_module(self) -> str:
        return self.metadata.flavors[FLAVOR_NAME]["loader_module"]

    def prepare(self, data: Any, params: dict | None = None) -> tuple[Any, dict | None]:
        """Enforce the signature: the data and params :meth:`predict_prepared` takes."""
        return (
            enforce_schema(data, self.metadata.get_input_schema()),
            enforce_params(params, self.metadata.signature),
        )

    def predict_prepared(self, data: Any, params: dict | None = None) -> Any:
        if self._params_ok:
            return self._impl.predict(data, params=params)
        return self._impl.predict(data)

    def predict(self, data: Any, params: dict | None = None) -> Any:
        return self.predict_prepared(*self.prepare(data, params))

    def unwrap_python_model(self) -> Any:
        inner = getattr(self._impl, "python_model", None)
        if inner is None:
            raise InvalidParameterValue("This model is not a custom PythonModel.")
        return inner

    def get_raw_model(self) -> Any:
        return getattr(self._impl, "raw_model", self._impl)

    def __repr__(self) -> str:
        return f"PyFuncModel(loader_module={self.loader_module!r}, path={self._path!r})"


def add_code_to_path(path: str, conf: dict[str, Any]) -> None:
    """Put ``<model>/code`` on ``sys.path`` so pickles of the user's classes import."""
    code = conf.get("code")
    if code:
        folder = os.path.join(path, code)
        if folder not in sys.path:
            sys.path.insert(0, folder)


def load_model(
    model_uri: str,
    suppress_warnings: bool = False,
    dst_path: str | None = None,
    model_config: dict[str, Any] | None = None,
) -> PyFuncModel:
    """Load any model folder as a :class:`PyFuncModel` (MLflow's ``mlflow.pyfunc.load_model``)."""
    from evtrack.models.flavors import flavor_for_loader_module
    from evtrack.models.uri import download_model

    local = download_model(model_uri, dst_path)
    meta = Model.load(local)
    conf = meta.flavors.get(FLAVOR_NAME)
    if conf is None:
        raise InvalidParameterValue(
            f"Model {model_uri!r} has no python_function flavor (it has "
            f"{sorted(meta.flavors)}), so it cannot be loaded or served generically."
        )
    add_code_to_path(local, conf)
    flavor = flavor_for_loader_module(conf.get("loader_module", ""))
    impl = flavor.load_pyfunc(local, meta, model_config=model_config)
    return PyFuncModel(meta, impl, local)
