"""MLflow's entity classes, with the same names, fields and behaviour.

Scripts written for ``mlflow`` read runs through these (``run.info.run_id``,
``run.data.metrics["rmse"]``...), so they mirror ``mlflow.entities``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Dataset",
    "DatasetInput",
    "Experiment",
    "ExperimentTag",
    "FileInfo",
    "InputTag",
    "LifecycleStage",
    "Metric",
    "Param",
    "Run",
    "RunData",
    "RunInfo",
    "RunInputs",
    "RunStatus",
    "RunTag",
    "ViewType",
]


class ViewType:
    """Which runs or experiments a search returns (MLflow's values)."""

    ACTIVE_ONLY, DELETED_ONLY, ALL = 1, 2, 3
    _NAMES = {"ACTIVE_ONLY": 1, "DELETED_ONLY": 2, "ALL": 3}

    @classmethod
    def from_string(cls, name: str) -> int:
        try:
            return cls._NAMES[name.upper()]
        except KeyError:
            from evtrack.errors import InvalidParameterValue

            raise InvalidParameterValue(
                f"Invalid view type {name!r}: use ACTIVE_ONLY, DELETED_ONLY or ALL."
            ) from None

    @classmethod
    def to_string(cls, view_type: int) -> str:
        return {v: k for k, v in cls._NAMES.items()}[view_type]


class LifecycleStage:
    ACTIVE = "active"
    DELETED = "deleted"


class RunStatus:
    """Run statuses, as MLflow names and numbers them."""

    RUNNING, SCHEDULED, FINISHED, FAILED, KILLED = 1, 2, 3, 4, 5
    _NAMES = {"RUNNING": 1, "SCHEDULED": 2, "FINISHED": 3, "FAILED": 4, "KILLED": 5}

    @classmethod
    def from_string(cls, status: str) -> int:
        return cls._NAMES[status]

    @classmethod
    def to_string(cls, status: int) -> str:
        return {v: k for k, v in cls._NAMES.items()}[status]

    @classmethod
    def is_terminated(cls, status: int | str) -> bool:
        if isinstance(status, str):
            status = cls._NAMES[status]
        return status in (cls.FINISHED, cls.FAILED, cls.KILLED)

    @classmethod
    def all_status(cls) -> list[int]:
        return list(cls._NAMES.values())


@dataclass(frozen=True)
class Metric:
    key: str
    value: float
    timestamp: int = 0
    step: int = 0
    run_id: str | None = None
    # MLflow 3's links of a point to a logged model and to the dataset it was computed on
    model_id: str | None = None
    dataset_name: str | None = None
    dataset_digest: str | None = None

    def to_dictionary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "key": self.key,
            "value": self.value,
            "timestamp": self.timestamp,
            "step": self.step,
        }
        for name in ("model_id", "dataset_name", "dataset_digest"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        return out


@dataclass(frozen=True)
class Param:
    key: str
    value: str


@dataclass(frozen=True)
class RunTag:
    key: str
    value: str


@dataclass(frozen=True)
class ExperimentTag:
    key: str
    value: str


@dataclass(frozen=True)
class InputTag:
    key: str
    value: str


@dataclass(frozen=True)
class Dataset:
    name: str
    digest: str
    source_type: str = ""
    source: str = ""
    schema: str | None = None
    profile: str | None = None


@dataclass(frozen=True)
class DatasetInput:
    dataset: Dataset
    tags: list[InputTag] = field(default_factory=list)


@dataclass(frozen=True)
class RunInputs:
    dataset_inputs: list[DatasetInput] = field(default_factory=list)


@dataclass
class RunInfo:
    run_id: str
    experiment_id: str
    user_id: str
    status: str
    start_time: int | None
    end_time: int | None
    lifecycle_stage: str
    artifact_uri: str
    run_name: str = ""

    @property
    def run_uuid(self) -> str:
        return self.run_id

    def to_dictionary(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "run_uuid": self.run_id,
            "run_name": self.run_name,
            "experiment_id": self.experiment_id,
            "user_id": self.user_id,
            "status": self.status,
            "start_time": self.start_time,
            "end_time": self.end_time,
            "artifact_uri": self.artifact_uri,
            "lifecycle_stage": self.lifecycle_stage,
        }


@dataclass
class RunData:
    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    _metric_objs: list[Metric] = field(default_factory=list, repr=False)

    def to_dictionary(self) -> dict[str, Any]:
        return {"metrics": dict(self.metrics), "params": dict(self.params), "tags": dict(self.tags)}


@dataclass
class Run:
    info: RunInfo
    data: RunData
    inputs: RunInputs = field(default_factory=RunInputs)

    def to_dictionary(self) -> dict[str, Any]:
        return {"info": self.info.to_dictionary(), "data": self.data.to_dictionary()}


@dataclass
class Experiment:
    experiment_id: str
    name: str
    artifact_location: str
    lifecycle_stage: str
    tags: dict[str, str] = field(default_factory=dict)
    creation_time: int | None = None
    last_update_time: int | None = None

    def to_dictionary(self) -> dict[str, Any]:
        return {
            "experiment_id": self.experiment_id,
            "name": self.name,
            "artifact_location": self.artifact_location,
            "lifecycle_stage": self.lifecycle_stage,
            "tags": dict(self.tags),
            "creation_time": self.creation_time,
            "last_update_time": self.last_update_time,
        }


@dataclass(frozen=True)
class FileInfo:
    path: str
    is_dir: bool
    file_size: int | None
