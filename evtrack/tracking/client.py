"""``MlflowClient``: the run-id-explicit API, over the store, the writer and DuckDB.

Writes become events in the process's :class:`~evtrack.store.log.writer.Writer`; reads first
flush that writer (a process always reads its own writes), then fold the store's
events with DuckDB (:mod:`evtrack.store.log.views`).
"""

from __future__ import annotations

import json
import os
import posixpath
import tempfile
import threading
import uuid
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from evtrack.artifacts.repository import ArtifactRepository, WrittenArtifact
from evtrack.entities import (
    Experiment,
    FileInfo,
    LifecycleStage,
    Metric,
    Param,
    Run,
    RunData,
    RunInfo,
    RunStatus,
    RunTag,
    ViewType,
)
from evtrack.errors import (
    ExperimentNotFound,
    InvalidParameterValue,
    ResourceAlreadyExists,
    RunNotFound,
)
from evtrack.store.log.layout import Store, get_store
from evtrack.store.log.writer import Writer, get_writer, now_ms
from evtrack.tracking import validation

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa

__all__ = ["DEFAULT_EXPERIMENT_ID", "MlflowClient", "PagedList"]

DEFAULT_EXPERIMENT_ID = "0"
DEFAULT_EXPERIMENT_NAME = "Default"


class PagedList(list):
    """A page of results; ``token`` fetches the next page (None on the last)."""

    def __init__(self, items: Iterable[Any], token: str | None) -> None:
        super().__init__(items)
        self.token = token


class _StoreState:
    """What a process remembers about a store: run → experiment, params it logged."""

    def __init__(self) -> None:
        self.run_experiment: dict[str, str] = {}
        self.params: dict[str, dict[str, str]] = {}
        self.default_ready = False
        self.lock = threading.Lock()
        # experiment id -> (monotonic time read, Experiment), for create_run only
        self.experiments: dict[str, tuple[float, Experiment]] = {}


_STATES: dict[int, _StoreState] = {}


def _state(store: Store) -> _StoreState:
    state = _STATES.get(id(store))
    if state is None:
        state = _STATES.setdefault(id(store), _StoreState())
    return state


class MlflowClient:
    """MLflow's client API, with MLflow's names, arguments, defaults and errors."""

    def __new__(cls, tracking_uri: str | None = None, registry_uri: str | None = None):
        if (
            cls is MlflowClient
        ):  # an http(s):// URI is an evtrack server: evtrack/store/rest/client.py
            from evtrack.tracking.fluent import get_tracking_uri

            if str(tracking_uri or get_tracking_uri()).startswith(("http://", "https://")):
                from evtrack.store.rest.client import RemoteClient

                cls = RemoteClient
        return super().__new__(cls)

    def __init__(self, tracking_uri: str | None = None, registry_uri: str | None = None) -> None:
        from evtrack.tracking.fluent import get_tracking_uri

        self._tracking_uri = tracking_uri or get_tracking_uri()
        self.store: Store = get_store(self._tracking_uri)
        self.writer: Writer = get_writer(self.store)
        self._state = _state(self.store)

    @property
    def tracking_uri(self) -> str:
        return self._tracking_uri

    # -- plumbing ------------------------------------------------------------------

    def _ready(self) -> None:
        """Make sure the store is initialised and the Default experiment exists."""
        if self._state.default_ready:
            return
        self.store.ensure()
        with self._state.lock:
            if self._state.default_ready:
                return
            marker = self.store.path("experiments", DEFAULT_EXPERIMENT_ID, "experiment.json")
            if not self.store.fs.exists(marker):
                # Events first, marker last: whoever sees the marker also sees the events.
                # Processes racing here both write the same attributes, which is harmless.
                created = now_ms()
                try:
                    self.store.claim_name(DEFAULT_EXPERIMENT_NAME, DEFAULT_EXPERIMENT_ID)
                except ResourceAlreadyExists:
                    pass  # another experiment was renamed to "Default": keep theirs
                self._experiment_events(
                    DEFAULT_EXPERIMENT_ID,
                    name=DEFAULT_EXPERIMENT_NAME,
                    artifact_location=self._default_artifact_location(DEFAULT_EXPERIMENT_ID),
                    lifecycle_stage=LifecycleStage.ACTIVE,
                    creation_time=created,
                    last_update_time=created,
                )
                self.writer.flush()
                self.store.ensure_experiment_dir(DEFAULT_EXPERIMENT_ID, {"name": "Default"})
            self._state.default_ready = True

    def _experiment_events(self, experiment_id: str, **attrs: Any) -> None:
        self._state.experiments.pop(experiment_id, None)  # our own change: seen at once
        t = now_ms()
        for key, value in attrs.items():
            self.writer.add(experiment_id, None, "experiment", key, str(value), time_ms=t)

    def _default_artifact_location(self, experiment_id: str) -> str:
        from evtrack import settings

        root = settings.get("artifact_root")
        if root:
            return f"{root.rstrip('/')}/{experiment_id}"
        return self.store.url("experiments", experiment_id, "artifacts")

    def _read(
        self,
        experiment_ids: list[str] | None = None,
        run_id: str | None = None,
        history: bool = False,
    ):
        """A DuckDB connection over the current events (after flushing our own).

        Without ``history`` compacted data is read from the reduced files (only the
        events that decide each view): every view but ``metrics`` and ``events`` is
        then complete, and a search over 10,000 runs reads a few files.
        """
        from evtrack.store.log.views import connect, load_events

        self._ready()
        self.writer.flush()
        return connect(load_events(self.store, experiment_ids, run_id, history))

    def _experiment_of(self, run_id: str) -> str:
        experiment_id = self._state.run_experiment.get(run_id)
        if experiment_id is None:
            validation.check_run_id(run_id)
            self._ready()
            experiment_id = self.store.experiment_of_run(run_id)
            if experiment_id is None:
                raise RunNotFound(f"Run with id={run_id} not found")
            self._state.run_experiment[run_id] = experiment_id
        return experiment_id

    # -- experiments -----------------------------------------------------------------

    def create_experiment(
        self,
        name: str,
        artifact_location: str | None = None,
        tags: dict[str, Any] | None = None,
    ) -> str:
        validation.check_experiment_name(name)
        tags = dict(validation.check_experiment_tag(k, v) for k, v in (tags or {}).items())
        if artifact_location is not None:
            validation.check_experiment_artifact_location(artifact_location)
        self._ready()
        owner = self.store.name_owner(name)
        if owner is not None:
            found = self._experiments("experiment_id = ?", [owner], only=owner)
            if not found or found[0].name == name:
                stage = found[0].lifecycle_stage if found else "active"
                raise ResourceAlreadyExists(
                    f"Experiment '{name}' already exists in {stage} state (id {owner}). "
                    "Choose another name"
                    + (", or restore that experiment." if stage == "deleted" else ".")
                )
            # The claim's experiment has since been renamed (a rename that crashed before
            # releasing the old name): the claim is stale.
            self.store.release_name(name)
        created = now_ms()
        experiment_id = self.store.claim_experiment_id({"name": name, "created": created})
        self.store.claim_name(name, experiment_id)
        self._experiment_events(
            experiment_id,
            name=name,
            artifact_location=artifact_location or self._default_artifact_location(experiment_id),
            lifecycle_stage=LifecycleStage.ACTIVE,
            creation_time=created,
            last_update_time=created,
        )
        for key, value in (tags or {}).items():
            self.writer.add(experiment_id, None, "experiment_tag", key, str(value), time_ms=created)
        self.writer.flush()
        return experiment_id

    def _experiments(
        self, where: str = "true", params: list | None = None, only: str | None = None
    ) -> list[Experiment]:
        """Experiments matching ``where``; ``only`` reads just that experiment's events."""
        from evtrack.store.log.views import rows

        con = self._read(None if only is None else [only])
        out = []
        for r in rows(con, f"select * from experiments where {where}", params):
            tags = dict(
                con.execute(
                    "select key, value from experiment_tags where experiment_id = ?",
                    [r["experiment_id"]],
                ).fetchall()
            )
            out.append(Experiment(tags=tags, **r))
        return out

    def get_experiment(self, experiment_id: str) -> Experiment:
        experiment_id = validation.check_experiment_id(experiment_id)
        found = self._experiments("experiment_id = ?", [experiment_id], only=experiment_id)
        if not found:
            raise ExperimentNotFound(f"No Experiment with id={experiment_id} exists")
        return found[0]

    def get_experiment_by_name(self, name: str) -> Experiment | None:
        if not isinstance(name, str):
            raise InvalidParameterValue(f"Invalid experiment name: {name!r}. Expects a string.")
        self._ready()
        owner = self.store.name_owner(name)
        if owner is None:
            return None
        found = self._experiments("experiment_id = ? and name = ?", [owner, name], only=owner)
        return found[0] if found else None

    def search_experiments(
        self,
        view_type: int = ViewType.ACTIVE_ONLY,
        max_results: int | None = None,
        filter_string: str | None = None,
        order_by: list[str] | None = None,
        page_token: str | None = None,
    ) -> PagedList:
        from evtrack.search import build_search_experiments

        query = build_search_experiments(
            view_type,
            filter_string,
            1000 if max_results is None else max_results,
            order_by,
            page_token,
        )  # parse and check before touching the store
        con = self._read()
        ids, token = query.page([r[0] for r in con.execute(query.sql, query.params).fetchall()])
        by_id = {e.experiment_id: e for e in self._experiments()}
        return PagedList([by_id[i] for i in ids if i in by_id], token)

    def _recent_experiment(self, experiment_id: str, max_age: float = 2.0) -> Experiment:
        """The experiment as read at most ``max_age`` seconds ago by this process.

        ``create_run`` needs the experiment's state and artifact location; rereading the
        experiment for each of a sweep's runs made run creation slow down as the
        experiment grew. The cost: a run may be created in an experiment that another
        process deleted less than ``max_age`` seconds earlier (changes made by this
        process are seen at once).
        """
        import time

        cached = self._state.experiments.get(experiment_id)
        if cached is not None and time.monotonic() - cached[0] < max_age:
            return cached[1]
        exp = self.get_experiment(experiment_id)
        self._state.experiments[experiment_id] = (time.monotonic(), exp)
        return exp

    def _experiment_must_exist(self, experiment_id: str) -> Experiment:
        return self.get_experiment(experiment_id)

    def rename_experiment(self, experiment_id: str, new_name: str) -> None:
        validation.check_experiment_name(new_name)
        exp = self._experiment_must_exist(experiment_id)
        if exp.lifecycle_stage != LifecycleStage.ACTIVE:
            from evtrack.errors import InvalidState

            raise InvalidState(
                f"Cannot rename a non-active experiment {experiment_id}. Restore it first."
            )
        if new_name == exp.name:
            return
        self.store.claim_name(new_name, experiment_id)
        self._experiment_events(experiment_id, name=new_name, last_update_time=now_ms())
        self.writer.flush()
        self.store.release_name(exp.name)

    def _set_experiment_stage(self, experiment_id: str, stage: str) -> None:
        exp = self._experiment_must_exist(experiment_id)
        if stage == LifecycleStage.DELETED and experiment_id == DEFAULT_EXPERIMENT_ID:
            raise InvalidParameterValue("Cannot delete the default experiment '0'.")
        if exp.lifecycle_stage == stage:
            verb = "delete" if stage == LifecycleStage.DELETED else "restore"
            raise InvalidParameterValue(
                f"Cannot {verb} experiment {experiment_id}: it is already {stage}."
            )
        self._experiment_events(experiment_id, lifecycle_stage=stage, last_update_time=now_ms())
        self.writer.flush()

    def delete_experiment(self, experiment_id: str) -> None:
        self._set_experiment_stage(experiment_id, LifecycleStage.DELETED)

    def restore_experiment(self, experiment_id: str) -> None:
        self._set_experiment_stage(experiment_id, LifecycleStage.ACTIVE)

    def set_experiment_tag(self, experiment_id: str, key: str, value: Any) -> None:
        key, value = validation.check_experiment_tag(key, value)
        self._experiment_must_exist(experiment_id)
        self.writer.add(experiment_id, None, "experiment_tag", key, value)
        self.writer.flush()

    def delete_experiment_tag(self, experiment_id: str, key: str) -> None:
        exp = self._experiment_must_exist(experiment_id)
        if key not in exp.tags:
            raise InvalidParameterValue(f"No tag with name: {key} in experiment {experiment_id}.")
        self.writer.add(experiment_id, None, "experiment_tag", key, None)
        self.writer.flush()

    # -- runs ------------------------------------------------------------------------

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
        from evtrack.tracking.context import generate_run_name, user_name

        experiment_id = str(experiment_id)
        tags = dict(validation.check_tag(k, v, truncate=False) for k, v in (tags or {}).items())
        exp = self._recent_experiment(experiment_id)
        if exp.lifecycle_stage != LifecycleStage.ACTIVE:
            raise InvalidParameterValue(
                f"The experiment {experiment_id} must be in the 'active' state. "
                f"Current state is {exp.lifecycle_stage}."
            )
        tag_name = tags.get("mlflow.runName")
        run_name = (
            validation.check_run_name(run_name, tag_value=tag_name)
            or tag_name
            or generate_run_name()
        )
        tags["mlflow.runName"] = run_name
        user_id = validation.check_text(
            user_id or tags.get("mlflow.user") or user_name(), "user_id"
        )
        run_id = run_id or uuid.uuid4().hex
        start_time = now_ms() if start_time is None else validation.check_timestamp(start_time)
        self.store.claim_run_id(run_id, experiment_id)
        self._state.run_experiment[run_id] = experiment_id
        self._state.params[run_id] = {}
        artifact_uri = f"{exp.artifact_location.rstrip('/')}/{run_id}/artifacts"
        t = now_ms()
        attrs = {
            "experiment_id": experiment_id,
            "run_name": run_name,
            "user_id": user_id,
            "status": "RUNNING",
            "start_time": str(start_time),
            "lifecycle_stage": LifecycleStage.ACTIVE,
            "artifact_uri": artifact_uri,
        }
        for key, value in attrs.items():
            self.writer.add(experiment_id, run_id, "run", key, value, time_ms=t)
        for key, value in tags.items():
            self.writer.add(experiment_id, run_id, "tag", key, value, time_ms=t)
        info = RunInfo(
            run_id=run_id,
            experiment_id=experiment_id,
            user_id=user_id,
            status="RUNNING",
            start_time=start_time,
            end_time=None,
            lifecycle_stage=LifecycleStage.ACTIVE,
            artifact_uri=artifact_uri,
            run_name=run_name,
        )
        return Run(info, RunData(tags=dict(tags)))

    def get_run(self, run_id: str) -> Run:
        experiment_id = self._experiment_of(run_id)
        con = self._read([experiment_id], run_id)
        runs = self._runs_from(con, [run_id])
        if not runs:
            raise RunNotFound(f"Run with id={run_id} not found")
        return runs[0]

    def _runs_from(self, con, run_ids: Sequence[str]) -> list[Run]:
        """Build Run objects for ``run_ids`` (in that order) from a view connection."""
        import pyarrow as pa

        from evtrack.store.log.views import rows

        if not run_ids:
            return []
        con.register("wanted", pa.table({"run_id": list(run_ids)}))
        infos = {
            r["run_id"]: r
            for r in rows(con, "select * from runs where run_id in (select run_id from wanted)")
        }
        data = {rid: RunData() for rid in infos}
        for rid, key, value in con.execute(
            "select run_id, key, value from params where run_id in (select run_id from wanted)"
        ).fetchall():
            if rid in data:
                data[rid].params[key] = value
        for rid, key, value in con.execute(
            "select run_id, key, value from tags where run_id in (select run_id from wanted)"
        ).fetchall():
            if rid in data:
                data[rid].tags[key] = value
        for rid, key, value, step, ts in con.execute(
            "select run_id, key, value, step, timestamp from latest_metrics "
            "where run_id in (select run_id from wanted)"
        ).fetchall():
            if rid in data:
                data[rid].metrics[key] = value
                data[rid]._metric_objs.append(Metric(key, value, ts, step))
        con.unregister("wanted")
        out = []
        for rid in run_ids:
            r = infos.get(rid)
            if r is None:
                continue
            r.pop("deleted_time", None)
            out.append(Run(RunInfo(**{k: r[k] for k in RunInfo.__dataclass_fields__}), data[rid]))
        return out

    def _run_must_be_active(self, run_id: str) -> Run:
        run = self.get_run(run_id)
        if run.info.lifecycle_stage != LifecycleStage.ACTIVE:
            raise InvalidParameterValue(
                f"The run {run_id} must be in the 'active' state. "
                f"Current state is {run.info.lifecycle_stage}."
            )
        return run

    def update_run(self, run_id: str, status: str | None = None, name: str | None = None) -> None:
        experiment_id = self._experiment_of(run_id)
        if status is not None and status not in RunStatus._NAMES:
            raise InvalidParameterValue(
                f"Invalid run status {status!r}: use one of {', '.join(RunStatus._NAMES)}."
            )
        if name is not None:
            validation.check_run_name(name)
        t = now_ms()
        if status is not None:
            self.writer.add(experiment_id, run_id, "run", "status", status, time_ms=t)
            if RunStatus.is_terminated(status):
                self.writer.add(experiment_id, run_id, "run", "end_time", str(t), time_ms=t)
        if name:
            self.writer.add(experiment_id, run_id, "run", "run_name", name, time_ms=t)
            self.writer.add(experiment_id, run_id, "tag", "mlflow.runName", name, time_ms=t)
        self.writer.flush()

    def set_terminated(
        self, run_id: str, status: str | None = None, end_time: int | None = None
    ) -> None:
        status = status or "FINISHED"
        if status not in RunStatus._NAMES:
            raise InvalidParameterValue(
                f"Invalid run status {status!r}: use one of {', '.join(RunStatus._NAMES)}."
            )
        experiment_id = self._experiment_of(run_id)
        end_time = now_ms() if end_time is None else validation.check_timestamp(end_time)
        t = now_ms()
        self.writer.add(experiment_id, run_id, "run", "status", status, time_ms=t)
        self.writer.add(experiment_id, run_id, "run", "end_time", str(end_time), time_ms=t)
        self.writer.flush()
        # A finished run's buffer would otherwise be visited by every later flush.
        self.writer.release(experiment_id, run_id)

    def _set_run_stage(self, run_id: str, stage: str) -> None:
        experiment_id = self._experiment_of(run_id)
        run = self.get_run(run_id)
        if stage == LifecycleStage.ACTIVE and run.info.lifecycle_stage != LifecycleStage.DELETED:
            raise InvalidParameterValue(
                f"The run {run_id} must be in the 'deleted' state. "
                f"Current state is {run.info.lifecycle_stage}."
            )
        t = now_ms()
        self.writer.add(experiment_id, run_id, "run", "lifecycle_stage", stage, time_ms=t)
        self.writer.add(
            experiment_id,
            run_id,
            "run",
            "deleted_time",
            str(t) if stage == LifecycleStage.DELETED else None,
            time_ms=t,
        )
        self.writer.flush()

    def delete_run(self, run_id: str) -> None:
        self._set_run_stage(run_id, LifecycleStage.DELETED)

    def restore_run(self, run_id: str) -> None:
        self._set_run_stage(run_id, LifecycleStage.ACTIVE)

    # -- logging ---------------------------------------------------------------------

    def log_metric(
        self,
        run_id: str,
        key: str,
        value: float,
        timestamp: int | None = None,
        step: int | None = None,
        synchronous: bool | None = None,
    ) -> None:
        experiment_id = self._experiment_of(run_id)
        point = (
            validation.check_metric_key(key),
            validation.check_metric_value(value, key),
            0 if step is None else validation.check_step(step),
            now_ms() if timestamp is None else validation.check_timestamp(timestamp),
        )
        self.writer.metric_buffer(experiment_id, run_id).extend(point)
        if synchronous:
            self.writer.flush()

    def log_metric_series(
        self,
        run_id: str,
        key: str,
        values: Any,
        steps: Any = None,
        timestamps: Any = None,
        synchronous: bool | None = None,
    ) -> None:
        """Log a whole series at once (NumPy arrays, Arrow arrays or sequences).

        ``steps`` defaults to ``0..n-1``, ``timestamps`` to now. The arrays go straight
        to Arrow and into one Parquet segment: no Python object per point.
        """
        import numpy as np
        import pyarrow as pa

        experiment_id = self._experiment_of(run_id)
        key = validation.check_metric_key(key)
        values_a, steps_a, stamps_a = validation.check_metric_arrays(values, steps, timestamps)
        n = len(values_a)
        if steps_a is None:
            steps_a = pa.array(range(n), pa.int64())
        if stamps_a is None:
            stamps_a = pa.repeat(pa.scalar(now_ms(), pa.int64()), n)
        table = pa.table(
            {
                # One dictionary entry, n zero indices: no n-string column to build.
                "key": pa.DictionaryArray.from_arrays(
                    pa.array(np.zeros(n, dtype=np.int32)), pa.array([key], pa.string())
                ),
                "value": values_a,
                "step": steps_a,
                "timestamp": stamps_a,
            }
        )
        self.writer.add_arrays(experiment_id, run_id, table)
        if synchronous:
            self.writer.flush()

    def _check_params(self, run_id: str, params: dict[str, str]) -> dict[str, str]:
        """Refuse a param whose value differs from the one already logged (MLflow rule)."""
        known = self._state.params.get(run_id)
        if known is None:
            con = self._read([self._experiment_of(run_id)], run_id)
            known = dict(con.execute("select key, value from params").fetchall())
            self._state.params[run_id] = known
        fresh = {}
        for key, value in params.items():
            old = known.get(key)
            if old is None:
                fresh[key] = value
            else:
                validation.check_param_unchanged(run_id, key, old, value)
        return fresh

    def log_param(self, run_id: str, key: str, value: Any, synchronous: bool | None = None) -> Any:
        key, text = validation.check_param(key, value, truncate=False)
        self.log_batch(run_id, params=[Param(key, text)], synchronous=synchronous)
        return value

    def set_tag(self, run_id: str, key: str, value: Any, synchronous: bool | None = None) -> None:
        key, text = validation.check_tag(key, value, truncate=False)
        self.log_batch(run_id, tags=[RunTag(key, text)], synchronous=synchronous)

    def delete_tag(self, run_id: str, key: str) -> None:
        run = self._run_must_be_active(run_id)
        if key not in run.data.tags:
            raise InvalidParameterValue(f"No tag with name: {key} in run with id {run_id}")
        self.writer.add(run.info.experiment_id, run_id, "tag", key, None)
        self.writer.flush()

    def log_batch(
        self,
        run_id: str,
        metrics: Sequence[Metric] = (),
        params: Sequence[Param] = (),
        tags: Sequence[RunTag] = (),
        synchronous: bool | None = None,
    ) -> None:
        metrics, params, tags = list(metrics), list(params), list(tags)
        # No batch-size limit here: MLflow's client splits large batches into requests
        # that fit, so callers never see one; the REST API enforces MLflow's limits.
        validation.check_param_keys_unique(p.key for p in params)
        experiment_id = self._experiment_of(run_id)
        points = [
            (
                validation.check_metric_key(m.key),
                validation.check_metric_value(m.value, m.key),
                validation.check_step(m.step or 0, m.key),
                validation.check_timestamp(m.timestamp, m.key),
            )
            for m in metrics
        ]
        param_values = dict(validation.check_param(p.key, p.value, truncate=False) for p in params)
        tags = [RunTag(*validation.check_tag(t.key, t.value, truncate=False)) for t in tags]
        if params or tags:
            self._run_must_be_active(run_id)
        fresh = self._check_params(run_id, param_values) if params else {}
        t_now = now_ms()
        for key, value in fresh.items():
            self.writer.add(experiment_id, run_id, "param", key, value, time_ms=t_now)
        self._state.params.setdefault(run_id, {}).update(fresh)
        for tag in tags:
            value = str(tag.value)
            self.writer.add(experiment_id, run_id, "tag", tag.key, value, time_ms=t_now)
            if tag.key == "mlflow.runName":
                self.writer.add(experiment_id, run_id, "run", "run_name", value, time_ms=t_now)
        if points:
            self.writer.metric_buffer(experiment_id, run_id).extend(
                [item for point in points for item in point]
            )
        if synchronous is not False and (params or tags) or synchronous:
            self.writer.flush()

    def log_inputs(self, run_id: str, datasets: Sequence[Any] | None = None) -> None:
        experiment_id = self._experiment_of(run_id)
        for item in datasets or ():
            ds = item.dataset
            body = {
                "dataset": {
                    "name": ds.name,
                    "digest": ds.digest,
                    "source_type": ds.source_type,
                    "source": ds.source,
                    "schema": ds.schema,
                    "profile": ds.profile,
                },
                "tags": {t.key: t.value for t in item.tags},
                "context": next(
                    (t.value for t in item.tags if t.key == "mlflow.data.context"), None
                ),
            }
            self.writer.add(experiment_id, run_id, "input", ds.digest, json.dumps(body))
        self.writer.flush()

    # -- reading ---------------------------------------------------------------------

    def get_metric_history_arrow(self, run_id: str, key: str) -> pa.Table:
        """The full history of one metric as an Arrow table (step, timestamp, value)."""
        import pyarrow.compute as pc

        from evtrack.store.log.views import column_equals, load_events

        experiment_id = self._experiment_of(run_id)
        self._ready()
        self.writer.flush()
        events = load_events(self.store, [experiment_id], run_id)
        mask = pc.and_(column_equals(events["kind"], "metric"), column_equals(events["key"], key))
        table = events.filter(mask).select(["step", "timestamp", "value"])
        steps = table["step"]
        if (
            len(steps) > 1
            and pc.all(pc.greater(steps.slice(1), steps.slice(0, len(steps) - 1))).as_py()
        ):
            return table  # already in step order, the common case: skip the sort
        return table.sort_by([("step", "ascending"), ("timestamp", "ascending")])

    def get_metric_history(self, run_id: str, key: str) -> list[Metric]:
        table = self.get_metric_history_arrow(run_id, key)
        return [
            Metric(key, v, t, s, run_id)
            for s, t, v in zip(
                table["step"].to_pylist(),
                table["timestamp"].to_pylist(),
                table["value"].to_pylist(),
            )
        ]

    def search_runs(
        self,
        experiment_ids: list[str] | str,
        filter_string: str = "",
        run_view_type: int = ViewType.ACTIVE_ONLY,
        max_results: int = 1000,
        order_by: list[str] | None = None,
        page_token: str | None = None,
    ) -> PagedList:
        from evtrack.search import build_search_runs

        if isinstance(experiment_ids, (str, int)):
            experiment_ids = [experiment_ids]
        experiment_ids = [str(e) for e in experiment_ids]
        query = build_search_runs(
            experiment_ids, filter_string, run_view_type, max_results, order_by, page_token
        )  # parse and check before touching the store
        self._ready()
        known = set(self.store.list_experiment_ids())
        import pyarrow as pa
        import pyarrow.compute as pc

        from evtrack.store.log.views import connect, load_events

        self.writer.flush()
        events = load_events(self.store, [e for e in experiment_ids if e in known], None, False)
        con = connect(events)
        ids, token = query.page([r[0] for r in con.execute(query.sql, query.params).fetchall()])
        if len(ids) < 0.5 * events.num_rows / 10:
            # Fold only the found runs' events: the views aggregate every row they see.
            mine = events.filter(pc.is_in(events["run_id"], value_set=pa.array(ids, pa.string())))
            con = connect(mine)
        return PagedList(self._runs_from(con, ids), token)

    # -- artifacts -------------------------------------------------------------------

    def _artifacts(self, run_id: str) -> tuple[Run, ArtifactRepository]:
        run = self.get_run(run_id)
        return run, ArtifactRepository(run.info.artifact_uri, self.store.storage_options)

    def _record_artifacts(self, run: Run, written: list[WrittenArtifact]) -> None:
        t = now_ms()
        for w in written:
            self.writer.add(
                run.info.experiment_id,
                run.info.run_id,
                "artifact",
                w.path,
                json.dumps({"size": w.size, "sha256": w.sha256}),
                value=1.0,
                time_ms=t,
            )
        self.writer.flush()

    def log_artifact(self, run_id: str, local_path: str, artifact_path: str | None = None) -> None:
        run, repo = self._artifacts(run_id)
        self._record_artifacts(run, [repo.upload_file(local_path, artifact_path)])

    def log_artifacts(self, run_id: str, local_dir: str, artifact_path: str | None = None) -> None:
        run, repo = self._artifacts(run_id)
        self._record_artifacts(run, repo.upload_dir(local_dir, artifact_path))

    def log_bytes(self, run_id: str, data: bytes, artifact_file: str) -> None:
        run, repo = self._artifacts(run_id)
        self._record_artifacts(run, [repo.write_bytes(artifact_file, data)])

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        self.log_bytes(run_id, text.encode("utf-8"), artifact_file)

    def log_dict(self, run_id: str, dictionary: Any, artifact_file: str) -> None:
        ext = posixpath.splitext(artifact_file)[1].lower()
        if ext in (".yaml", ".yml"):
            import yaml

            text = yaml.safe_dump(dictionary, default_flow_style=False, sort_keys=False)
        else:
            text = json.dumps(dictionary, indent=2)
        self.log_text(run_id, text, artifact_file)

    def log_figure(self, run_id: str, figure: Any, artifact_file: str, *, save_kwargs=None) -> None:
        ext = posixpath.splitext(artifact_file)[1].lower()
        with tempfile.TemporaryDirectory() as tmp:
            local = os.path.join(tmp, posixpath.basename(artifact_file))
            if hasattr(figure, "savefig"):  # matplotlib
                figure.savefig(local, **(save_kwargs or {}))
            elif hasattr(figure, "write_html") and ext == ".html":  # plotly
                figure.write_html(local, **(save_kwargs or {}))
            elif hasattr(figure, "write_image"):
                figure.write_image(local, **(save_kwargs or {}))
            else:
                raise TypeError(
                    f"Unsupported figure type {type(figure).__name__}: log a matplotlib or "
                    "plotly figure."
                )
            with open(local, "rb") as f:
                self.log_bytes(run_id, f.read(), artifact_file)

    def log_image(self, run_id: str, image: Any, artifact_file: str) -> None:
        import io

        if hasattr(image, "save"):  # PIL
            buf = io.BytesIO()
            image.save(buf, format=posixpath.splitext(artifact_file)[1][1:].upper() or "PNG")
            data = buf.getvalue()
        else:
            import matplotlib.pyplot as plt

            buf = io.BytesIO()
            plt.imsave(buf, image, format=posixpath.splitext(artifact_file)[1][1:] or "png")
            data = buf.getvalue()
        self.log_bytes(run_id, data, artifact_file)

    def list_artifacts(self, run_id: str, path: str | None = None) -> list[FileInfo]:
        _, repo = self._artifacts(run_id)
        return repo.list(path)

    def download_artifacts(self, run_id: str, path: str = "", dst_path: str | None = None) -> str:
        _, repo = self._artifacts(run_id)
        return repo.download(path, dst_path)

    def delete_artifact(self, run_id: str, path: str) -> None:
        run, repo = self._artifacts(run_id)
        t = now_ms()
        for rel in repo.delete(path):
            self.writer.add(run.info.experiment_id, run_id, "artifact", rel, None, None, time_ms=t)
        self.writer.flush()

    # -- evtrack extras --------------------------------------------------------------

    def flush(self) -> None:
        """Make every event logged so far durable."""
        self.writer.flush()

    def sql(self, query: str, params: list | dict | None = None):
        """Run DuckDB SQL over the documented views; returns a DuckDB relation."""
        con = self._read(history=True)
        return con.sql(query, params=params) if params else con.sql(query)
