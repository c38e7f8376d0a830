"""Snapshots: what the web view knows of each experiment, kept warm between requests.

A snapshot is an in-memory DuckDB database holding the folded views of one experiment
(``runs``, ``params``, ``tags``, ``latest_metrics``, ``artifacts``, ``inputs``,
``experiments``, ``experiment_tags``, ``logged_models``) as tables, built from a :mod:`summary
<evtrack.web.summary>` of its events. Requests query it through their own cursor, so
a page over 50,000 runs is a few milliseconds of SQL and no Python object per run.

Freshness: segments are immutable and every new event arrives in a new segment, so
the set of segment names *is* the version of an experiment. Each request lists the
experiment's ``events/`` folder (throttled to once per ``min_interval`` seconds);
when only new names appeared, just those segments are read, and only the runs they
touch are folded again and replaced in the database (one transaction: a live run in a
50,000-run experiment costs what that run costs); when names disappeared (garbage collection after a compaction), the
experiment is read again from scratch through :func:`evtrack.store.log.views.load_events`
with ``history=False`` (the reduced compacted files, plus uncovered segments).
Compaction itself changes no event, so a listing that still holds every old segment
means unchanged content. One race is closed by time: a segment written, compacted
and collected entirely between two listings would be missed, but collection waits
``gc_grace_seconds`` after compaction, so a snapshot not listed for that long is
rebuilt from scratch.

Read-only: nothing here writes to the store, not even the format marker.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from typing import TYPE_CHECKING, Any

from evtrack.errors import ExperimentNotFound, RunNotFound, StoreVersionError

if TYPE_CHECKING:  # pragma: no cover
    import duckdb

    from evtrack.store.log.layout import Store

__all__ = ["ExperimentSnapshot", "Snapshots"]

#: Views copied into each snapshot database as tables (``metrics`` and ``events`` are
#: not: a summary only holds the latest point of each metric).
TABLES = (
    "experiments",
    "experiment_tags",
    "runs",
    "params",
    "tags",
    "latest_metrics",
    "artifacts",
    "inputs",
    "logged_models",
)


_CURSOR_LOCK = threading.Lock()  # snapshots of one experiment share their database


class ExperimentSnapshot:
    """One experiment's folded state at one listing of its segments."""

    def __init__(
        self, experiment_id: str, paths: frozenset[str], summary: Any, db: duckdb.DuckDBPyConnection
    ) -> None:
        self.experiment_id = experiment_id
        self.paths = paths
        self.summary = summary
        self.db = db
        self.max_time: int | None = summary.max_time
        digest = hashlib.sha1("\n".join(sorted(paths)).encode()).hexdigest()[:12]
        #: Changes whenever an event is added: what live pages poll for.
        self.version = f"{len(paths)}-{digest}"
        self.checked = time.monotonic()
        row = self.query("select * from experiments where experiment_id = ?", [experiment_id])
        self.experiment: dict[str, Any] | None = row[0] if row else None
        self._memo: dict[str, Any] = {}

    @property
    def experiment_row(self) -> dict[str, Any]:
        """The experiment's row (:attr:`experiment`), for snapshots known to have one.

        :meth:`Snapshots.experiment` and :meth:`Snapshots.experiments` only return such
        snapshots; one reached through a run (:meth:`Snapshots.run`) may have none (the
        store holds the run's events but not its experiment's): read :attr:`experiment`.
        """
        if self.experiment is None:
            raise ExperimentNotFound(f"No Experiment with id={self.experiment_id} exists")
        return self.experiment

    def memo(self, key: str, compute: Any) -> Any:
        """``compute()`` once per snapshot (its data never changes)."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A connection of its own for one request (a DuckDB connection is not safe to
        share between threads; a cursor is a new connection to the same database)."""
        with _CURSOR_LOCK:
            return self.db.cursor()

    def query(self, sql: str, params: list | None = None) -> list[dict[str, Any]]:
        cur = self.cursor()
        try:
            res = cur.execute(sql, params or [])
            names = [d[0] for d in res.description]
            return [dict(zip(names, r, strict=True)) for r in res.fetchall()]
        finally:
            cur.close()

    def run_count(self) -> dict[str, int]:
        rows = self.query("select lifecycle_stage, count(*) as n from runs group by all")
        return {r["lifecycle_stage"]: r["n"] for r in rows}


def _arrow(relation: Any) -> Any:
    """A relation as a pyarrow Table (``to_arrow_table`` since DuckDB 1.4)."""
    fetch = getattr(relation, "to_arrow_table", None) or relation.fetch_arrow_table
    return fetch()


#: Tables keyed by run: an update replaces the rows of the runs it touches.
RUN_TABLES = ("runs", "params", "tags", "latest_metrics", "artifacts", "inputs")
#: Tables of the experiment itself: small, replaced whole on every update (a logged
#: model's events belong to no run, so an update's summary holds all of them).
EXPERIMENT_TABLES = ("experiments", "experiment_tags", "logged_models")

_RUNS_SQL = (
    "select r.*, p.value as parent_id from runs r left join tags p "
    "on p.run_id = r.run_id and p.key = 'mlflow.parentRunId'"
)


def _folded(summary_table: Any, names: tuple[str, ...]) -> dict[str, Any]:
    """The folded views of an event table, as Arrow tables (``runs`` with ``parent_id``).

    The views are evaluated through :func:`evtrack.store.log.views.connect` (the public
    definitions) and copied out as Arrow, so this never depends on how that module
    keeps its connections.
    """
    from evtrack.store.log.views import connect

    src = connect(summary_table)
    try:
        return {
            name: _arrow(src.sql(_RUNS_SQL if name == "runs" else f"select * from {name}"))
            for name in names
        }
    finally:
        src.close()


def _build_db(summary: Any) -> duckdb.DuckDBPyConnection:
    """A database of its own holding the folded views of ``summary`` as tables."""
    import duckdb

    db = duckdb.connect()
    for name, table in _folded(summary.table, TABLES).items():
        db.register("_src", table)
        db.execute(f"create table {name} as select * from _src")
        db.unregister("_src")
    return db


def _update_db(db: duckdb.DuckDBPyConnection, part: Any, run_ids: list[str]) -> None:
    """Replace, in one transaction, the rows of ``run_ids`` with their fold in ``part``.

    Readers holding a cursor see the database before or after, never half of it.
    """
    folded = _folded(part.table, (*RUN_TABLES, *EXPERIMENT_TABLES))
    cur = db.cursor()
    try:
        cur.execute("begin transaction")
        cur.register("_ids", _ids_table(run_ids))
        for name, table in folded.items():
            cur.register("_src", table)
            if name in EXPERIMENT_TABLES:
                cur.execute(f"delete from {name}")
            else:
                cur.execute(f"delete from {name} where run_id in (select run_id from _ids)")
            cur.execute(f"insert into {name} select * from _src")
            cur.unregister("_src")
        cur.execute("commit")
    except BaseException:
        cur.execute("rollback")
        raise
    finally:
        cur.close()


def _ids_table(run_ids: list[str]) -> Any:
    import pyarrow as pa

    return pa.table({"run_id": pa.array(run_ids, pa.string())})


def _rows_of(table: Any, run_ids: set[str]) -> Any:
    """Boolean mask of the rows of ``table`` whose run is in ``run_ids`` or that have none."""
    import numpy as np
    import pyarrow as pa

    masks = []
    for chunk in table.column("run_id").chunks:
        if not pa.types.is_dictionary(chunk.type):
            chunk = chunk.dictionary_encode()
        wanted = np.isin(chunk.dictionary.to_numpy(zero_copy_only=False), list(run_ids))
        codes = chunk.indices.fill_null(-1).to_numpy(zero_copy_only=False)
        hit = np.zeros(len(codes), dtype=bool)
        known = codes >= 0
        hit[known] = wanted[codes[known]]
        masks.append(hit | ~known)  # experiment events (no run) always come along
    return np.concatenate(masks) if masks else np.zeros(0, dtype=bool)


class Snapshots:
    """The snapshot of every experiment of one store, refreshed on demand."""

    def __init__(self, store: Store, min_interval: float = 1.0) -> None:
        self.store = store
        self.min_interval = min_interval
        self._snapshots: dict[str, ExperimentSnapshot] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()
        self._run_experiment: dict[str, str] = {}
        self._format_checked = False
        self._dirty: set[str] = set()  # a watcher saw a change since the last listing

    def check_format(self) -> None:
        """Refuse a store written by a newer evtrack (reads the marker, never writes it)."""
        if self._format_checked:
            return
        from evtrack.store.log.layout import STORE_FORMAT_VERSION

        try:
            info = json.loads(self.store.read_bytes(self.store.path("evtrack.json")))
        except FileNotFoundError:
            return  # empty or not yet created: shows as a store with no experiments
        version = info.get("format_version")
        if isinstance(version, int) and version > STORE_FORMAT_VERSION:
            raise StoreVersionError(
                f"The store at {self.store.uri} has format version {version}; this evtrack "
                f"reads up to {STORE_FORMAT_VERSION}. Upgrade evtrack to view it."
            )
        self._format_checked = True

    def experiment_ids(self) -> list[str]:
        self.check_format()
        return self.store.list_experiment_ids()

    def experiment(self, experiment_id: str) -> ExperimentSnapshot:
        """The current snapshot of an experiment; :class:`ExperimentNotFound` if none."""
        from evtrack.tracking import validation

        validation.check_experiment_id(experiment_id)
        snap = self._fresh(experiment_id)
        if snap.experiment is None:
            raise ExperimentNotFound(f"No Experiment with id={experiment_id} exists")
        return snap

    def experiments(self) -> list[ExperimentSnapshot]:
        out = []
        for experiment_id in self.experiment_ids():
            snap = self._fresh(experiment_id)
            if snap.experiment is not None:
                out.append(snap)
        return out

    def experiment_of_run(self, run_id: str) -> str:
        from evtrack.tracking import validation

        experiment_id = self._run_experiment.get(run_id)
        if experiment_id is None:
            validation.check_run_id(run_id)
            self.check_format()
            experiment_id = self.store.experiment_of_run(run_id)
            if experiment_id is None:
                raise RunNotFound(f"Run with id={run_id} not found")
            self._run_experiment[run_id] = experiment_id  # a claim never changes
        return experiment_id

    def run(self, run_id: str) -> tuple[ExperimentSnapshot, dict[str, Any]]:
        """The snapshot holding a run, and the run's row of the ``runs`` table."""
        snap = self._fresh(self.experiment_of_run(run_id))
        rows = snap.query("select * from runs where run_id = ?", [run_id])
        if not rows:
            raise RunNotFound(f"Run with id={run_id} not found")
        return snap, rows[0]

    def invalidate(self, experiment_id: str) -> None:
        """Make the next request list the experiment again (a watcher saw a change)."""
        self._dirty.add(experiment_id)

    # -- refreshing --------------------------------------------------------------------

    def _lock_for(self, experiment_id: str) -> threading.Lock:
        with self._lock:
            return self._locks.setdefault(experiment_id, threading.Lock())

    def _trusted(self, experiment_id: str, snap: ExperimentSnapshot | None) -> bool:
        return (
            snap is not None
            and experiment_id not in self._dirty
            and time.monotonic() - snap.checked < self.min_interval
        )

    def _fresh(self, experiment_id: str) -> ExperimentSnapshot:
        snap = self._snapshots.get(experiment_id)
        if self._trusted(experiment_id, snap):
            return snap  # type: ignore[return-value]
        with self._lock_for(experiment_id):
            snap = self._snapshots.get(experiment_id)
            if self._trusted(experiment_id, snap):
                return snap  # type: ignore[return-value]
            self._dirty.discard(experiment_id)  # before listing: a later change re-marks it
            self.check_format()
            listing = list_segments(self.store, experiment_id)
            paths = frozenset(p for p, _ in listing)
            if snap is not None and stale(snap.checked):
                snap = None
            if snap is not None and paths == snap.paths:
                snap.checked = time.monotonic()
                return snap
            snap = self._build(experiment_id, listing, paths, snap)
            self._snapshots[experiment_id] = snap
            return snap

    def _build(
        self,
        experiment_id: str,
        listing: list,
        paths: frozenset[str],
        old: ExperimentSnapshot | None,
    ) -> ExperimentSnapshot:
        from evtrack.store.log.snapshot import read_segment_tables
        from evtrack.web.summary import summarize

        if old is not None and old.paths <= paths:
            try:
                tables, _ = read_segment_tables(
                    self.store, [(p, s) for p, s in listing if p not in old.paths]
                )
            except FileNotFoundError:
                tables = None  # collected since listing: read everything again below
            if tables is not None:
                return self._apply(old, paths, tables)
        from evtrack.store.log.views import load_events

        summary = summarize(load_events(self.store, [experiment_id], history=False))
        return ExperimentSnapshot(experiment_id, paths, summary, _build_db(summary))

    def _apply(
        self, old: ExperimentSnapshot, paths: frozenset[str], tables: list
    ) -> ExperimentSnapshot:
        """Fold new segments in: only the runs they touch are folded again.

        A live run adds a segment every flush; re-folding a 50,000-run experiment each
        time would cost seconds, re-folding the one run costs milliseconds.
        """
        import pyarrow as pa
        import pyarrow.compute as pc

        from evtrack.web.summary import Summary, summarize

        new = pa.concat_tables(tables, promote_options="permissive")
        run_ids = {r for r in pc.unique(new.column("run_id").cast(pa.string())).to_pylist() if r}
        keep = _rows_of(old.summary.table, run_ids)
        touched = old.summary.table.filter(pa.array(keep))
        rest = old.summary.table.filter(pa.array(~keep))
        part = summarize(
            pa.concat_tables([touched, new], promote_options="permissive"), old.summary.max_time
        )
        _update_db(old.db, part, sorted(run_ids))
        merged = pa.concat_tables([rest, part.table], promote_options="permissive")
        if merged.column("run_id").num_chunks > 16:  # each update adds chunks: merge now and then
            merged = merged.combine_chunks()
        return ExperimentSnapshot(old.experiment_id, paths, Summary(merged, part.max_time), old.db)


def list_segments(store: Store, experiment_id: str, scope: str | None = None) -> list:
    """``[(path, SegmentName)]`` of an experiment's (or a run's) visible segments."""
    from evtrack.store.log.snapshot import list_segments as listing

    return listing(store, experiment_id, scope)


def stale(checked: float) -> bool:
    """Whether a listing this old could have missed a segment collected since (see above)."""
    from evtrack import settings

    return time.monotonic() - checked >= float(settings.get("gc_grace_seconds")) / 2
