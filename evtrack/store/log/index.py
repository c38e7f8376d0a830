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
what makes the incremental step exact. Limits: the index of an experiment holds its
runs' reduced events in memory (about a dozen rows per run); at most
:data:`MAX_ENTRIES` sets of experiments are kept per store, least recently used first out.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import duckdb
    import pyarrow as pa

    from evtrack.entities import Run
    from evtrack.store.log.layout import Store

__all__ = ["MAX_ENTRIES", "RunIndex", "TABLES"]

#: The views a search and ``get_run``-style reads use, materialised as tables.
TABLES = ("runs", "params", "tags", "latest_metrics", "inputs")

#: Sets of experiments indexed at once per store.
MAX_ENTRIES = 8


@dataclass
class _Experiment:
    """What the index knows of one experiment: the snapshot it folded, and the result."""

    version: int = -1  # manifest version folded
    names: frozenset[str] = frozenset()  # names in the events folder when folded
    reduced: pa.Table | None = None
    # Modification times (ns) of the events and manifest folders, taken before a listing
    # they were already older than by MTIME_QUIET_NS: if both are unchanged, so is the
    # listing (local folders only; None: list every time).
    stamps: tuple[int, int] | None = None


class RunRows:
    """Every indexed run's info, params, tags and latest metrics, by run id.

    Read once from the materialised tables when they are built, so turning a search's
    run ids into :class:`~evtrack.entities.Run` objects is dictionary lookups, not four
    more queries (which cost two thirds of a warm search).
    """

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        cur = con.execute("select * from runs")
        names = [d[0] for d in cur.description]
        self.infos = {r[0]: dict(zip(names, r)) for r in cur.fetchall()}
        self.params = self._pairs(con, "select run_id, key, value from params")
        self.tags = self._pairs(con, "select run_id, key, value from tags")
        self.metrics: dict[str, list[tuple[str, float, int, int]]] = {}
        for rid, key, value, step, ts in con.execute(
            "select run_id, key, value, step, timestamp from latest_metrics"
        ).fetchall():
            self.metrics.setdefault(rid, []).append((key, value, ts, step))

    @staticmethod
    def _pairs(con: duckdb.DuckDBPyConnection, sql: str) -> dict[str, list[tuple[str, str]]]:
        out: dict[str, list[tuple[str, str]]] = {}
        for rid, key, value in con.execute(sql).fetchall():
            out.setdefault(rid, []).append((key, value))
        return out

    def runs(self, run_ids: list[str]) -> list[Run]:
        """Fresh :class:`Run` objects (callers may change them) for ``run_ids``, in order."""
        from evtrack.entities import Metric, Run, RunData, RunInfo

        fields = RunInfo.__dataclass_fields__
        out = []
        for rid in run_ids:
            info = self.infos.get(rid)
            if info is None:
                continue
            data = RunData(params=dict(self.params.get(rid, ())), tags=dict(self.tags.get(rid, ())))
            for key, value, ts, step in self.metrics.get(rid, ()):
                data.metrics[key] = value
                data._metric_objs.append(Metric(key, value, ts, step))
            out.append(Run(RunInfo(**{k: info[k] for k in fields}), data))
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
        an experiment of 100,000 runs compares two sets of names, nothing more.
        """
        from evtrack.store.log.manifest import read_manifest
        from evtrack.store.log.snapshot import (
            DamagedCompactedFile,
            Snapshot,
            _parse,
            read_events,
            read_file_tables,
            read_segments_at_once,
        )

        state = entry.experiments.setdefault(experiment_id, _Experiment())
        folder = self.store.events_dir(experiment_id)
        stamps = _folder_stamps(self.store, experiment_id)
        if state.reduced is not None and stamps is not None and stamps == state.stamps:
            return False  # neither folder changed since a listing known to be complete
        manifest = read_manifest(self.store, experiment_id)  # manifest first, then names
        names = frozenset(self.store.listdir(folder))
        state.stamps = stamps if stamps is not None and _quiet(stamps) else None
        if state.reduced is not None and manifest.version == state.version:
            if names == state.names:
                return False
            if state.names <= names:
                new = []
                for name in names - state.names:
                    seg = _parse(name)
                    if seg is not None and not manifest.coverage.covers(seg):
                        new.append((f"{folder}/{name}", seg))
                try:
                    tables = read_segments_at_once(self.store, new)
                except FileNotFoundError:
                    pass  # collected since the listing: read the experiment afresh below
                else:
                    if any(t.num_rows for t in tables):
                        state.reduced = _reduce([state.reduced, *tables])
                    state.names = names
                    return any(t.num_rows for t in tables)
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
        tables += read_segments_at_once(self.store, segments)  # FileNotFoundError: retry
        if len(tables) == 1 and len(snap.files) == 1:
            # One reduced file and nothing newer (a compacted experiment): already
            # reduced, as compaction wrote it.
            from evtrack.store.log.events import event_schema

            state.reduced = tables[0].cast(event_schema())
        else:
            state.reduced = _reduce(tables)
        state.version = manifest.version
        state.names = names
        return True

    def _materialise(self, entry: _Entry, key: tuple[str, ...]) -> None:
        import duckdb
        import pyarrow as pa

        from evtrack.store.log.events import event_schema
        from evtrack.store.log.views import view_sql

        tables = [s.reduced for e in key if (s := entry.experiments[e]).reduced is not None]
        tables = [t for t in tables if t.num_rows]
        events = pa.concat_tables(tables) if tables else event_schema().empty_table()
        # One thread: these are small queries, where a pool's hand-offs cost more than
        # the scan (several times more on a busy machine).
        con = duckdb.connect(config={"threads": 1})
        con.register("ev", events)
        for name in TABLES:
            con.execute(f"create table {name} as {view_sql(name)}")
        con.unregister("ev")
        rows = RunRows(con)
        entry.close()
        entry.con, entry.rows = con, rows


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
    import time

    return time.time_ns() - max(stamps) > MTIME_QUIET_NS


def _reduce(tables: list[pa.Table]) -> pa.Table:
    import pyarrow as pa

    from evtrack.store.log.compaction import reduce_events
    from evtrack.store.log.events import event_schema

    tables = [t for t in tables if t.num_rows]
    if not tables:
        return event_schema().empty_table()
    table = pa.concat_tables(tables).combine_chunks() if len(tables) > 1 else tables[0]
    # DuckDB hands back plain strings; the event schema's dictionaries let the next
    # segments' tables concatenate with this one.
    return reduce_events(table).cast(event_schema())
