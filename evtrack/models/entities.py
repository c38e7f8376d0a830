"""Logged models, registered models and model versions, with MLflow's field names
and their REST JSON (``to_json``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["LoggedModel", "ModelVersion", "RegisteredModel", "RegisteredModelAlias"]


def _kv(d: dict[str, str]) -> list[dict[str, str]]:
    return [{"key": k, "value": v} for k, v in sorted(d.items())]


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
        return {"info": info, "data": {"params": _kv(self.params), "metrics": []}}


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
