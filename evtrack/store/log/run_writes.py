"""Run writes as events: the half of a store that logs through the process's writer.

Both stores log a run's data the same way, so the hot path (``log_metric`` in a loop)
costs the same against a local folder and an ``evtrack server``: validate, append to the
writer's buffer, return. :class:`RunWrites` holds that logic once;
:class:`~evtrack.store.log.store.LogStore` and :class:`~evtrack.store.rest.store.RestStore`
subclass it and supply the reads it needs (which experiment a run is in, the run itself,
the params already logged).

Validation of every run write happens here, once, whoever the caller is (the client,
the tracking server's handlers, the MLflow plugin).
"""

from __future__ import annotations

import json
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from evtrack.clock import now_ms
from evtrack.entities import (
    DatasetInput,
    LifecycleStage,
    Metric,
    Param,
    Run,
    RunInfo,
    RunStatus,
    RunTag,
)
from evtrack.errors import InvalidParameterValue
from evtrack.store.log.writer import Writer
from evtrack.tracking import validation

if TYPE_CHECKING:  # pragma: no cover
    from evtrack.artifacts.repository import WrittenArtifact

__all__ = ["RunWrites"]


class RunWrites(ABC):
    """Logging to runs through a :class:`~evtrack.store.log.writer.Writer`.

    Subclasses set :attr:`writer` and implement :meth:`get_run`, :meth:`experiment_of`
    and :meth:`_logged_params`.
    """

    writer: Writer

    def __init__(self) -> None:
        # What this process knows of the store's runs: which experiment each is in
        # (immutable), and the params it logged (params never change once logged).
        self._run_experiment: dict[str, str] = {}
        self._params: dict[str, dict[str, str]] = {}
        self._lock = threading.Lock()

    # -- what subclasses supply -------------------------------------------------------

    @abstractmethod
    def get_run(self, run_id: str) -> Run:
        """The run with its latest data; :class:`RunNotFound` if there is none."""

    @abstractmethod
    def experiment_of(self, run_id: str) -> str:
        """The experiment a run is in; :class:`RunNotFound` if there is no such run."""

    @abstractmethod
    def _logged_params(self, run_id: str) -> dict[str, str]:
        """The params already stored for a run (read once per run and process)."""

    def _run_ended(self, experiment_id: str, run_id: str, written: int) -> None:
        """Called once a run's end is durable, with the number of the run's events this
        process wrote (a store that compacts ended runs notes it)."""
        return None

    def _commit(self, run_id: str | None = None) -> None:
        """Make buffered events durable (a server worker shares this among requests).

        With ``run_id``, segments of that run a store refused for good since the last
        report raise :class:`~evtrack.errors.SegmentRefused` (see
        :meth:`Writer.flush <evtrack.store.log.writer.Writer.flush>`).
        """
        self.writer.flush(run_id)

    def _event_time(self, run_id: str) -> int:
        """The time to stamp a run's new events with (ms)."""
        return now_ms()

    # -- shared checks ------------------------------------------------------------------

    def _remember_run(self, run_id: str, experiment_id: str, params: dict[str, str]) -> None:
        self._run_experiment[run_id] = experiment_id
        self._params[run_id] = params

    def run_must_be_active(self, run_id: str) -> Run:
        """The run; :class:`InvalidParameterValue` if it is deleted (MLflow's rule)."""
        run = self.get_run(run_id)
        if run.info.lifecycle_stage != LifecycleStage.ACTIVE:
            raise InvalidParameterValue(
                f"The run {run_id} must be in the 'active' state. "
                f"Current state is {run.info.lifecycle_stage}."
            )
        return run

    def _fresh_params(self, run_id: str, params: dict[str, str]) -> dict[str, str]:
        """The params not logged yet; a param whose value differs is refused."""
        known = self._params.get(run_id)
        if known is None:
            known = self._params[run_id] = self._logged_params(run_id)
        fresh = {}
        for key, value in params.items():
            old = known.get(key)
            if old is None:
                fresh[key] = value
            else:
                validation.check_param_unchanged(run_id, key, old, value)
        return fresh

    # -- logging --------------------------------------------------------------------------

    def log_metric(
        self,
        run_id: str,
        key: str,
        value: float,
        timestamp: int | None = None,
        step: int | None = None,
        synchronous: bool | None = None,
    ) -> None:
        experiment_id = self.experiment_of(run_id)
        point = (
            validation.check_metric_key(key),
            validation.check_metric_value(value, key),
            0 if step is None else validation.check_step(step),
            now_ms() if timestamp is None else validation.check_timestamp(timestamp),
        )
        self.writer.add_points(experiment_id, run_id, point)
        if synchronous:
            self._commit(run_id)

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

        experiment_id = self.experiment_of(run_id)
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
            self._commit(run_id)

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
        experiment_id = self.experiment_of(run_id)
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
        tag_values = [validation.check_tag(t.key, t.value, truncate=False) for t in tags]
        if params or tags:
            self._check_active(run_id)
        elif points:
            self._check_metric_target(run_id)
        fresh = self._fresh_params(run_id, param_values) if params else {}
        t_now = self._event_time(run_id)
        add = self.writer.add
        for key, value in fresh.items():
            add(experiment_id, run_id, "param", key, value, time_ms=t_now)
        self._params.setdefault(run_id, {}).update(fresh)
        for key, value in tag_values:
            add(experiment_id, run_id, "tag", key, value, time_ms=t_now)
            if key == "mlflow.runName":
                add(experiment_id, run_id, "run", "run_name", value, time_ms=t_now)
        if points:
            self.writer.add_points(
                experiment_id, run_id, [item for point in points for item in point]
            )
        if synchronous is not False and (params or tags) or synchronous:
            self._commit(run_id)

    def _check_active(self, run_id: str) -> None:
        """Refuse writes to a deleted run (params and tags); stores may cache the answer."""
        self.run_must_be_active(run_id)

    def _check_metric_target(self, run_id: str) -> None:  # noqa: B027 - a hook, off by default
        """Metric-only batches skip the run-state read (the hot path); a server checks."""

    def delete_tag(self, run_id: str, key: str) -> None:
        run = self.run_must_be_active(run_id)
        if key not in run.data.tags:
            raise InvalidParameterValue(f"No tag with name: {key} in run with id {run_id}")
        t = self._event_time(run_id)
        self.writer.add(run.info.experiment_id, run_id, "tag", key, None, time_ms=t)
        self._commit()

    def log_inputs(self, run_id: str, datasets: Sequence[DatasetInput] | None = None) -> None:
        run = self.run_must_be_active(run_id)
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
            self.writer.add(run.info.experiment_id, run_id, "input", ds.digest, json.dumps(body))
        self._commit()

    # -- run state ----------------------------------------------------------------------

    def update_run_info(
        self,
        run_id: str,
        status: str | None = None,
        end_time: int | None = None,
        run_name: str | None = None,
    ) -> RunInfo:
        """Change a run's status, end time or name (MLflow's ``update_run_info``)."""
        if status is not None and status not in RunStatus._NAMES:
            raise InvalidParameterValue(
                f"Invalid run status {status!r}: use one of {', '.join(RunStatus._NAMES)}."
            )
        if end_time is not None:
            end_time = validation.check_timestamp(end_time)
        name = validation.check_run_name(run_name) if run_name else None
        info = self.run_must_be_active(run_id).info
        experiment_id = info.experiment_id
        t = self._event_time(run_id)
        add = self.writer.add
        if status is not None:
            add(experiment_id, run_id, "run", "status", status, time_ms=t)
            info.status = status
        if end_time is not None:
            add(experiment_id, run_id, "run", "end_time", str(end_time), time_ms=t)
            info.end_time = end_time
        if name:
            add(experiment_id, run_id, "run", "run_name", name, time_ms=t)
            add(experiment_id, run_id, "tag", "mlflow.runName", name, time_ms=t)
            info.run_name = name
        self._commit()
        return info

    def set_terminated(
        self, run_id: str, status: str | None = None, end_time: int | None = None
    ) -> None:
        """End a run; every event logged to it is durable when this returns."""
        status = status or "FINISHED"
        if status not in RunStatus._NAMES:
            raise InvalidParameterValue(
                f"Invalid run status {status!r}: use one of {', '.join(RunStatus._NAMES)}."
            )
        experiment_id = self.experiment_of(run_id)
        end_time = now_ms() if end_time is None else validation.check_timestamp(end_time)
        t = self._event_time(run_id)
        self.writer.add(experiment_id, run_id, "run", "status", status, time_ms=t)
        self.writer.add(experiment_id, run_id, "run", "end_time", str(end_time), time_ms=t)
        try:
            self._commit(run_id)
            written = self.writer.written(run_id)  # forgotten by release()
        finally:
            # A finished run's buffer would otherwise be visited by every later flush.
            self.writer.release(experiment_id, run_id)
            self._params.pop(run_id, None)
        self._run_ended(experiment_id, run_id, written)

    def _set_run_stage(self, run_id: str, stage: str) -> None:
        run = self.get_run(run_id)
        if stage == LifecycleStage.ACTIVE and run.info.lifecycle_stage != LifecycleStage.DELETED:
            raise InvalidParameterValue(
                f"The run {run_id} must be in the 'deleted' state. "
                f"Current state is {run.info.lifecycle_stage}."
            )
        experiment_id = run.info.experiment_id
        t = self._event_time(run_id)
        self.writer.add(experiment_id, run_id, "run", "lifecycle_stage", stage, time_ms=t)
        deleted = str(t) if stage == LifecycleStage.DELETED else None
        self.writer.add(experiment_id, run_id, "run", "deleted_time", deleted, time_ms=t)
        self._commit()

    def delete_run(self, run_id: str) -> None:
        self._set_run_stage(run_id, LifecycleStage.DELETED)

    def restore_run(self, run_id: str) -> None:
        self._set_run_stage(run_id, LifecycleStage.ACTIVE)

    # -- artifacts ------------------------------------------------------------------------

    def record_artifacts(
        self, run_id: str, written: Sequence[WrittenArtifact] = (), deleted: Sequence[str] = ()
    ) -> None:
        """Record files written to (or deleted from) a run's artifact location."""
        experiment_id = self.experiment_of(run_id)
        t = self._event_time(run_id)
        for w in written:
            self.writer.add(
                experiment_id,
                run_id,
                "artifact",
                w.path,
                json.dumps({"size": w.size, "sha256": w.sha256}),
                value=1.0,
                time_ms=t,
            )
        for rel in deleted:
            self.writer.add(experiment_id, run_id, "artifact", rel, None, None, time_ms=t)
        self._commit()

    # -- durability -----------------------------------------------------------------------

    def flush(self) -> None:
        """Make every event logged so far durable."""
        self._commit()
