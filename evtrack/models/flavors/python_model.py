"""Custom ``PythonModel`` subclasses: saved with cloudpickle, with artifacts and code.

The ``python_function`` section is MLflow's (``loader_module: mlflow.pyfunc.model``,
``python_model: python_model.pkl``, ``artifacts: {name: {path, uri}}``).
"""

from __future__ import annotations

import os
import shutil
from typing import Any

from evtrack.errors import InvalidParameterValue
from evtrack.models import environment, serialization
from evtrack.models import save as saving
from evtrack.models.mlmodel import Model, ModelInfo
from evtrack.models.pyfunc import FLAVOR_NAME, PythonModel, PythonModelContext, _takes_params
from evtrack.models.signature import ModelSignature

__all__ = ["load_model", "load_pyfunc", "log_model", "save_model"]

PICKLE_FILE = "python_model.pkl"
ARTIFACTS_DIR = "artifacts"


def _copy_artifacts(artifacts: dict[str, str] | None, path: str) -> dict[str, dict[str, str]]:
    from evtrack.models.uri import download_model

    out: dict[str, dict[str, str]] = {}
    if not artifacts:
        return out
    folder = os.path.join(path, ARTIFACTS_DIR)
    os.makedirs(folder, exist_ok=True)
    for name, uri in artifacts.items():
        local = download_model(uri)  # any URI a model can have: path, runs:/, s3://...
        target = os.path.join(folder, os.path.basename(local.rstrip(os.sep)))
        if os.path.isdir(local):
            shutil.copytree(local, target)
        else:
            shutil.copy2(local, target)
        out[name] = {"path": f"{ARTIFACTS_DIR}/{os.path.basename(target)}", "uri": uri}
    return out


class _Wrapper:
    """Adapts a PythonModel to ``predict(data, params)``."""

    def __init__(self, python_model: Any, context: PythonModelContext) -> None:
        self.python_model = python_model
        self.context = context
        import inspect

        names = list(inspect.signature(python_model.predict).parameters)
        self._with_context = bool(names) and names[0] == "context"
        self._params = _takes_params(python_model.predict)

    def predict(self, data: Any, params: dict | None = None) -> Any:
        args = (self.context, data) if self._with_context else (data,)
        if self._params:
            return self.python_model.predict(*args, params=params)
        return self.python_model.predict(*args)


def save_model(
    path: str,
    python_model: PythonModel | None = None,
    artifacts: dict[str, str] | None = None,
    code_paths: list[str] | None = None,
    conda_env: Any = None,
    signature: ModelSignature | None = None,
    input_example: Any = None,
    pip_requirements: list[str] | str | None = None,
    extra_pip_requirements: list[str] | str | None = None,
    metadata: dict[str, Any] | None = None,
    model_config: dict[str, Any] | None = None,
    run_id: str | None = None,
    artifact_path: str | None = None,
    model_id: str | None = None,
    **_: Any,
) -> Model:
    if python_model is None:
        raise InvalidParameterValue("python_model is required: pass a PythonModel instance.")
    if not callable(getattr(python_model, "predict", None)):
        raise InvalidParameterValue("python_model must have a predict() method.")
    path = saving.prepare_folder(path)
    model = Model(run_id=run_id, artifact_path=artifact_path, metadata=metadata, model_id=model_id)
    code = saving.copy_code_paths(code_paths, path)
    conf_artifacts = _copy_artifacts(artifacts, path)
    serialization.dump(python_model, os.path.join(path, PICKLE_FILE), serialization.CLOUDPICKLE)
    example = saving.save_example(model, input_example, path)
    if signature is None and example is not None:
        context = PythonModelContext(
            {k: os.path.join(path, v["path"]) for k, v in conf_artifacts.items()}, model_config
        )
        python_model.load_context(context)
        signature = saving.infer_from_example(example, _Wrapper(python_model, context).predict)
    model.signature = signature or None
    import platform

    model.add_flavor(
        FLAVOR_NAME,
        loader_module="mlflow.pyfunc.model",
        python_model=PICKLE_FILE,
        cloudpickle_version=environment.pinned("cloudpickle").partition("==")[2] or None,
        artifacts=conf_artifacts or None,
        code=code,
        model_config=model_config,
        env={"conda": environment.CONDA_ENV_FILE, "virtualenv": environment.PYTHON_ENV_FILE},
        python_version=platform.python_version(),
        streamable=False,
    )
    environment.write_environment(
        path,
        [
            environment.pinned("cloudpickle"),
            environment.pinned("numpy"),
            environment.pinned("pandas"),
        ],
        pip_requirements,
        extra_pip_requirements,
    )
    return saving.finish(model, path)


def log_model(
    python_model: PythonModel | None = None,
    artifact_path: str | None = None,
    *,
    name: str | None = None,
    registered_model_name: str | None = None,
    **kwargs: Any,
) -> ModelInfo:
    return saving.log_model(
        save_model,
        name,
        artifact_path,
        registered_model_name,
        python_model=python_model,
        **kwargs,
    )


def load_pyfunc(path: str, meta: Model, model_config: dict[str, Any] | None = None) -> _Wrapper:
    conf = meta.flavors[FLAVOR_NAME]
    python_model = serialization.load(
        os.path.join(path, conf.get("python_model", PICKLE_FILE)), serialization.CLOUDPICKLE
    )
    artifacts = {k: os.path.join(path, v["path"]) for k, v in (conf.get("artifacts") or {}).items()}
    config = {**(conf.get("model_config") or {}), **(model_config or {})}
    context = PythonModelContext(artifacts, config)
    python_model.load_context(context)
    return _Wrapper(python_model, context)


def load_model(path: str, meta: Model) -> Any:
    return load_pyfunc(path, meta).python_model
