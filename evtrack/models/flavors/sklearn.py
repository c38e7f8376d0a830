"""The scikit-learn flavor: ``sklearn`` + ``python_function`` in MLflow's layout.

Serialization is skops by default when skops is installed and can represent the
model with only scikit-learn/numpy/scipy types (loading then runs no code);
otherwise, or with ``serialization_format="pickle"|"cloudpickle"``, a pickle, which
loads with a one-time warning that it can run code.
"""

from __future__ import annotations

import os
import platform
from typing import Any

from evtrack.errors import InvalidParameterValue
from evtrack.models import environment, serialization
from evtrack.models import save as saving
from evtrack.models.mlmodel import Model, ModelInfo
from evtrack.models.pyfunc import FLAVOR_NAME as PYFUNC
from evtrack.models.signature import ModelSignature

__all__ = [
    "FLAVOR_NAME",
    "SERIALIZATION_FORMAT_CLOUDPICKLE",
    "SERIALIZATION_FORMAT_PICKLE",
    "SERIALIZATION_FORMAT_SKOPS",
    "load_model",
    "load_pyfunc",
    "log_model",
    "save_model",
]

FLAVOR_NAME = "sklearn"
SERIALIZATION_FORMAT_SKOPS = serialization.SKOPS
SERIALIZATION_FORMAT_PICKLE = serialization.PICKLE
SERIALIZATION_FORMAT_CLOUDPICKLE = serialization.CLOUDPICKLE


class _SklearnWrapper:
    """``predict(data, params)`` over an estimator, with MLflow's ``predict_fn`` choice."""

    def __init__(self, model: Any, predict_fn: str = "predict") -> None:
        self.raw_model = model
        fn = getattr(model, predict_fn, None)
        if fn is None:
            raise InvalidParameterValue(f"The model has no {predict_fn}() method.")
        self._fn = fn

    def predict(self, data: Any, params: dict | None = None) -> Any:
        return self._fn(data)


def save_model(
    sk_model: Any,
    path: str,
    conda_env: Any = None,
    code_paths: list[str] | None = None,
    mlflow_model: Model | None = None,
    serialization_format: str | None = None,
    signature: ModelSignature | None = None,
    input_example: Any = None,
    pip_requirements: list[str] | str | None = None,
    extra_pip_requirements: list[str] | str | None = None,
    pyfunc_predict_fn: str = "predict",
    metadata: dict[str, Any] | None = None,
    skops_trusted_types: list[str] | None = None,
    run_id: str | None = None,
    artifact_path: str | None = None,
    model_id: str | None = None,
    **_: Any,
) -> Model:
    """Write ``sk_model`` as a model folder at ``path`` (which must not exist or be empty)."""
    import sklearn

    fmt = serialization_format
    if fmt is None:
        fmt = (
            serialization.SKOPS
            if skops_trusted_types or serialization.skops_can_represent(sk_model)
            else serialization.CLOUDPICKLE
        )
    serialization.check_format(fmt)
    path = saving.prepare_folder(path)
    model = mlflow_model or Model()
    model.run_id, model.artifact_path = run_id or model.run_id, artifact_path or model.artifact_path
    model.model_id = model_id or model.model_id
    if metadata is not None:
        model.metadata = metadata
    code = saving.copy_code_paths(code_paths, path)
    example = saving.save_example(model, input_example, path)
    if signature is None and example is not None:
        signature = saving.infer_from_example(
            example, _SklearnWrapper(sk_model, pyfunc_predict_fn).predict
        )
    model.signature = signature or None
    data_file = serialization.FILE_NAMES[fmt]
    serialization.dump(sk_model, os.path.join(path, data_file), fmt)
    if hasattr(sk_model, pyfunc_predict_fn):
        model.add_flavor(
            PYFUNC,
            loader_module="mlflow.sklearn",
            model_path=data_file,
            predict_fn=pyfunc_predict_fn,
            env={"conda": environment.CONDA_ENV_FILE, "virtualenv": environment.PYTHON_ENV_FILE},
            code=code,
            python_version=platform.python_version(),
        )
    model.add_flavor(
        FLAVOR_NAME,
        pickled_model=data_file,
        sklearn_version=sklearn.__version__,
        serialization_format=fmt,
        code=code,
        skops_trusted_types=skops_trusted_types,
    )
    serializer = {"skops": "skops", "cloudpickle": "cloudpickle"}.get(fmt)
    defaults = [environment.pinned("scikit-learn"), environment.pinned("numpy")]
    defaults += [environment.pinned(serializer)] if serializer else []
    environment.write_environment(path, defaults, pip_requirements, extra_pip_requirements)
    return saving.finish(model, path)


def log_model(
    sk_model: Any,
    artifact_path: str | None = None,
    *,
    name: str | None = None,
    registered_model_name: str | None = None,
    **kwargs: Any,
) -> ModelInfo:
    """Save and log as the active run's artifacts (a run is started if none is active)."""
    return saving.log_model(
        save_model, name, artifact_path, registered_model_name, sk_model=sk_model, **kwargs
    )


def _load(path: str, meta: Model) -> Any:
    conf = meta.flavors.get(FLAVOR_NAME, {})
    py = meta.flavors.get(PYFUNC, {})
    file = conf.get("pickled_model") or py.get("model_path") or "model.pkl"
    fmt = conf.get("serialization_format", serialization.PICKLE)
    return serialization.load(os.path.join(path, file), fmt, conf.get("skops_trusted_types"))


def load_pyfunc(path: str, meta: Model, model_config: dict[str, Any] | None = None) -> Any:
    predict_fn = meta.flavors.get(PYFUNC, {}).get("predict_fn", "predict")
    return _SklearnWrapper(_load(path, meta), predict_fn)


def load_model(model_uri: str, dst_path: str | None = None) -> Any:
    """The scikit-learn estimator stored at ``model_uri`` (any URI a model can have)."""
    from evtrack.models.pyfunc import add_code_to_path
    from evtrack.models.uri import download_model

    local = download_model(model_uri, dst_path)
    meta = Model.load(local)
    if FLAVOR_NAME not in meta.flavors:
        raise InvalidParameterValue(
            f"Model {model_uri!r} has no sklearn flavor (it has {sorted(meta.flavors)})."
        )
    add_code_to_path(local, meta.flavors[FLAVOR_NAME])
    return _load(local, meta)
