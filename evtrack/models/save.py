"""What every flavor's ``save_model`` and ``log_model`` share: the folder, the code
paths, the input example and inferred signature, the environment files, the
``MLmodel`` file, and logging the folder as run artifacts through the public client.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from typing import Any

from evtrack.errors import InvalidParameterValue, ResourceAlreadyExists
from evtrack.models.mlmodel import MLMODEL_FILE_NAME, Model, ModelInfo
from evtrack.models.signature import ModelSignature, infer_signature

__all__ = ["copy_code_paths", "finish", "log_model", "prepare_folder", "save_example"]

EXAMPLE_FILE = "input_example.json"
SERVING_EXAMPLE_FILE = "serving_input_example.json"
CODE_DIR = "code"


def prepare_folder(path: str) -> str:
    path = os.path.abspath(os.fspath(path))
    if os.path.exists(path) and os.listdir(path):
        raise ResourceAlreadyExists(
            f"Path '{path}' already exists and is not empty: save the model to a new folder."
        )
    os.makedirs(path, exist_ok=True)
    return path


def copy_code_paths(code_paths: list[str] | None, path: str) -> str | None:
    """Copy files/folders into ``<model>/code``; loading puts that folder on sys.path."""
    if not code_paths:
        return None
    if isinstance(code_paths, str):
        raise InvalidParameterValue("code_paths must be a list of paths, not a string.")
    dest = os.path.join(path, CODE_DIR)
    os.makedirs(dest, exist_ok=True)
    for src in code_paths:
        src = os.path.abspath(src)
        if not os.path.exists(src):
            raise InvalidParameterValue(f"code_paths entry {src!r} does not exist.")
        target = os.path.join(dest, os.path.basename(src.rstrip(os.sep)))
        if os.path.isdir(src):
            shutil.copytree(src, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, target)
    return CODE_DIR


def _example_frame(example: Any):
    """An input example as a data frame, when it is tabular (frame, dict, records)."""
    import numpy as np
    import pandas as pd

    if isinstance(example, pd.DataFrame):
        return example
    if isinstance(example, pd.Series):
        return example.to_frame()
    if isinstance(example, dict) and all(np.ndim(v) <= 1 for v in example.values()):
        return pd.DataFrame({k: np.atleast_1d(v) for k, v in example.items()})
    if isinstance(example, list) and example and all(isinstance(r, dict) for r in example):
        return pd.DataFrame(example)
    return None


def save_example(model: Model, example: Any, path: str) -> Any:
    """Write ``input_example.json`` + ``serving_input_example.json`` (MLflow 3's names);
    return the example in the form the model will be called with."""
    if example is None:
        return None
    import numpy as np

    from evtrack.models.payload import to_jsonable

    frame = _example_frame(example)
    if frame is not None:
        split = json.loads(frame.to_json(orient="split", index=False, date_format="iso"))
        stored, serving = split, {"dataframe_split": split}
        info = {"type": "dataframe", "pandas_orient": "split"}
        value = frame
    elif isinstance(example, (np.ndarray, list)):
        arr = np.asarray(example)
        stored = serving = {"inputs": to_jsonable(arr)}
        info = {"type": "ndarray", "format": "tf-serving"}
        value = arr
    else:
        raise InvalidParameterValue(
            f"Unsupported input_example of type {type(example).__name__}: use a pandas "
            "DataFrame, a dict of columns, a list of records or a numpy array."
        )
    with open(os.path.join(path, EXAMPLE_FILE), "w") as f:
        json.dump(stored, f)
    with open(os.path.join(path, SERVING_EXAMPLE_FILE), "w") as f:
        json.dump(serving, f, indent=2)
    model.saved_input_example_info = {
        "artifact_path": EXAMPLE_FILE,
        "serving_input_path": SERVING_EXAMPLE_FILE,
        **info,
    }
    return value


def infer_from_example(example: Any, predict: Callable[[Any], Any] | None) -> ModelSignature:
    """The signature of an example input and of what the model returns for it."""
    import numpy as np

    output = predict(example) if predict is not None else None
    if isinstance(output, np.ndarray) and output.ndim == 1:
        import pandas as pd

        output = pd.Series(output)  # MLflow writes a 1-D prediction as one unnamed column
    return infer_signature(example, output)


def finish(model: Model, path: str) -> Model:
    size = 0
    for folder, _, files in os.walk(path):
        size += sum(os.path.getsize(os.path.join(folder, f)) for f in files)
    model.model_size_bytes = size
    model.save(os.path.join(path, MLMODEL_FILE_NAME))
    return model


def log_model(
    save: Callable[..., Model],
    name: str | None,
    artifact_path: str | None,
    registered_model_name: str | None = None,
    **save_kwargs: Any,
) -> ModelInfo:
    """Save with ``save(path=..., run_id=..., **kwargs)`` into a temporary folder, then
    log it as the active run's artifacts at ``name`` (MLflow 3) or ``artifact_path``."""
    from evtrack.tracking import fluent

    path_in_run = name or artifact_path or "model"
    run = fluent._current()
    run_id = run.info.run_id
    client = fluent._get_client()
    # MLflow 3: every logged model is an entity (id m-…) linked to its run. Its files
    # are the run's artifacts at `path_in_run`, so runs:/ URIs and the run's artifact
    # listing show them too.
    location = f"{run.info.artifact_uri.rstrip('/')}/{path_in_run}"
    logged = client._models.create_logged_model(
        run.info.experiment_id,
        path_in_run,
        run_id,
        tags=save_kwargs.pop("tags", None),
        params={k: str(v) for k, v in (save_kwargs.pop("params", None) or {}).items()},
        model_type=save_kwargs.pop("model_type", None),
        artifact_location=location,
    )
    try:
        with tempfile.TemporaryDirectory() as tmp:
            local = os.path.join(tmp, "model")
            model = save(
                path=local, run_id=run_id, artifact_path=path_in_run, model_id=logged.model_id,
                **save_kwargs,
            )  # fmt: skip
            client.log_artifacts(run_id, local, path_in_run)
            if logged.artifact_location != location:  # a server chose where the files go
                client._models.upload(logged, local)
    except BaseException:
        client._models.finalize_logged_model(logged.model_id, "FAILED")
        raise
    client._models.finalize_logged_model(logged.model_id, "READY")
    model_uri = f"models:/{logged.model_id}"
    version = None
    if registered_model_name:
        from evtrack.models.registry_api import register_model

        version = int(register_model(model_uri, registered_model_name).version)
    return ModelInfo(
        artifact_path=path_in_run,
        model_uri=model_uri,
        run_id=run_id,
        model_uuid=model.model_uuid,
        utc_time_created=model.utc_time_created,
        flavors=model.flavors,
        signature=model.signature,
        saved_input_example_info=model.saved_input_example_info,
        model_id=logged.model_id,
        registered_model_version=version,
        name=path_in_run,
    )
