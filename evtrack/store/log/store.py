"""``LogStore``: the :class:`~evtrack.store.base.TrackingStore` over the event log.

Writes become events in the process's :class:`~evtrack.store.log.writer.Writer` (the run
half lives in :mod:`evtrack.store.log.run_writes`); reads first flush that writer (a
process always reads its own writes), then fold the store's events with DuckDB
(:mod:`evtrack.store.log.views`). Experiment ids, experiment names and run ids are
claimed create-only in the store's folder (:mod:`evtrack.store.log.layout`), which is
what lets any number of processes write without coordinating.

A tracking-server worker opens its store with ``shared=True`` and a ``commit`` that
batches flushes across requests (see :mod:`evtrack.server.commit`): params are then
re-read before each param write (another worker may have logged it), and metric-only
batches check the run's state through a cache trusted for ``active_ttl`` seconds.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from evtrack import settings
from evtrack.clock import now_ms
from evtrack.entities import (
    DatasetInput,
    Experiment,
    LifecycleStage,
    Metric,
    Run,
    RunData,
    RunInfo,
    ViewType,
)
from evtrack.errors import (
    ExperimentNotFound,
    InvalidParameterValue,
    InvalidState,
    ResourceAlreadyExists,
    RunNotFound,
)
from evtrack.store.base import (
    DEFAULT_EXPERIMENT_ID,
    DEFAULT_EXPERIMENT_NAME,
    PagedList,
    dataset_input,
    history_metrics,
)
from evtrack.store.log.autocompact import ended_runs
from evtrack.store.log.index import RunIndex
from evtrack.store.log.layout import Store, get_store
from evtrack.store.log.run_writes import RunWrites
from evtrack.store.log.writer import get_writer
from evtrack.tracking import validation

if TYPE_CHECKING:  # pragma: no cover
    import duckdb
    import pyarrow as pa

    from evtrack.artifacts.repository import ArtifactRepository
    from evtrack.store.log.run_summary import RunSummary

__all__ = ["LogStore"]


class LogStore(RunWrites):
    """Experiments and runs as events in a folder or bucket (any fsspec filesystem)."""

    def __init__(
        self,
        uri: str,
        *,
        storage_options: dict[str, Any] | None = None,
        artifact_root: str | None = None,
        commit: Callable[[], None] | None = None,
        shared: bool = False,
        active_ttl: float = 2.0,
    ) -> None:
        super().__init__()
        self.layout: Store = get_store(uri, storage_options)
        self.uri = self.layout.uri
        self.writer = get_writer(self.layout)
        self.artifact_root = artifact_root.rstrip("/") if artifact_root else None
        self._commit_fn = commit
        self.shared = shared
        self.active_ttl = active_ttl
        self._active: dict[str, float] = {}  # run id -> monotonic time it was seen active
        self._experiments: dict[str, tuple[float, Experiment]] = {}  # for create_run only
        self._default_ready = False
        self._index = RunIndex(self.layout)
        self._summaries: dict[str, RunSummary] = {}  # run_summary.load()s of this process

    def __repr__(self) -> str:
        return f"LogStore({self.uri!r})"

    def _commit(self, run_id: str | None = None) -> None:
        if self._commit_fn is not None:
            self._commit_fn()
        else:
            self.writer.flush(run_id)

    # -- plumbing ------------------------------------------------------------------------

    def ensure_ready(self) -> None:
        """Make sure the store is initialised and the Default experiment exists."""
        if self._default_ready:
            return
        layout = self.layout
        layout.ensure()
        with self._lock:
            if self._default_ready:
                return
            marker = layout.path("experiments", DEFAULT_EXPERIMENT_ID, "experiment.json")
            if not layout.exists(marker):
                # Events first, marker last: whoever sees the marker also sees the events.
                # Processes racing here both write the same attributes, which is harmless.
                created = now_ms()
                try:
                    layout.claim_name(DEFAULT_EXPERIMENT_NAME, DEFAULT_EXPERIMENT_ID)
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
                layout.ensure_experiment_dir(DEFAULT_EXPERIMENT_ID, {"name": "Default"})
            self._default_ready = True

    def _experiment_events(self, experiment_id: str, **attrs: Any) -> None:
        self._experiments.pop(experiment_id, None)  # our own change: seen at once
        t = now_ms()
        for key, value in attrs.items():
            self.writer.add(experiment_id, None, "experiment", key, str(value), time_ms=t)

    def _default_artifact_location(self, experiment_id: str) -> str:
        root = self.artifact_root or settings.get("artifact_root")
        if root:
            return f"{root.rstrip('/')}/{experiment_id}"
        return self.layout.url("experiments", experiment_id, "artifacts")

    def _events(
        self,
        experiment_ids: list[str] | None = None,
        run_id: str | None = None,
        history: bool = False,
    ) -> pa.Table:
        """The current events (after flushing our own); see :func:`views.load_events`.

        Without ``history`` compacted data is read from the reduced files (only the
        events that decide each view): every view but ``metrics`` and ``events`` is
        then complete, and a search over 10,000 runs reads a few files.
        """
        from evtrack.store.log.views import load_events

        self.ensure_ready()
        self.writer.flush()
        return load_events(self.layout, experiment_ids, run_id, history)

    def _read(
        self,
        experiment_ids: list[str] | None = None,
        run_id: str | None = None,
        history: bool = False,
    ) -> duckdb.DuckDBPyConnection:
        from evtrack.store.log.views import connect

        return connect(self._events(experiment_ids, run_id, history))

    def experiment_of(self, run_id: str) -> str:
        experiment_id = self._run_experiment.get(run_id)
        if experiment_id is None:
            validation.check_run_id(run_id)
            self.ensure_ready()
            experiment_id = self.layout.experiment_of_run(run_id)
            if experiment_id is None:
                raise RunNotFound(f"Run with id={run_id} not found")
            self._run_experiment[run_id] = experiment_id
        return experiment_id

    def _logged_params(self, run_id: str) -> dict[str, str]:
        con = self._read([self.experiment_of(run_id)], run_id)
        try:
            return dict(con.execute("select key, value from params").fetchall())
        finally:
            con.close()

    def _fresh_params(self, run_id: str, params: dict[str, str]) -> dict[str, str]:
        if self.shared:
            self._params.pop(run_id, None)  # another worker may have logged it
        return super()._fresh_params(run_id, params)

    # -- experiments ---------------------------------------------------------------------

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
        self.ensure_ready()
        layout = self.layout
        owner = layout.name_owner(name)
        if owner is not None:
            found = self._select_experiments("experiment_id = ?", [owner], only=owner)
            if not found or found[0].name == name:
                stage = found[0].lifecycle_stage if found else "active"
                raise ResourceAlreadyExists(
                    f"Experiment '{name}' already exists in {stage} state (id {owner}). "
                    "Choose another name"
                    + (", or restore that experiment." if stage == "deleted" else ".")
                )
            # The claim's experiment has since been renamed (a rename that crashed before
            # releasing the old name): the claim is stale.
            layout.release_name(name)
        created = now_ms()
        experiment_id = layout.claim_experiment_id({"name": name, "created": created})
        layout.claim_name(name, experiment_id)
        self._experiment_events(
            experiment_id,
            name=name,
            artifact_location=artifact_location or self._default_artifact_location(experiment_id),
            lifecycle_stage=LifecycleStage.ACTIVE,
            creation_time=created,
            last_update_time=created,
        )
        for key, value in tags.items():
            self.writer.add(experiment_id, None, "experiment_tag", key, str(value), time_ms=created)
        self._commit()
        return experiment_id

    def _select_experiments(
        self, where: str = "true", params: list[Any] | None = None, only: str | None = None
    ) -> list[Experiment]:
        """Experiments matching ``where`` (``only``: just that experiment is read).

        Only experiment-level events are read, never runs': constant cost as runs grow.
        """
        from evtrack.store.log.snapshot import read_experiment_events
        from evtrack.store.log.views import connect, rows

        self.ensure_ready()
        self.writer.flush()
        ids = self.layout.list_experiment_ids() if only is None else [only]
        con = connect(read_experiment_events(self.layout, ids))
        try:
            tags: dict[str, dict[str, str]] = {}
            for eid, key, value in con.execute(
                "select experiment_id, key, value from experiment_tags"
            ).fetchall():
                tags.setdefault(eid, {})[key] = value
            return [
                Experiment(tags=tags.get(r["experiment_id"], {}), **r)
                for r in rows(con, f"select * from experiments where {where}", params)
            ]
        finally:
            con.close()

    def _experiment_from_segments(self, experiment_id: str) -> Experiment | None:
        """The experiment without DuckDB while its events are JSONL segments (see
        :mod:`evtrack.store.log.attributes`); ``None``: read it through the views."""
        from evtrack.store.log.attributes import experiment_from_segments

        self.ensure_ready()
        self.writer.flush()  # our own events first, as every read does
        return experiment_from_segments(self.layout, experiment_id)

    def get_experiment(self, experiment_id: str) -> Experiment:
        experiment_id = validation.check_experiment_id(experiment_id)
        exp = self._experiment_from_segments(experiment_id)
        if exp is not None:
            return exp
        found = self._select_experiments("experiment_id = ?", [experiment_id], only=experiment_id)
        if not found:
            raise ExperimentNotFound(f"No Experiment with id={experiment_id} exists")
        return found[0]

    def get_experiment_by_name(self, name: str) -> Experiment | None:
        if not isinstance(name, str):
            raise InvalidParameterValue(f"Invalid experiment name: {name!r}. Expects a string.")
        self.ensure_ready()
        owner = self.layout.name_owner(name)
        if owner is None:
            return None
        exp = self._experiment_from_segments(owner)
        if exp is not None and exp.name == name:
            return exp
        found = self._select_experiments(
            "experiment_id = ? and name = ?", [owner, name], only=owner
        )
        return found[0] if found else None

    def search_experiments(
        self,
        view_type: int = ViewType.ACTIVE_ONLY,
        max_results: int | None = None,
        filter_string: str | None = None,
        order_by: list[str] | None = None,
        page_token: str | None = None,
    ) -> PagedList[Experiment]:
        from evtrack.search import build_search_experiments

        query = build_search_experiments(
            view_type,
            filter_string,
            1000 if max_results is None else max_results,
            order_by,
            page_token,
        )  # parse and check before touching the store
        con = self._read()
        try:
            found = [r[0] for r in con.execute(query.sql, query.params).fetchall()]
        finally:
            con.close()
        ids, token = query.page(found)
        by_id = {e.experiment_id: e for e in self._select_experiments()}
        return PagedList([by_id[i] for i in ids if i in by_id], token)

    def _recent_experiment(self, experiment_id: str, max_age: float = 2.0) -> Experiment:
        """The experiment as read at most ``max_age`` seconds ago by this process.

        ``create_run`` needs the experiment's state and artifact location; rereading the
        experiment for each of a sweep's runs made run creation slow down as the
        experiment grew. The cost: a run may be created in an experiment that another
        process deleted less than ``max_age`` seconds earlier (changes made by this
        process are seen at once).
        """
        cached = self._experiments.get(experiment_id)
        if cached is not None and time.monotonic() - cached[0] < max_age:
            return cached[1]
        exp = self.get_experiment(experiment_id)
        self._experiments[experiment_id] = (time.monotonic(), exp)
        return exp

    def rename_experiment(self, experiment_id: str, new_name: str) -> None:
        validation.check_experiment_name(new_name)
        exp = self.get_experiment(experiment_id)
        if exp.lifecycle_stage != LifecycleStage.ACTIVE:
            raise InvalidState(
                f"Cannot rename a non-active experiment {experiment_id}. Restore it first."
            )
        if new_name == exp.name:
            return
        self.layout.claim_name(new_name, experiment_id)
        self._experiment_events(experiment_id, name=new_name, last_update_time=now_ms())
        self._commit()
        self.layout.release_name(exp.name)

    def _set_experiment_stage(self, experiment_id: str, stage: str) -> None:
        exp = self.get_experiment(experiment_id)
        if stage == LifecycleStage.DELETED and experiment_id == DEFAULT_EXPERIMENT_ID:
            raise InvalidParameterValue("Cannot delete the default experiment '0'.")
        if exp.lifecycle_stage == stage:
            verb = "delete" if stage == LifecycleStage.DELETED else "restore"
            raise InvalidParameterValue(
                f"Cannot {verb} experiment {experiment_id}: it is already {stage}."
            )
        self._experiment_events(experiment_id, lifecycle_stage=stage, last_update_time=now_ms())
        self._commit()

    def delete_experiment(self, experiment_id: str) -> None:
        self._set_experiment_stage(experiment_id, LifecycleStage.DELETED)

    def restore_experiment(self, experiment_id: str) -> None:
        self._set_experiment_stage(experiment_id, LifecycleStage.ACTIVE)

    def set_experiment_tag(self, experiment_id: str, key: str, value: Any) -> None:
        key, value = validation.check_experiment_tag(key, value)
        self.get_experiment(experiment_id)
        self.writer.add(experiment_id, None, "experiment_tag", key, value)
        self._commit()

    def delete_experiment_tag(self, experiment_id: str, key: str) -> None:
        exp = self.get_experiment(experiment_id)
        if key not in exp.tags:
            raise InvalidParameterValue(f"No tag with name: {key} in experiment {experiment_id}.")
        self.writer.add(experiment_id, None, "experiment_tag", key, None)
        self._commit()

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
        run_id = validation.check_run_id(run_id) if run_id else uuid.uuid4().hex
        start_time = now_ms() if start_time is None else validation.check_timestamp(start_time)
        self.layout.claim_run_id(run_id, experiment_id)
        self._remember_run(run_id, experiment_id, {})
        self._active[run_id] = time.monotonic()  # created active: no read to check it
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
        add = self.writer.add
        for key, value in attrs.items():
            add(experiment_id, run_id, "run", key, value, time_ms=t)
        for key, value in tags.items():
            add(experiment_id, run_id, "tag", key, value, time_ms=t)
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
        experiment_id = self.experiment_of(run_id)
        con = self._read([experiment_id], run_id)
        try:
            runs = _runs_from(con, [run_id])
        finally:
            con.close()
        if not runs:
            raise RunNotFound(f"Run with id={run_id} not found")
        return runs[0]

    def check_run_active(self, run_id: str) -> str:
        """The run's experiment id; raises if the run is missing or not active.

        Trusted for :attr:`active_ttl` seconds per run (a run this store created counts
        as checked at creation): a run deleted through another process may accept params,
        tags and (on a server) metric points for that long; one deleted through this
        store refuses them at once.
        """
        experiment_id = self.experiment_of(run_id)
        checked = self._active.get(run_id)
        if checked is not None and time.monotonic() - checked < self.active_ttl:
            return experiment_id
        if self._stage_from_segments(experiment_id, run_id) != LifecycleStage.ACTIVE:
            self.run_must_be_active(run_id)  # the views decide, and say why
        with self._lock:
            if len(self._active) > 100_000:
                self._active.clear()
            self._active[run_id] = time.monotonic()
        return experiment_id

    def _stage_from_segments(self, experiment_id: str, run_id: str) -> str | None:
        """The run's lifecycle stage without DuckDB while its events are JSONL segments
        (see :mod:`evtrack.store.log.attributes`); ``None``: ask the views."""
        from evtrack.store.log.attributes import run_stage_from_segments

        self.writer.flush()  # our own events first, as every read does
        return run_stage_from_segments(self.layout, experiment_id, run_id)

    def forget_run(self, run_id: str) -> None:
        """Drop what this process cached about a run's state (it changed elsewhere)."""
        self._active.pop(run_id, None)

    def _check_active(self, run_id: str) -> None:
        self.check_run_active(run_id)

    def _check_metric_target(self, run_id: str) -> None:
        if self.shared:
            self.check_run_active(run_id)

    def _set_run_stage(self, run_id: str, stage: str) -> None:
        self.forget_run(run_id)
        super()._set_run_stage(run_id, stage)

    def get_run_inputs(self, run_id: str) -> list[DatasetInput]:
        con = self._read([self.experiment_of(run_id)], run_id)
        try:
            texts = con.execute("select dataset from inputs where run_id = ?", [run_id]).fetchall()
        finally:
            con.close()
        return [_dataset_input(text) for (text,) in texts]

    def get_runs_inputs(
        self, experiment_ids: list[str], run_ids: list[str]
    ) -> dict[str, list[DatasetInput]]:
        """Dataset inputs of many runs of ``experiment_ids`` at once (a page of
        ``search_runs``), from the run index the search itself used: one query, no read
        of the raw events. Each run's inputs in digest order; runs without any are absent."""
        known = set(self.layout.list_experiment_ids())
        con, _rows = self._index.cursor([str(e) for e in experiment_ids if str(e) in known])
        try:
            rows = con.execute(
                "select run_id, dataset from inputs where run_id in (select unnest($ids)) "
                "order by run_id, digest",
                {"ids": list(run_ids)},
            ).fetchall()
        finally:
            con.close()
        out: dict[str, list[DatasetInput]] = {}
        for run_id, text in rows:
            out.setdefault(run_id, []).append(_dataset_input(text))
        return out

    # -- reading -------------------------------------------------------------------------

    def get_metric_history_arrow(self, run_id: str, key: str) -> pa.Table:
        """The full history of one metric as an Arrow table (step, timestamp, value)."""
        import pyarrow.compute as pc

        from evtrack.store.log.columns import column_equals

        experiment_id = self.experiment_of(run_id)
        events = self._events([experiment_id], run_id, history=True)
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
        return history_metrics(self.get_metric_history_arrow(run_id, key), key, run_id)

    def search_runs(
        self,
        experiment_ids: list[str],
        filter_string: str = "",
        run_view_type: int = ViewType.ACTIVE_ONLY,
        max_results: int = 1000,
        order_by: list[str] | None = None,
        page_token: str | None = None,
    ) -> PagedList[Run]:
        from evtrack.search import build_search_runs

        experiment_ids = [str(e) for e in experiment_ids]
        query = build_search_runs(
            experiment_ids, filter_string, run_view_type, max_results, order_by, page_token
        )  # parse and check before touching the store
        self.ensure_ready()
        self.writer.flush()
        known = set(self.layout.list_experiment_ids())
        wanted = [e for e in experiment_ids if e in known]
        if not wanted:  # no experiment to read (the SQL would select nothing)
            return PagedList([], None)
        summaries = self._current_summaries(wanted)
        if summaries is not None:
            # A fresh process, nothing changed since the index was saved: plain Python,
            # neither pyarrow nor DuckDB imported (store/log/run_summary.py).
            from evtrack.search.evaluate import evaluate_search_runs

            by_id = {r.info["run_id"]: r for s in summaries for r in s.runs}
            ids, token = query.page(evaluate_search_runs(query, by_id.values()))
            return PagedList([by_id[i].to_run() for i in ids], token)
        # The runs' folded state, kept between calls and brought up to date from a
        # fresh listing (see store/log/index.py).
        con, rows = self._index.cursor(wanted)
        try:
            found = [r[0] for r in con.execute(query.sql, query.params).fetchall()]
        finally:
            con.close()
        ids, token = query.page(found)
        return PagedList(rows.runs(ids), token)

    def _current_summaries(self, experiment_ids: list[str]) -> list[RunSummary] | None:
        """The saved run summaries of ``experiment_ids`` if this process has not folded
        them yet and a fresh listing proves every one current (same manifest mark, the
        events folder lists exactly the segments it covers); else None (the index path)."""
        from evtrack.store.log import run_summary
        from evtrack.store.log.index_cache import manifest_mark
        from evtrack.store.log.manifest import read_manifest
        from evtrack.store.log.snapshot import _parse

        if not experiment_ids or self._index.folded_any(experiment_ids):
            return None
        out = []
        for experiment_id in dict.fromkeys(experiment_ids):
            summary = self._summaries.get(experiment_id) or run_summary.load(
                self.layout, experiment_id
            )
            if summary is None:
                return None
            self._summaries[experiment_id] = summary
            try:  # the manifest first, then the names, as the index reads them
                mark = manifest_mark(read_manifest(self.layout, experiment_id))
                listed = self.layout.listdir(self.layout.events_dir(experiment_id))
            except FileNotFoundError:
                return None
            # Exactly the segments it covers: all of them listed, and nothing else listed
            # but non-segments (a temporary file being renamed); parse only the others.
            listed_set = set(listed)
            extra = listed_set.difference(summary.names)
            if summary.mark != mark or len(listed_set) - len(extra) != len(summary.names):
                return None
            if any(_parse(n) is not None for n in extra):
                return None
            out.append(summary)
        return out

    # -- artifacts -----------------------------------------------------------------------

    def artifact_repository(self, artifact_uri: str) -> ArtifactRepository:
        from evtrack.artifacts.repository import ArtifactRepository

        return ArtifactRepository(artifact_uri, self.layout.storage_options)

    # -- segments from remote writers (the tracking server's ingest) --------------------

    def accept_segment(self, experiment_id: str, name: str, data: bytes) -> bool:
        """Store a segment a remote writer built, create-only; False if it already landed.

        The caller has checked the segment's events belong to ``experiment_id`` and the
        run its name gives. :class:`ResourceAlreadyExists` if a *different* segment
        holds the name (a retry must be byte-identical).
        """
        path = f"{self.layout.events_dir(experiment_id)}/{name}"
        try:
            self.layout.put(path, data, create_only=True)
        except FileExistsError:
            if self.layout.read_bytes(path) != data:
                raise ResourceAlreadyExists(
                    f"A different segment named {name} is already stored."
                ) from None
            return False
        return True

    # -- evtrack extras ------------------------------------------------------------------

    def _run_ended(self, experiment_id: str, run_id: str, written: int) -> None:
        # Small runs only (a sweep's): a run of many events is a few large segments,
        # cheap to read, and compacting a batch of them (an import of long histories)
        # would cost more than it saves; ``end_run`` compacts those one by one.
        if written < settings.get("auto_compact_min_events"):
            ended_runs(self.layout).note(experiment_id, run_id)

    def counts(self, experiment_ids: list[str]) -> dict[str, int]:
        """Runs, deleted runs, params, tags and metric points of some experiments.

        What ``evtrack import`` prints beside the source's numbers. Runs, params and tags
        come from the reduced files (their views are complete there); points from each
        file's ``kind`` column alone, not a decode of every event (10 M points: 4.6 s
        through the views).
        """
        from evtrack.store.log.snapshot import count_events

        known = set(self.layout.list_experiment_ids())
        ids = [e for e in experiment_ids if e in known]
        con = self._read(ids)
        try:
            n_runs, n_deleted, n_params, n_tags = con.execute(
                """select (select count(*) from runs),
                    (select count(*) from runs where lifecycle_stage = 'deleted'),
                    (select count(*) from params), (select count(*) from tags)"""
            ).fetchall()[0]
        finally:
            con.close()
        points = count_events(self.layout, ids, "metric")
        if points is None:  # a damaged file: the views skip and report it
            con = self._read(ids, history=True)
            try:
                (points,) = con.execute("select count(*) from metrics").fetchall()[0]
            finally:
                con.close()
        return {
            "runs": n_runs,
            "deleted runs": n_deleted,
            "params": n_params,
            "tags": n_tags,
            "metric points": points,
        }

    def compact_run(self, experiment_id: str, run_id: str) -> None:
        from evtrack.store.log.compaction import compact_run

        compact_run(self.layout, experiment_id, run_id)

    def private_connection(self) -> duckdb.DuckDBPyConnection:
        """A DuckDB database of its own over every event, with the documented views.

        Not :func:`evtrack.store.log.views.connect`'s shared per-process catalog: user
        SQL may create or drop objects (``drop view runs``), and those must not reach
        any other reader. The caller closes it.
        """
        from evtrack.store.log.views import private_connection

        return private_connection(self._events(history=True))

    def sql(
        self, query: str, params: list[Any] | dict[str, Any] | None = None
    ) -> duckdb.DuckDBPyRelation:
        """Run DuckDB SQL over the documented views; returns a DuckDB relation.

        The query runs in a database of its own (see :meth:`private_connection`), kept
        alive by the relation it returns.
        """
        import duckdb

        con = self.private_connection()
        try:
            return con.sql(query, params=params) if params else con.sql(query)
        except duckdb.Error as exc:
            con.close()
            raise InvalidParameterValue(f"SQL failed: {exc}") from None

    def close(self) -> None:
        """Flush what this process logged, stop its writer and drop its caches.

        The folder layout (one per URI in the process, shared by every ``LogStore`` on
        it) is closed too: its writer's thread stops and the next store opened on the
        URI starts afresh. Events logged through a closed store are still written by
        a later flush or at exit.
        """
        try:
            self.writer.flush()
        finally:
            self._index.close()
            self._active.clear()
            self._experiments.clear()
            self._params.clear()
            self._run_experiment.clear()
            self.layout.close()


def _runs_from(con: duckdb.DuckDBPyConnection, run_ids: Sequence[str]) -> list[Run]:
    """Build Run objects for ``run_ids`` (in that order) from a view connection."""
    import pyarrow as pa

    from evtrack.store.log.columns import strings
    from evtrack.store.log.views import rows

    if not run_ids:
        return []
    # From buffers: pa.table of a Python list would import pandas (~0.3 s) in a fresh process.
    con.register("wanted", pa.table({"run_id": strings(list(run_ids))}))
    wanted = "where run_id in (select run_id from wanted)"
    infos = {r["run_id"]: r for r in rows(con, f"select * from runs {wanted}")}
    data = {rid: RunData() for rid in infos}
    for rid, key, value in con.execute(
        f"select run_id, key, value from params {wanted}"
    ).fetchall():
        if rid in data:
            data[rid].params[key] = value
    for rid, key, value in con.execute(f"select run_id, key, value from tags {wanted}").fetchall():
        if rid in data:
            data[rid].tags[key] = value
    for rid, key, value, step, ts in con.execute(
        f"select run_id, key, value, step, timestamp from latest_metrics {wanted}"
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


def _dataset_input(text: str) -> DatasetInput:
    """A :class:`DatasetInput` from the JSON an ``input`` event holds."""
    import json

    body = json.loads(text)
    return dataset_input(body.get("dataset") or {}, (body.get("tags") or {}).items())
