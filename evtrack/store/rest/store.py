"""``RestStore``: the :class:`~evtrack.store.base.TrackingStore` of an ``evtrack server``.

``set_tracking_uri("http://host:5000")`` picks it (see :mod:`evtrack.store.registry`).

* Reads and metadata calls (create/get/search experiments and runs, metric history,
  SQL) go to the server's REST API; the server validates them.
* Run writes (metrics, params, tags, run state, artifacts) go through the process's
  :class:`~evtrack.store.log.writer.Writer` exactly as for a local store, validated here
  by :class:`~evtrack.store.log.run_writes.RunWrites`; the writer's segments go to an
  :class:`~evtrack.store.rest.sink.HttpSink`, which PUTs each create-only (a retry never
  stores an event twice), retries transient failures and spools what it cannot send at
  exit for ``evtrack sync``. So the hot path (``log_metric`` in a loop) costs the same
  as logging to a local folder.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from evtrack.clock import now_ms
from evtrack.entities import (
    DatasetInput,
    Experiment,
    Metric,
    Run,
    RunData,
    RunInfo,
    ViewType,
)
from evtrack.errors import (
    ExperimentNotFound,
    InvalidParameterValue,
    ResourceDoesNotExist,
    RunNotFound,
)
from evtrack.jsonfloat import float_from_json
from evtrack.store.base import PagedList, dataset_input, history_metrics
from evtrack.store.log.run_writes import RunWrites
from evtrack.store.log.writer import get_writer
from evtrack.store.rest.sink import get_sink

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa

__all__ = ["RestStore"]


def _run_from_json(body: dict[str, Any]) -> Run:
    info = body["info"]
    data = body.get("data") or {}
    metric_objs = [
        Metric(
            m["key"], float_from_json(m["value"]), int(m.get("timestamp", 0)), int(m.get("step", 0))
        )
        for m in data.get("metrics", [])
    ]
    run_data = RunData(
        metrics={m.key: m.value for m in metric_objs},
        params={p["key"]: p.get("value", "") for p in data.get("params", [])},
        tags={t["key"]: t.get("value", "") for t in data.get("tags", [])},
        _metric_objs=metric_objs,
    )
    run_info = RunInfo(
        run_id=info["run_id"],
        experiment_id=info["experiment_id"],
        user_id=info.get("user_id", ""),
        status=info.get("status", "RUNNING"),
        start_time=info.get("start_time"),
        end_time=info.get("end_time"),
        lifecycle_stage=info.get("lifecycle_stage", "active"),
        artifact_uri=info.get("artifact_uri", ""),
        run_name=info.get("run_name", ""),
    )
    return Run(run_info, run_data)


def _experiment_from_json(body: dict[str, Any]) -> Experiment:
    return Experiment(
        experiment_id=body["experiment_id"],
        name=body["name"],
        artifact_location=body.get("artifact_location", ""),
        lifecycle_stage=body.get("lifecycle_stage", "active"),
        tags={t["key"]: t.get("value", "") for t in body.get("tags", [])},
        creation_time=body.get("creation_time"),
        last_update_time=body.get("last_update_time"),
    )


API = "/api/2.0/mlflow"


class RestStore(RunWrites):
    """The store behind an ``evtrack server``, for an ``http(s)://`` tracking URI."""

    def __init__(self, uri: str) -> None:
        super().__init__()
        self._created_ms: dict[str, int] = {}  # run id -> when the server created it
        self.uri = uri.rstrip("/")
        self.sink = get_sink(self.uri)
        self.http = self.sink.http
        self.writer = get_writer(self.sink)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return f"RestStore({self.uri!r})"

    def _call(self, method: str, path: str, payload: dict[str, Any] | None = None) -> Any:
        return self.http.call(method, API + path, payload)

    def experiment_of(self, run_id: str) -> str:
        experiment_id = self._run_experiment.get(run_id)
        if experiment_id is None:
            experiment_id = self.get_run(run_id).info.experiment_id
        return experiment_id

    def _logged_params(self, run_id: str) -> dict[str, str]:
        self.writer.flush()  # our own params first
        return dict(self.get_run(run_id).data.params)

    # -- experiments -----------------------------------------------------------------

    def create_experiment(
        self,
        name: str,
        artifact_location: str | None = None,
        tags: dict[str, Any] | None = None,
    ) -> str:
        payload: dict[str, Any] = {"name": name}
        if artifact_location:
            payload["artifact_location"] = artifact_location
        if tags:
            payload["tags"] = [{"key": k, "value": str(v)} for k, v in tags.items()]
        return self._call("POST", "/experiments/create", payload)["experiment_id"]

    def get_experiment(self, experiment_id: str) -> Experiment:
        try:
            body = self._call("GET", "/experiments/get", {"experiment_id": str(experiment_id)})
        except ResourceDoesNotExist as exc:  # the same class a local store raises
            raise ExperimentNotFound(exc.message) from None
        return _experiment_from_json(body["experiment"])

    def get_experiment_by_name(self, name: str) -> Experiment | None:
        try:
            body = self._call("GET", "/experiments/get-by-name", {"experiment_name": name})
        except ResourceDoesNotExist:
            return None
        return _experiment_from_json(body["experiment"])

    def search_experiments(
        self,
        view_type: int = ViewType.ACTIVE_ONLY,
        max_results: int | None = None,
        filter_string: str | None = None,
        order_by: list[str] | None = None,
        page_token: str | None = None,
    ) -> PagedList:
        payload: dict[str, Any] = {
            "view_type": _view_name(view_type),
            "max_results": 1000 if max_results is None else max_results,
        }
        if filter_string:
            payload["filter"] = filter_string
        if order_by:
            payload["order_by"] = list(order_by)
        if page_token:
            payload["page_token"] = page_token
        body = self._call("POST", "/experiments/search", payload)
        exps = [_experiment_from_json(e) for e in body.get("experiments", [])]
        return PagedList(exps, body.get("next_page_token"))

    def rename_experiment(self, experiment_id: str, new_name: str) -> None:
        self._call(
            "POST", "/experiments/update", {"experiment_id": experiment_id, "new_name": new_name}
        )

    def delete_experiment(self, experiment_id: str) -> None:
        self._call("POST", "/experiments/delete", {"experiment_id": str(experiment_id)})

    def restore_experiment(self, experiment_id: str) -> None:
        self._call("POST", "/experiments/restore", {"experiment_id": str(experiment_id)})

    def set_experiment_tag(self, experiment_id: str, key: str, value: Any) -> None:
        self._call(
            "POST",
            "/experiments/set-experiment-tag",
            {"experiment_id": str(experiment_id), "key": key, "value": str(value)},
        )

    def delete_experiment_tag(self, experiment_id: str, key: str) -> None:
        self._call(
            "POST",
            "/experiments/delete-experiment-tag",
            {"experiment_id": experiment_id, "key": key},
        )

    # -- runs --------------------------------------------------------------------------

    def create_run(
        self,
        experiment_id: str,
        start_time: int | None = None,
        tags: dict[str, Any] | None = None,
        run_name: str | None = None,
        *,
        run_id: str | None = None,
        user_id: str | None = None,
    ) -> Run:
        from evtrack.tracking.context import user_name

        if run_id is not None:
            # MLflow's REST API has no field for it: the server always makes the id.
            raise InvalidParameterValue(
                "An evtrack server chooses the id of a new run: create the run without "
                "run_id, or log to the store directly to import runs with their ids."
            )
        tags = {k: str(v) for k, v in (tags or {}).items()}
        payload: dict[str, Any] = {
            "experiment_id": str(experiment_id),
            "start_time": now_ms() if start_time is None else start_time,
            "user_id": user_id or tags.get("mlflow.user") or user_name(),
            "tags": [{"key": k, "value": v} for k, v in tags.items()],
        }
        if run_name:
            payload["run_name"] = run_name
        run = _run_from_json(self._call("POST", "/runs/create", payload)["run"])
        self._remember_run(run.info.run_id, run.info.experiment_id, {})
        self._created_ms[run.info.run_id] = now_ms()
        return run

    def get_run(self, run_id: str) -> Run:
        self.writer.flush()  # a process reads its own writes
        try:
            body = self._call("GET", "/runs/get", {"run_id": run_id})
        except ResourceDoesNotExist as exc:  # the same class a local store raises
            raise RunNotFound(exc.message) from None
        run = _run_from_json(body["run"])
        self._run_experiment[run_id] = run.info.experiment_id
        return run

    def _event_time(self, run_id: str) -> int:
        """Now, but after the server's own events for the run (see store/log/fold.py).

        The server wrote the run's first state with its writer; events of two writers in
        the same millisecond are ordered by writer id, not by when they were made, so a
        ``set_terminated`` right after ``create_run`` could lose to "RUNNING". Run writes
        go through the writer (and the spool when the server is down), stamped at least
        one millisecond after the server answered ``create_run``. Clocks of different
        hosts are trusted as wall-clock last-writer-wins always trusts them.
        """
        return max(now_ms(), self._created_ms.get(run_id, 0) + 1)

    def get_run_inputs(self, run_id: str) -> list[DatasetInput]:
        body = self._call("GET", "/runs/get", {"run_id": run_id})["run"]
        out = []
        for item in (body.get("inputs") or {}).get("dataset_inputs", []):
            tags = [(t["key"], t.get("value", "")) for t in item.get("tags", [])]
            out.append(dataset_input(item.get("dataset") or {}, tags))
        return out

    def search_runs(
        self,
        experiment_ids: list[str],
        filter_string: str = "",
        run_view_type: int = ViewType.ACTIVE_ONLY,
        max_results: int = 1000,
        order_by: list[str] | None = None,
        page_token: str | None = None,
    ) -> PagedList:
        self.writer.flush()  # a process reads its own writes
        payload: dict[str, Any] = {
            "experiment_ids": [str(e) for e in experiment_ids],
            "filter": filter_string or "",
            "run_view_type": _view_name(run_view_type),
            "max_results": max_results,
        }
        if order_by:
            payload["order_by"] = list(order_by)
        if page_token:
            payload["page_token"] = page_token
        body = self._call("POST", "/runs/search", payload)
        return PagedList(
            [_run_from_json(r) for r in body.get("runs", [])], body.get("next_page_token")
        )

    def get_metric_history_arrow(self, run_id: str, key: str) -> pa.Table:
        import pyarrow as pa

        self.writer.flush()
        steps: list[int] = []
        stamps: list[int] = []
        values: list[float] = []
        token = None
        while True:
            payload: dict[str, Any] = {"run_id": run_id, "metric_key": key, "max_results": 25000}
            if token:
                payload["page_token"] = token
            body = self._call("GET", "/metrics/get-history", payload)
            for m in body.get("metrics", []):
                steps.append(int(m.get("step", 0)))
                stamps.append(int(m.get("timestamp", 0)))
                values.append(float_from_json(m["value"]))
            token = body.get("next_page_token")
            if not token:
                break
        table = pa.table(
            {
                "step": pa.array(steps, pa.int64()),
                "timestamp": pa.array(stamps, pa.int64()),
                "value": pa.array(values, pa.float64()),
            }
        )
        return table.sort_by([("step", "ascending"), ("timestamp", "ascending")])

    def get_metric_history(self, run_id: str, key: str) -> list[Metric]:
        return history_metrics(self.get_metric_history_arrow(run_id, key), key, run_id)

    # -- artifacts -------------------------------------------------------------------

    def artifact_repository(self, artifact_uri: str) -> Any:
        """The server's ``mlflow-artifacts`` proxy, or the storage URL itself."""
        if artifact_uri.startswith("mlflow-artifacts:"):
            from evtrack.store.rest.artifacts import ProxiedArtifacts

            return ProxiedArtifacts(self.http, artifact_uri)
        from evtrack.artifacts.repository import ArtifactRepository

        return ArtifactRepository(artifact_uri)

    def record_artifacts(self, run_id: str, written=(), deleted=()) -> None:
        run = self.get_run(run_id)
        if run.info.artifact_uri.startswith("mlflow-artifacts:"):
            return  # the server's proxy recorded them
        super().record_artifacts(run_id, written, deleted)

    # -- evtrack extras --------------------------------------------------------------

    def compact_run(self, experiment_id: str, run_id: str) -> None:
        """Nothing to do here: compaction is the server side's job (``evtrack compact``)."""

    def sql(self, query: str, params: list | dict | None = None):
        """Run read-only SQL on the server; returns a DuckDB relation over the result."""
        import duckdb
        import pyarrow as pa

        payload: dict[str, Any] = {"query": query}
        if params is not None:
            payload["params"] = params
        body = self.http.call("POST", "/api/evtrack/sql", payload)
        columns = body["columns"]
        data = {c: [row[i] for row in body["rows"]] for i, c in enumerate(columns)}
        return duckdb.from_arrow(pa.table(data) if columns else pa.table({}))

    def close(self) -> None:
        """Send what this process logged, stop its writer, close the connections and
        forget cached run facts (a later call opens new connections)."""
        try:
            self.writer.flush()
        finally:
            self._params.clear()
            self._run_experiment.clear()
            self.sink.close()


def _view_name(view_type: int) -> str:
    try:
        return ViewType.to_string(view_type)
    except KeyError:
        raise InvalidParameterValue(
            f"Invalid view type {view_type!r}: use ViewType.ACTIVE_ONLY, DELETED_ONLY or ALL."
        ) from None
