"""The run index: the folded state of some experiments' runs, ready to search.

A search folds every event of an experiment into runs, params, tags and latest
metrics. Doing that on each call cost ~100 ms at 1,000 runs and grew with the store. A
:class:`RunIndex` keeps, per set of experiments, the *reduced* events (only those that
can win a fold, :func:`evtrack.store.log.compaction.reduce_events`) and a DuckDB database
of its own where the views a search reads (``runs``, ``params``, ``tags``,
``latest_metrics``, ``inputs``) are materialised as tables.

Each search still lists the store (a live reader sees new segments at once) — on a local
folder it first compares the two folders' modification times with those taken before
the last complete listing, trusted only once they are older than the filesystem's
timestamp granularity (:data:`MTIME_QUIET_NS`), the way git trusts file times — then:

* nothing changed (same manifest, same segments): the tables are used as they are;
* new segments only: they are decoded (decoded segments are cached by path, since
  segments never change) and folded into the reduced events, and the tables rebuilt;
* anything else (a compaction published a manifest, gc removed segments): the
  experiment is read again from its snapshot.

Folding reduced events again with new ones gives the same views as folding everything
(each fold rule of :mod:`evtrack.store.log.fold` is idempotent on its winners), which is
what makes the incremental step exact. What a process folded is saved on local disk
(:mod:`evtrack.store.log.index_cache`): a new process starts from it when the listing
proves it still holds, and folds only the segments written since. Limits: the index of an experiment holds its
runs' reduced events in memory (about a dozen rows per run); at most
:data:`MAX_ENTRIES` sets of experiments are kept per store, least recently used first out.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Callable

    import duckdb
    import pyarrow as pa

    from evtrack.entities import Run
    from evtrack.store.log.layout import Store

__all__ = ["MAX_ENTRIES", "RunIndex", "TABLES"]

_log = logging.getLogger(__name__)

#: The views a search and ``get_run``-style reads use, materialised as tables.
TABLES = ("runs", "params", "tags", "latest_metrics", "inputs")

#: Sets of experiments indexed at once per store.
MAX_ENTRIES = 8


@dataclass
class _Experiment:
    """What the index knows of one experiment: the snapshot it folded, and the result."""

    version: int = -1  # manifest version folded
    names: frozenset[str] = frozenset()  # names in the events folder when folded
    # The reduced events, or a loader of the saved ones (decoded only if new segments
    # are folded on top: a fresh process whose saved index is current never needs them).
    reduced: pa.Table | Callable[[], pa.Table] | None = None
    # Modification times (ns) of the events and manifest folders, taken before a listing
    # they were already older than by MTIME_QUIET_NS: if both are unchanged, so is the
    # listing (local folders only; None: list every time).
    stamps: tuple[int, int] | None = None
    # The experiment's own materialised views (None: to build from ``reduced``); a set
    # of experiments' tables are these concatenated (each view folds within one run).
    tables: dict[str, pa.Table] | None = None
    mark: list[str] = field(default_factory=list)  # index_cache.manifest_mark folded
    tried_cache: bool = False  # the saved index was looked at (once per process)
    saved: int = -1  # len(names) when last saved (-1: not saved); see _should_save
    saved_at: float = 0.0  # time.monotonic() of this process's last save (0: none yet)


class RunRows:
    """Every indexed run's info, params, tags and latest metrics, by run id.

    The first call of a process's first index reads only the runs asked for (a fresh
    process's one search over 10,000 runs builds a few hundred, not 10,000); later calls,
    and every call of an index rebuilt in a warm process (``eager``), read every run once
    into dictionaries, so turning a warm search's run ids into
    :class:`~evtrack.entities.Run` objects is lookups, not four more queries (which cost
    two thirds of a warm search).
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, eager: bool = False) -> None:
        self._con = con
        self._lock = threading.Lock()
        self._calls = 1 if eager else 0
        self._all: tuple[dict[str, dict[str, Any]], _Pairs, _Pairs, _Metrics] | None = None

    def _read(
        self, run_ids: list[str] | None
    ) -> tuple[dict[str, dict[str, Any]], _Pairs, _Pairs, _Metrics]:
        where, args = (
            ("", []) if run_ids is None else (" where run_id in (select unnest(?))", [run_ids])
        )
        with self._lock:
            cur = self._con.cursor()
        try:
            res = cur.execute(f"select * from runs{where}", args)
            names = [d[0] for d in res.description]
            infos = {r[0]: dict(zip(names, r)) for r in res.fetchall()}
            params = _pairs(cur.execute(f"select run_id, key, value from params{where}", args))
            tags = _pairs(cur.execute(f"select run_id, key, value from tags{where}", args))
            metrics: _Metrics = {}
            sql = f"select run_id, key, value, step, timestamp from latest_metrics{where}"
            for rid, key, value, step, ts in cur.execute(sql, args).fetchall():
                metrics.setdefault(rid, []).append((key, value, ts, step))
        finally:
            cur.close()
        return infos, params, tags, metrics

    def runs(self, run_ids: list[str]) -> list[Run]:
        """Fresh :class:`Run` objects (callers may change them) for ``run_ids``, in order."""
        from evtrack.entities import Metric, Run, RunData, RunInfo

        if not run_ids:
            return []
        with self._lock:
            self._calls += 1
            first = self._calls == 1
        rows = self._all
        if rows is None:
            rows = self._read(run_ids if first else None)
            if not first:
                self._all = rows
        infos, params, tags, metrics = rows
        fields = RunInfo.__dataclass_fields__
        out = []
        for rid in run_ids:
            info = infos.get(rid)
            if info is None:
                continue
            data = RunData(params=dict(params.get(rid, ())), tags=dict(tags.get(rid, ())))
            for key, value, ts, step in metrics.get(rid, ()):
                data.metrics[key] = value
                data._metric_objs.append(Metric(key, value, ts, step))
            out.append(Run(RunInfo(**{k: info[k] for k in fields}), data))
        return out


_Pairs = dict[str, list[tuple[str, str]]]
_Metrics = dict[str, list[tuple[str, float, int, int]]]


def _pairs(res: duckdb.DuckDBPyConnection) -> _Pairs:
    out: _Pairs = {}
    for rid, key, value in res.fetchall():
        out.setdefault(rid, []).append((key, value))
    return out


@dataclass
class _Entry:
    experiments: dict[str, _Experiment] = field(default_factory=dict)
    con: duckdb.DuckDBPyConnection | None = None
    rows: RunRows | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def close(self) -> None:
        if self.con is not None:
            self.con.close()
            self.con = None


class RunIndex:
    """Materialised run views per set of experiments, refreshed from each snapshot."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._entries: OrderedDict[tuple[str, ...], _Entry] = OrderedDict()
        self._lock = threading.Lock()

    def cursor(self, experiment_ids: list[str]) -> tuple[duckdb.DuckDBPyConnection, RunRows]:
        """A cursor over up-to-date tables of ``experiment_ids``' runs (caller closes it),
        and the same runs' rows for building results."""
        key = tuple(sorted(set(experiment_ids)))
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                entry = self._entries[key] = _Entry()
                while len(self._entries) > MAX_ENTRIES:
                    _, old = self._entries.popitem(last=False)
                    old.close()
            else:
                self._entries.move_to_end(key)
        with entry.lock:
            changed = [self._refresh_retrying(entry, e) for e in key]
            if entry.con is None or any(changed):
                self._materialise(entry, key)
            assert entry.con is not None and entry.rows is not None
            return entry.con.cursor(), entry.rows

    def folded_any(self, experiment_ids: list[str]) -> bool:
        """Whether this process already folded any of ``experiment_ids`` (its tables are
        then the fastest way to answer, and kept up to date by :meth:`cursor`)."""
        wanted = set(experiment_ids)
        with self._lock:
            return any(wanted.intersection(key) for key in self._entries)

    def close(self) -> None:
        with self._lock:
            entries = list(self._entries.values())
            self._entries.clear()
        for entry in entries:
            entry.close()

    # -- keeping up with the store -------------------------------------------------------

    def _refresh_retrying(self, entry: _Entry, experiment_id: str, attempts: int = 5) -> bool:
        """:meth:`_refresh`, listing again when a listed file was collected meanwhile."""
        from evtrack.errors import StoreUnavailable

        for _ in range(attempts - 1):
            try:
                return self._refresh(entry, experiment_id)
            except FileNotFoundError:
                entry.experiments.pop(experiment_id, None)
        try:
            return self._refresh(entry, experiment_id)
        except FileNotFoundError as exc:
            raise StoreUnavailable(
                f"The store at {self.store.uri} kept changing while it was read ({exc}); try again."
            ) from exc

    def _refresh(self, entry: _Entry, experiment_id: str) -> bool:
        """Bring one experiment's reduced events up to date; True if they changed.

        Unchanged names in the events folder are not parsed again: a warm search over
        an experiment of 100,000 runs compares two sets of names, nothing more. The
        first refresh in a process starts from the saved index (:mod:`index_cache`) when
        the listing proves it still holds: same manifest, every name it folded listed.
        """
        from evtrack.errors import StoreError
        from evtrack.store.log import index_cache
        from evtrack.store.log.manifest import read_manifest
        from evtrack.store.log.snapshot import (
            DamagedCompactedFile,
            Snapshot,
            _parse,
            read_events,
            read_file_tables,
            read_segments_together,
        )

        state = entry.experiments.setdefault(experiment_id, _Experiment())
        folder = self.store.events_dir(experiment_id)
        stamps = _folder_stamps(self.store, experiment_id)
        if state.reduced is not None and stamps is not None and stamps == state.stamps:
            return False  # neither folder changed since a listing known to be complete
        manifest = read_manifest(self.store, experiment_id)  # manifest first, then names
        names = frozenset(self.store.listdir(folder))
        mark = index_cache.manifest_mark(manifest)
        state.stamps = stamps if stamps is not None and _quiet(stamps) else None
        loaded = False
        if state.reduced is None and not state.tried_cache:
            state.tried_cache = True
            cached = index_cache.load(self.store, experiment_id)
            if cached is not None and cached.mark == mark and cached.names <= names:
                state.reduced, state.tables, state.names = (
                    cached.reduced,
                    cached.tables,
                    cached.names,
                )
                state.version, state.mark, state.saved = manifest.version, mark, len(cached.names)
                loaded = True
        if state.reduced is not None and state.mark == mark:
            if names == state.names:
                return loaded
            if state.names <= names:
                new = []
                for name in names - state.names:
                    seg = _parse(name)
                    if seg is not None and not manifest.coverage.covers(seg):
                        new.append((f"{folder}/{name}", seg))
                try:
                    base = _events(state)
                    tables = read_segments_together(self.store, new)[0]
                except FileNotFoundError:
                    pass  # collected since the listing: read the experiment afresh below
                except StoreError as exc:  # a damaged saved index: read afresh below
                    _log.debug("evtrack: %s", exc)
                else:
                    if any(t.num_rows for t in tables):
                        state.reduced = _reduce([base, *tables])
                        state.tables = None
                    state.names = names
                    return loaded or any(t.num_rows for t in tables)
        # First read, or a compaction or gc changed what covers what: read the snapshot
        # these names and this manifest describe, so the state matches what was read.
        segments = []
        for name in names:
            seg = _parse(name)
            if seg is not None and not manifest.coverage.covers(seg):
                segments.append((f"{folder}/{name}", seg))
        snap = Snapshot(manifest, list(manifest.reduced), segments)
        try:
            tables = read_file_tables(self.store, snap)
        except DamagedCompactedFile:  # rare: let the general reader work around it
            tables, segments = [read_events(self.store, [experiment_id], None, False)], []
        tables += read_segments_together(self.store, segments)[0]  # FileNotFoundError: retry
        if len(tables) == 1 and len(snap.files) == 1:
            # One reduced file and nothing newer (a compacted experiment): already
            # reduced, as compaction wrote it.
            from evtrack.store.log.events import event_schema

            state.reduced = tables[0].cast(event_schema())
        else:
            state.reduced = _reduce(tables)
        state.tables = None
        state.version, state.mark, state.names, state.saved = manifest.version, mark, names, -1
        return True

    def _materialise(self, entry: _Entry, key: tuple[str, ...]) -> None:
        import duckdb
        import pyarrow as pa

        from evtrack.store.log import index_cache, run_summary
        from evtrack.store.log.snapshot import _parse

        states = [entry.experiments[e] for e in key]
        for experiment_id, state in zip(key, states):
            if state.tables is None:
                state.tables = _views(_events(state))
            if _should_save(state) and index_cache.cache_path(self.store, experiment_id):
                state.saved, state.saved_at = len(state.names), time.monotonic()
                # Segment names only: a temporary file another writer was renaming when
                # the folder was listed is gone by the next listing, and would make every
                # new process distrust the saved index.
                names = frozenset(n for n in state.names if _parse(n) is not None)
                cached = index_cache.CachedExperiment(
                    state.mark, names, _events(state), state.tables
                )
                index_cache.save(self.store, experiment_id, cached)
                # And the plain-Python summary a fresh process searches without pyarrow
                # or DuckDB while nothing changes (run_summary.py).
                summary = run_summary.from_tables(state.mark, names, state.tables)
                run_summary.save(self.store, experiment_id, summary)
        # One thread: these are small queries, where a pool's hand-offs cost more than
        # the scan (several times more on a busy machine).
        con = duckdb.connect(config={"threads": 1})
        for name in TABLES:
            parts = [s.tables[name] for s in states if s.tables is not None]
            table = pa.concat_tables(parts) if len(parts) > 1 else parts[0]
            con.register("t", table)
            con.execute(f"create table {name} as select * from t")
            con.unregister("t")
        # The previous connection is not closed here: a search on another thread may
        # still hold a cursor or the RunRows of it; it is closed once unreferenced.
        entry.con, entry.rows = con, RunRows(con, eager=entry.rows is not None)


def _events(state: _Experiment) -> pa.Table:
    """The experiment's reduced events (decoding saved ones on first use; a damaged
    saved file raises :class:`~evtrack.errors.StoreError`)."""
    if callable(state.reduced):
        from evtrack.errors import StoreError

        try:
            state.reduced = state.reduced()
        except Exception as exc:  # noqa: BLE001 - any decoding failure: a damaged file
            raise StoreError(f"saved run index unreadable: {exc}") from exc
    assert state.reduced is not None
    return state.reduced


def _views(reduced: pa.Table) -> dict[str, pa.Table]:
    """One experiment's materialised views, from its reduced events."""
    from evtrack.store.log.compaction import _duck
    from evtrack.store.log.views import view_sql

    return {name: _duck(reduced, view_sql(name)) for name in TABLES}


#: Seconds between two saves of a re-read experiment by one process (a server re-reading
#: after each compaction would otherwise write the file each time: ~0.1 s per 10,000 runs).
SAVE_INTERVAL_S = 30.0


def _should_save(state: _Experiment) -> bool:
    """Save after a full read (at most every :data:`SAVE_INTERVAL_S` in one process), and
    once a tenth more segments were folded since the last save (so saves cost a bounded
    share of the folding). A stale saved index is still right: a new process folds the
    newer segments on top, or reads afresh."""
    if state.saved < 0:
        return not state.saved_at or time.monotonic() - state.saved_at >= SAVE_INTERVAL_S
    return len(state.names) - state.saved >= max(64, len(state.names) // 10)


#: How long a folder must have been left alone before its modification time is trusted
#: to reveal any later change: more than the filesystem's timestamp granularity (Linux
#: stamps directories with a clock ticking every few milliseconds).
MTIME_QUIET_NS = 200_000_000


def _folder_stamps(store: Store, experiment_id: str) -> tuple[int, int] | None:
    """``(events folder mtime, manifest folder mtime)`` on a local store, else None."""
    import os

    from evtrack.store.log.manifest import manifest_dir

    if not store.is_local:
        return None

    def mtime(path: str) -> int:
        try:
            return os.stat(path).st_mtime_ns
        except FileNotFoundError:
            return 0  # not made yet (no compaction so far): making it changes this

    return mtime(store.events_dir(experiment_id)), mtime(manifest_dir(store, experiment_id))


def _quiet(stamps: tuple[int, int]) -> bool:
    """Whether both folders were last changed long enough ago for their times to tell."""
    return time.time_ns() - max(stamps) > MTIME_QUIET_NS


def _reduce(tables: list[pa.Table]) -> pa.Table:
    import pyarrow as pa

    from evtrack.store.log.compaction import reduce_events
    from evtrack.store.log.events import empty_table, event_schema

    tables = [t for t in tables if t.num_rows]
    if not tables:
        return empty_table()
    table = pa.concat_tables(tables).combine_chunks() if len(tables) > 1 else tables[0]
    # DuckDB hands back plain strings; the event schema's dictionaries let the next
    # segments' tables concatenate with this one.
    return reduce_events(table).cast(event_schema())
