"""The ``MLmodel`` file: what a model folder holds and how to load it, in MLflow's layout.

A model is a folder::

    MLmodel               this file (YAML): flavors, signature, model_uuid, run_id, ...
    model.skops|model.pkl the serialized model (name set by the flavor)
    requirements.txt  python_env.yaml  conda.yaml    the environment to rebuild
    input_example.json  serving_input_example.json   the example, when one was given

The YAML keys and their meaning are MLflow's, so a folder written by either tool is
read by the other. The ``python_function`` flavor names a ``loader_module``; evtrack
writes MLflow's module names there (``mlflow.sklearn``, ``mlflow.pyfunc.model``) so
that MLflow can load evtrack's models, and maps them to its own flavors when loading.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from evtrack.errors import InvalidParameterValue, ResourceDoesNotExist
from evtrack.models.signature import ModelSignature

__all__ = ["MLMODEL_FILE_NAME", "Model", "ModelInfo"]

MLMODEL_FILE_NAME = "MLmodel"

# The MLflow release whose format evtrack writes; MLflow warns, but loads, when the
# version in a model differs from its own.
WRITTEN_AS_MLFLOW_VERSION = "3.17.2"

_KNOWN = {
    "artifact_path",
    "run_id",
    "model_uuid",
    "utc_time_created",
    "flavors",
    "signature",
    "saved_input_example_info",
    "model_size_bytes",
    "mlflow_version",
    "metadata",
    "model_id",
}


@dataclass
class Model:
    """The contents of an ``MLmodel`` file."""

    artifact_path: str | None = None
    run_id: str | None = None
    model_uuid: str = field(default_factory=lambda: uuid.uuid4().hex)
    utc_time_created: str = field(
        default_factory=lambda: datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")
    )
    flavors: dict[str, dict[str, Any]] = field(default_factory=dict)
    signature: ModelSignature | None = None
    saved_input_example_info: dict[str, Any] | None = None
    model_size_bytes: int | None = None
    mlflow_version: str | None = WRITTEN_AS_MLFLOW_VERSION
    metadata: dict[str, Any] | None = None
    model_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # keys evtrack does not know, kept

    def add_flavor(self, name: str, **params: Any) -> Model:
        self.flavors[name] = params
        return self

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.extra)
        for key in (
            "artifact_path",
            "run_id",
            "model_id",
            "model_uuid",
            "utc_time_created",
            "mlflow_version",
            "model_size_bytes",
            "metadata",
            "saved_input_example_info",
        ):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        out["flavors"] = self.flavors
        if self.signature is not None:
            out["signature"] = self.signature.to_dict()
        return out

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(), default_flow_style=False)

    def save(self, path: str) -> None:
        with open(path, "w") as f:
            f.write(self.to_yaml())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Model:
        if not isinstance(data, dict) or not isinstance(data.get("flavors"), dict):
            raise InvalidParameterValue("The MLmodel file has no 'flavors' mapping.")
        sig = data.get("signature")
        return cls(
            artifact_path=data.get("artifact_path"),
            run_id=data.get("run_id"),
            model_uuid=data.get("model_uuid") or uuid.uuid4().hex,
            utc_time_created=data.get("utc_time_created") or "",
            flavors=data["flavors"],
            signature=ModelSignature.from_dict(sig) if sig else None,
            saved_input_example_info=data.get("saved_input_example_info"),
            model_size_bytes=data.get("model_size_bytes"),
            mlflow_version=data.get("mlflow_version"),
            metadata=data.get("metadata"),
            model_id=data.get("model_id"),
            extra={k: v for k, v in data.items() if k not in _KNOWN},
        )

    @classmethod
    def load(cls, path: str) -> Model:
        """Read ``<path>/MLmodel`` (or ``path`` itself when it is the file)."""
        import yaml

        file = path if os.path.isfile(path) else os.path.join(path, MLMODEL_FILE_NAME)
        if not os.path.exists(file):
            raise ResourceDoesNotExist(
                f"No MLmodel file at {path!r}: point at a model folder written by "
                "evtrack.*.save_model / log_model or by MLflow."
            )
        with open(file) as f:
            try:
                data = yaml.safe_load(f)
            except yaml.YAMLError as exc:
                raise InvalidParameterValue(
                    f"The MLmodel file {file!r} is not YAML: {exc}"
                ) from None
        return cls.from_dict(data)

    def get_input_schema(self):
        return self.signature.inputs if self.signature is not None else None

    def get_output_schema(self):
        return self.signature.outputs if self.signature is not None else None


@dataclass(frozen=True)
class ModelInfo:
    """What ``log_model`` returns (MLflow's ``ModelInfo``, the fields scripts use)."""

    artifact_path: str
    model_uri: str
    run_id: str | None
    model_uuid: str
    utc_time_created: str
    flavors: dict[str, Any]
    signature: ModelSignature | None
    saved_input_example_info: dict[str, Any] | None
    model_id: str | None = None
    registered_model_version: int | None = None
    name: str | None = None
