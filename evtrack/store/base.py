"""The ``TrackingStore`` interface: what every place tracking data can live must do.

Two implementations, picked by the tracking URI's scheme (see :mod:`evtrack.store.registry`):

* :class:`evtrack.store.log.store.LogStore`: the event log on any fsspec filesystem
  (a local folder, ``memory://``, ``s3://``, ``gs://``, ``az://``);
* :class:`evtrack.store.rest.store.RestStore`: an ``evtrack server`` over HTTP.

:class:`~evtrack.tracking.client.MlflowClient` is a facade over one of them (MLflow's
argument names and defaults, artifacts); the tracking server's handlers call a
:class:`LogStore` through the same methods. The operations are those of MLflow's tracking
store (``mlflow/store/tracking/abstract_store.py``), plus what an event log adds: metric
series as arrays, history as Arrow, SQL over the views, ``flush``.

Validation of keys, values and states happens in the store, so every path (client,
server, plugin) goes through it exactly once. Writes are buffered in the process's
writer: they are durable when a call with ``synchronous=True`` returns, after
:meth:`TrackingStore.flush`, at ``set_terminated`` and at interpreter exit.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

if TYPE_CHECKING:  # pragma: no cover
    import duckdb
    import pyarrow as pa

    from evtrack.artifacts.repository import WrittenArtifact
    from evtrack.entities import DatasetInput, Experiment, Metric, Param, Run, RunInfo, RunTag
    from evtrack.store.log.writer import Writer

__all__ = [
    "DEFAULT_EXPERIMENT_ID",
    "DEFAULT_EXPERIMENT_NAME",
    "PagedList",
    "TrackingStore",
    "dataset_input",
    "history_metrics",
]

T = TypeVar("T")

DEFAULT_EXPERIMENT_ID = "0"
DEFAULT_EXPERIMENT_NAME = "Default"


class PagedList(list[T]):
    """A page of results; ``token`` fetches the next page (None on the last)."""

    def __init__(self, items: Iterable[T], token: str | None) -> None:
        super().__init__(items)
        self.token = token


def history_metrics(table: pa.Table, key: str, run_id: str) -> list[Metric]:
    """:class:`Metric` objects from a history table (step, timestamp, value)."""
    from evtrack.entities import Metric

    steps, stamps = table["step"].to_pylist(), table["timestamp"].to_pylist()
    return [
        Metric(key, v, t, s, run_id)
        for s, t, v in zip(steps, stamps, table["value"].to_pylist(), strict=True)
    ]


def dataset_input(dataset: dict[str, Any], tags: Iterable[tuple[str, str]]) -> DatasetInput:
    """A :class:`DatasetInput` from its stored or REST form (missing text fields are "", schema and profile None)."""
    from evtrack.entities import Dataset, DatasetInput, InputTag

    def text(key: str) -> str:  # a missing required text field reads as "", never None
        value = dataset.get(key)
        return "" if value is None else str(value)

    def optional(key: str) -> str | None:
        value = dataset.get(key)
        return None if value is None else str(value)

    return DatasetInput(
        Dataset(
            name=text("name"),
            digest=text("digest"),
            source_type=text("source_type"),
            source=text("source"),
            schema=optional("schema"),
            profile=optional("profile"),
        ),
        [InputTag(k, v) for k, v in tags],
    )


@runtime_checkable
class TrackingStore(Protocol):
    """Experiments, runs and their data, wherever they are kept."""

    #: The canonical tracking URI this store was opened with.
    uri: str
    #: The process's writer for this store: the hot path appends to its buffers.
    writer: Writer

    # -- experiments ---------------------------------------------------------------------

    def create_experiment(
        self, name: str, artifact_location: str | None = None, tags: dict[str, Any] | None = None
    ) -> str: ...

    def get_experiment(self, experiment_id: str) -> Experiment: ...

    def get_experiment_by_name(self, name: str) -> Experiment | None: ...

    def search_experiments(
        self,
        view_type: int,
        max_results: int | None,
        filter_string: str | None,
        order_by: list[str] | None,
        page_token: str | None,
    ) -> PagedList[Experiment]: ...

    def rename_experiment(self, experiment_id: str, new_name: str) -> None: ...

    def delete_experiment(self, experiment_id: str) -> None: ...

    def restore_experiment(self, experiment_id: str) -> None: ...

    def set_experiment_tag(self, experiment_id: str, key: str, value: Any) -> None: ...

    def delete_experiment_tag(self, experiment_id: str, key: str) -> None: ...

    # -- runs ----------------------------------------------------------------------------

    def create_run(
        self,
        experiment_id: str,
        start_time: int | None = None,
        tags: dict[str, Any] | None = None,
        run_name: str | None = None,
        *,
        run_id: str | None = None,
        user_id: str | None = None,
    ) -> Run: ...

    def get_run(self, run_id: str) -> Run: ...

    def update_run_info(
        self,
        run_id: str,
        status: str | None = None,
        end_time: int | None = None,
        run_name: str | None = None,
    ) -> RunInfo: ...

    def set_terminated(
        self, run_id: str, status: str | None = None, end_time: int | None = None
    ) -> None: ...

    def delete_run(self, run_id: str) -> None: ...

    def restore_run(self, run_id: str) -> None: ...

    # -- logging -------------------------------------------------------------------------

    def log_metric(
        self,
        run_id: str,
        key: str,
        value: float,
        timestamp: int | None = None,
        step: int | None = None,
        synchronous: bool | None = None,
    ) -> None: ...

    def log_batch(
        self,
        run_id: str,
        metrics: Sequence[Metric] = (),
        params: Sequence[Param] = (),
        tags: Sequence[RunTag] = (),
        synchronous: bool | None = None,
    ) -> None: ...

    def log_metric_series(
        self,
        run_id: str,
        key: str,
        values: Any,
        steps: Any = None,
        timestamps: Any = None,
        synchronous: bool | None = None,
    ) -> None: ...

    def delete_tag(self, run_id: str, key: str) -> None: ...

    def log_inputs(self, run_id: str, datasets: Sequence[DatasetInput] | None = None) -> None: ...

    def get_run_inputs(self, run_id: str) -> list[DatasetInput]: ...

    # -- reading -------------------------------------------------------------------------

    def get_metric_history(self, run_id: str, key: str) -> list[Metric]: ...

    def get_metric_history_arrow(self, run_id: str, key: str) -> pa.Table: ...

    def search_runs(
        self,
        experiment_ids: list[str],
        filter_string: str,
        run_view_type: int,
        max_results: int,
        order_by: list[str] | None,
        page_token: str | None,
    ) -> PagedList[Run]: ...

    # -- artifacts -----------------------------------------------------------------------

    def artifact_repository(self, artifact_uri: str) -> Any:
        """Where a run's files go: upload, list, download, delete (see artifacts/)."""
        ...

    def record_artifacts(
        self, run_id: str, written: Sequence[WrittenArtifact] = (), deleted: Sequence[str] = ()
    ) -> None:
        """Record files written to or deleted from a run's artifact location as events."""
        ...

    # -- evtrack extras ------------------------------------------------------------------

    def flush(self) -> None:
        """Make every event logged so far durable."""
        ...

    def compact_run(self, experiment_id: str, run_id: str) -> None:
        """Fold an ended run's segments into compacted files (an optimisation)."""
        ...

    def sql(
        self, query: str, params: list[Any] | dict[str, Any] | None = None
    ) -> duckdb.DuckDBPyRelation:
        """Run SQL over the documented views, isolated from every other reader."""
        ...

    def close(self) -> None:
        """Flush and let go of caches, connections and threads."""
        ...
