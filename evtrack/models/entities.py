"""Logged models, registered models and model versions, with MLflow's field names
and their REST JSON (``to_json``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from evtrack.entities import Metric
from evtrack.jsonfloat import float_from_json, float_to_json

__all__ = ["LoggedModel", "ModelVersion", "RegisteredModel", "RegisteredModelAlias"]


def _kv(d: dict[str, str]) -> list[dict[str, str]]:
    return [{"key": k, "value": v} for k, v in sorted(d.items())]


def _from_kv(items: list[dict[str, str]] | None) -> dict[str, str]:
    return {i["key"]: i.get("value", "") for i in items or []}


@dataclass
class LoggedModel:
    model_id: str
    experiment_id: str
    name: str
    artifact_location: str
    creation_timestamp: int
    last_updated_timestamp: int
    status: str = "PENDING"  # PENDING, READY, FAILED (MLflow's LoggedModelStatus)
    status_message: str | None = None
    model_type: str | None = None
    source_run_id: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    lifecycle_stage: str = "active"
    #: metric points linked to this model (``Metric.model_id``), MLflow 3's ``metrics``
    metrics: list[Metric] = field(default_factory=list)

    @property
    def model_uri(self) -> str:
        return f"models:/{self.model_id}"

    def to_json(self, artifact_uri: str | None = None) -> dict[str, Any]:
        info: dict[str, Any] = {
            "model_id": self.model_id,
            "experiment_id": self.experiment_id,
            "name": self.name,
            "artifact_uri": artifact_uri or self.artifact_location,
            "creation_timestamp_ms": self.creation_timestamp,
            "last_updated_timestamp_ms": self.last_updated_timestamp,
            "status": {"PENDING": "LOGGED_MODEL_PENDING", "READY": "LOGGED_MODEL_READY"}.get(
                self.status, "LOGGED_MODEL_UPLOAD_FAILED"
            ),
            "tags": _kv(self.tags),
        }
        for key in ("status_message", "model_type", "source_run_id"):
            if getattr(self, key):
                info[key] = getattr(self, key)
        metrics = [
            {**m.to_dictionary(), "value": float_to_json(m.value), "run_id": m.run_id}
            for m in self.metrics
        ]
        metrics = [{k: v for k, v in m.items() if v is not None} for m in metrics]
        return {"info": info, "data": {"params": _kv(self.params), "metrics": metrics}}

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> LoggedModel:
        info, data = body.get("info", {}), body.get("data", {})
        status = str(info.get("status", "")).removeprefix("LOGGED_MODEL_")
        return cls(
            model_id=info["model_id"],
            experiment_id=info["experiment_id"],
            name=info.get("name", ""),
            artifact_location=info.get("artifact_uri", ""),
            creation_timestamp=int(info.get("creation_timestamp_ms", 0)),
            last_updated_timestamp=int(info.get("last_updated_timestamp_ms", 0)),
            status="FAILED" if status == "UPLOAD_FAILED" else status or "PENDING",
            status_message=info.get("status_message"),
            model_type=info.get("model_type"),
            source_run_id=info.get("source_run_id"),
            tags=_from_kv(info.get("tags")),
            params=_from_kv(data.get("params")),
            metrics=[
                Metric(
                    m["key"],
                    float_from_json(m["value"]),
                    int(m.get("timestamp", 0)),
                    int(m.get("step", 0)),
                    m.get("run_id"),
                    m.get("model_id"),
                    m.get("dataset_name"),
                    m.get("dataset_digest"),
                )  # fmt: skip
                for m in data.get("metrics") or []
            ],
        )


@dataclass
class RegisteredModelAlias:
    alias: str
    version: str


@dataclass
class ModelVersion:
    name: str
    version: str
    creation_timestamp: int
    last_updated_timestamp: int
    source: str
    run_id: str | None = None
    model_id: str | None = None
    status: str = "READY"
    description: str | None = None
    current_stage: str = "None"
    run_link: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    aliases: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "version": self.version,
            "creation_timestamp": self.creation_timestamp,
            "last_updated_timestamp": self.last_updated_timestamp,
            "current_stage": self.current_stage,
            "source": self.source,
            "status": self.status,
            "tags": _kv(self.tags),
            "aliases": list(self.aliases),
        }
        for key in ("run_id", "model_id", "description", "run_link"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        return out

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> ModelVersion:
        return cls(
            name=body["name"],
            version=str(body["version"]),
            creation_timestamp=int(body.get("creation_timestamp", 0)),
            last_updated_timestamp=int(body.get("last_updated_timestamp", 0)),
            source=body.get("source", ""),
            run_id=body.get("run_id"),
            model_id=body.get("model_id"),
            status=body.get("status", "READY"),
            description=body.get("description"),
            current_stage=body.get("current_stage", "None"),
            run_link=body.get("run_link"),
            tags=_from_kv(body.get("tags")),
            aliases=list(body.get("aliases") or []),
        )


@dataclass
class RegisteredModel:
    name: str
    creation_timestamp: int
    last_updated_timestamp: int
    description: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)  # alias -> version
    latest_versions: list[ModelVersion] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "creation_timestamp": self.creation_timestamp,
            "last_updated_timestamp": self.last_updated_timestamp,
            "tags": _kv(self.tags),
            "aliases": [{"alias": a, "version": v} for a, v in sorted(self.aliases.items())],
            "latest_versions": [v.to_json() for v in self.latest_versions],
        }
        if self.description:
            out["description"] = self.description
        return out

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> RegisteredModel:
        return cls(
            name=body["name"],
            creation_timestamp=int(body.get("creation_timestamp", 0)),
            last_updated_timestamp=int(body.get("last_updated_timestamp", 0)),
            description=body.get("description"),
            tags=_from_kv(body.get("tags")),
            aliases={a["alias"]: str(a["version"]) for a in body.get("aliases") or []},
            latest_versions=[ModelVersion.from_json(v) for v in body.get("latest_versions") or []],
        )
