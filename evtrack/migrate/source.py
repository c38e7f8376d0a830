"""What an MLflow store holds, as the importer needs it, whatever the store's kind.

A :class:`Source` lists experiments and runs (with params and tags, which are small) and
hands out each run's metric histories as Arrow tables (which are not) and its artifact
files. :func:`open_source` picks the reader by the URI: a folder or ``file://`` is an
MLflow file store (:mod:`.file_store`), ``http(s)://`` an MLflow tracking server
(:mod:`.http_source`), anything else a database URI for SQLAlchemy (:mod:`.database`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from evtrack.errors import InvalidParameterValue

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa

__all__ = [
    "STATUS_NAMES",
    "Source",
    "SourceExperiment",
    "SourceRun",
    "open_source",
]

#: MLflow's RunStatus numbers, as file stores write them in meta.yaml.
STATUS_NAMES = {1: "RUNNING", 2: "SCHEDULED", 3: "FINISHED", 4: "FAILED", 5: "KILLED"}


@dataclass
class SourceExperiment:
    experiment_id: str
    name: str
    artifact_location: str
    lifecycle_stage: str
    tags: dict[str, str] = field(default_factory=dict)
    creation_time: int | None = None
    last_update_time: int | None = None


@dataclass
class SourceRun:
    run_id: str
    experiment_id: str
    run_name: str
    user_id: str
    status: str
    start_time: int | None
    end_time: int | None
    lifecycle_stage: str
    artifact_uri: str
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    #: Metric keys, when the source lists them with the run (servers do).
    metric_keys: list[str] = field(default_factory=list)


class Source(Protocol):
    uri: str

    def experiments(self) -> list[SourceExperiment]: ...

    def runs(self, experiment_id: str) -> list[SourceRun]: ...

    def metric_counts(self, run: SourceRun) -> dict[str, int]:
        """Points per metric key, for deciding what a resumed import still lacks."""
        ...

    def metrics(self, run: SourceRun) -> dict[str, pa.Table]:
        """Each key's full history: columns ``step`` (int64), ``timestamp`` (int64),
        ``value`` (float64), in the order MLflow returns them."""
        ...

    def artifact_files(self, run: SourceRun) -> tuple[Any, str, list[str]]:
        """``(fsspec filesystem, root path, relative file paths)`` of the run's artifacts."""
        ...

    def close(self) -> None: ...


def status_name(status: Any) -> str:
    """A run status as MLflow's name, from the name or the file store's number."""
    if isinstance(status, int) or (isinstance(status, str) and status.isdigit()):
        return STATUS_NAMES.get(int(status), "RUNNING")
    return str(status or "RUNNING")


def local_artifact_files(
    artifact_uri: str, base_dir: str | None = None
) -> tuple[Any, str, list[str]]:
    """The files under an artifact URI any fsspec filesystem can open.

    A relative URI (``./mlruns/0/<run>/artifacts``, what MLflow writes when its default
    artifact root was relative) is resolved against ``base_dir`` when it exists there,
    else against the working directory, as MLflow itself would.
    """
    import fsspec

    if not artifact_uri:
        return None, "", []
    uri = artifact_uri
    if "://" not in uri and not os.path.isabs(uri):
        if base_dir and os.path.exists(os.path.join(base_dir, uri)):
            uri = os.path.join(base_dir, uri)
        uri = os.path.abspath(uri)
    if uri.startswith(("mlflow-artifacts:", "dbfs:", "runs:", "models:")):
        raise InvalidParameterValue(
            f"Cannot copy artifacts from {artifact_uri!r}: import from the MLflow server "
            "(http://host:port) that serves them, or pass --no-artifacts."
        )
    fs, root = fsspec.core.url_to_fs(uri)
    root = root.rstrip("/")
    try:
        found = fs.find(root)
    except FileNotFoundError:
        return fs, root, []
    return fs, root, sorted(f[len(root) + 1 :] for f in found if f.startswith(root + "/"))


def open_source(uri: str) -> Source:
    """The reader for an MLflow store URI (folder, ``file://``, database URI, server URL)."""
    if uri.startswith(("http://", "https://")):
        from evtrack.migrate.http_source import HttpSource

        return HttpSource(uri)
    if uri.startswith("file://") or "://" not in uri:
        from evtrack.migrate.file_store import FileStoreSource

        return FileStoreSource(uri)
    from evtrack.migrate.database import DatabaseSource

    return DatabaseSource(uri)
