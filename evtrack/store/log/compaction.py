"""Compaction: many small segments become a few sorted Parquet files, published by manifest.

Two families of compacted files cover the same segments (see :mod:`evtrack.store.log.manifest`):

**full** files hold every event, sorted by ``(run_id, kind, key, step)`` in row groups of
:data:`FULL_ROW_GROUP` rows, so one run's or one key's metric history reads a few row
groups (their ``run_id`` statistics let a reader skip the rest).

**reduced** files hold only the events that can win a fold of the views in
:mod:`evtrack.store.log.views`: per ``(run, kind, key)`` the first param by ``(time, seq, writer)``;
the last tag, run attribute, experiment attribute, experiment tag and artifact event by
``(time, seq, writer)`` (deletions included, so they still win); the latest metric point
(all by the rules of :mod:`evtrack.store.log.fold`); every input. Each fold is idempotent on its winners, so the
views over reduced files ∪ uncovered segments equal the views over all events; searches
and ``get_run`` read these (``load_events(history=False)``).

Each compaction writes its new files under fresh random names (never visible to readers
until a manifest lists them), then commits a manifest version create-only. A process
killed before the commit leaves unreferenced files, which readers never open and
``evtrack gc`` removes after the grace period. Files are merged in tiers (like an LSM
tree): once :data:`FANOUT` files of one family have similar sizes they are merged into
one, so a run's end costs a small write and an experiment keeps a few files.
"""

from __future__ import annotations

import io
import logging
import math
import os
import secrets
import threading
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from evtrack.store.log.fold import FIRST_EVENT_FIRST, LAST_EVENT_FIRST, METRIC_WINNER_FIRST
from evtrack.store.log.manifest import (
    CompactedFile,
    Conflict,
    Manifest,
    commit,
    compacted_dir,
    read_manifest,
)
from evtrack.store.log.snapshot import (
    list_segments,
    read_file_tables,
    read_segment_tables,
    read_segments_together,
    take_snapshot,
)

if TYPE_CHECKING:  # pragma: no cover
    import duckdb
    import pyarrow as pa

    from evtrack.store.log.layout import Store
    from evtrack.store.log.segments import SegmentName

__all__ = [
    "FANOUT",
    "FULL_ROW_GROUP",
    "CompactionResult",
    "compact_all",
    "compact_experiment",
    "compact_run",
    "compact_runs",
    "covered_segments",
    "reduce_events",
    "sort_events",
]

_log = logging.getLogger(__name__)

#: Rows per row group of full files: ~1 MB of metric points, a few per 1 M-point history.
FULL_ROW_GROUP = 131_072
#: Rows per row group of reduced files.
REDUCED_ROW_GROUP = 65_536
#: Files of one family and similar size merged at once.
FANOUT = 8
#: Full files at least this large are left alone by tier merges (already well sorted).
BIG_FILE_ROWS = 2_000_000
#: A merge of full files stops adding inputs past this many rows (memory bound).
MERGE_BUDGET_ROWS = 16_000_000
#: Runs listed by name in a manifest entry; above this, only the min/max run id.
MAX_LISTED_RUNS = 64


@dataclass
class CompactionResult:
    """What one compaction did."""

    experiment_id: str
    run_id: str | None  # the run compacted; None for an experiment or a batch of runs
    version: int  # manifest version in force afterwards (0: none)
    batch: bool = False  # a batch of runs (compact_runs)
    runs: int = 0  # runs of the run or batch that had segments covered by this compaction
    segments: int = 0  # segments newly covered
    events: int = 0  # events in those segments
    files_written: list[str] = field(default_factory=list)
    files_replaced: list[str] = field(default_factory=list)
    seconds: float = 0.0
    gave_up: bool = False  # lost every race for the manifest; nothing changed


# -- DuckDB: sorting and reducing -----------------------------------------------------------

_COLS = "writer, seq, time, kind, experiment_id, run_id, key, value, step, timestamp, text"

_SORT_SQL = f"""
    select {_COLS} from ev
    order by run_id nulls first, kind, key, step, timestamp, time, seq, writer
"""

# One row per (experiment, run, kind, key): the one that wins the view's fold, by the
# rules of fold.py. A finer grouping than the views use (runs group by run_id, key) is
# safe: the fold picks the same winner among the survivors, and a survivor keeps its
# identity (time, seq, writer), so folding winners with newer events changes nothing.
# Metric points below their series' largest step cannot win: a hash aggregate and a
# semi join drop them before the window, which over a million points would otherwise
# sort them all (seconds). Done here rather than in Arrow: pyarrow's compute on Python
# scalars and its group_by import pandas (~0.3 s) on a first search.
_REDUCE_SQL = f"""
    with top as (
        select run_id, key, max(step) as step from ev where kind = 'metric' group by all
    )
    select {_COLS} from (
        select * from ev where kind = 'param'
        qualify row_number() over (
            partition by experiment_id, run_id, key order by {FIRST_EVENT_FIRST}) = 1
        union all
        select * from (
            select * from ev semi join top
            on ev.run_id is not distinct from top.run_id and ev.key = top.key
               and ev.step = top.step
            where ev.kind = 'metric'
        )
        qualify row_number() over (
            partition by experiment_id, run_id, key order by {METRIC_WINNER_FIRST}) = 1
        union all
        select * from ev where kind not in ('param', 'metric', 'input')
        qualify row_number() over (
            partition by experiment_id, run_id, kind, key order by {LAST_EVENT_FIRST}) = 1
        union all
        select * from ev where kind = 'input'
    )
    order by run_id nulls first, kind, key, step, time, seq, writer
"""


_DB: list[duckdb.DuckDBPyConnection] = []
_DB_LOCK = threading.Lock()
# a parent's connections, never used nor closed in a forked child
_INHERITED: list[duckdb.DuckDBPyConnection] = []


def _after_fork() -> None:
    # A DuckDB connection made before a fork has worker threads and locks that do not
    # exist in the child: using it there can hang. Keep the object (closing it could
    # touch that state too) and let the child open its own on first use.
    global _DB_LOCK
    _DB_LOCK = threading.Lock()
    _INHERITED.extend(_DB)
    _DB.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


def _duck(table: pa.Table, sql: str) -> pa.Table:
    # duckdb.connect() costs ~80 ms (duckdb 2.0); a cursor of one shared in-memory
    # database costs ~0.2 ms and has its own name space for the registered table.
    import duckdb

    with _DB_LOCK:
        if not _DB:
            _DB.append(duckdb.connect())
        cur = _DB[0].cursor()
    try:
        cur.register("ev", table)
        return cur.sql(sql).to_arrow_table()
    finally:
        cur.close()


def sort_events(table: pa.Table) -> pa.Table:
    """Events in full-file order: ``run_id, kind, key, step`` (then time, identity)."""
    return _duck(table, _SORT_SQL)


def reduce_events(table: pa.Table) -> pa.Table:
    """Only the events that can win a view's fold (see the module docstring)."""
    return _duck(table, _REDUCE_SQL)


def _concat(tables: list[pa.Table]) -> pa.Table:
    import pyarrow as pa

    from evtrack.store.log.events import event_schema

    tables = [t for t in tables if t.num_rows]
    if not tables:
        return event_schema().empty_table()
    if len(tables) == 1:
        return tables[0]
    table = pa.concat_tables(tables)
    # One chunk per segment makes DuckDB and Arrow compute crawl (10,000 segments:
    # 9 s vs 0.4 s), so many small tables are combined first.
    return table.combine_chunks() if len(tables) > 16 else table


# -- writing files --------------------------------------------------------------------------


def _write(store: Store, experiment_id: str, family: str, table: pa.Table) -> CompactedFile:
    """Write a sorted table as a new compacted file (not yet referenced by any manifest)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    runs_col = table["run_id"]
    if runs_col.type != "string":
        runs_col = runs_col.cast("string")
    distinct = pc.unique(runs_col.drop_null()).to_pylist() if table.num_rows else []
    distinct.sort()
    sink = io.BytesIO()
    # Plain strings in, so Parquet statistics are exact per row group (readers prune by
    # run_id); Parquet still dictionary-encodes them on disk.
    pq.write_table(
        table,
        sink,
        row_group_size=FULL_ROW_GROUP if family == "full" else REDUCED_ROW_GROUP,
        compression="zstd",
        compression_level=1,
        use_dictionary=["writer", "kind", "experiment_id", "run_id", "key", "text"],
        column_encoding={c: "DELTA_BINARY_PACKED" for c in ("seq", "time", "step", "timestamp")},
        write_statistics=["run_id", "key", "kind", "step"],
    )
    name = f"{family}-{time.strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(6)}.parquet"
    store.put(f"{compacted_dir(store, experiment_id)}/{name}", sink.getvalue(), create_only=True)
    return CompactedFile(
        name,
        family,
        table.num_rows,
        distinct[0] if distinct else None,
        distinct[-1] if distinct else None,
        tuple(distinct) if len(distinct) <= MAX_LISTED_RUNS else None,
    )


def _remove_quietly(store: Store, experiment_id: str, files: list[CompactedFile]) -> None:
    for f in files:
        try:
            store.fs.rm_file(f"{compacted_dir(store, experiment_id)}/{f.name}")
        except Exception:  # noqa: BLE001 - gc removes it later anyway
            pass


def _read_files(store: Store, experiment_id: str, files: list[CompactedFile]) -> list[pa.Table]:
    from evtrack.store.log.snapshot import Snapshot

    snap = Snapshot(Manifest(experiment_id), list(files), [])
    return read_file_tables(store, snap)


def _level(rows: int) -> int:
    return int(math.log(max(rows, 1), FANOUT))


def _tier_merge(files: list[CompactedFile], family: str) -> list[CompactedFile]:
    """Files of one tier to merge now (FANOUT files of similar size), or none."""
    by_level: dict[int, list[CompactedFile]] = defaultdict(list)
    for f in files:
        if f.family == family and (family == "reduced" or f.rows < BIG_FILE_ROWS):
            by_level[_level(f.rows)].append(f)
    for level in sorted(by_level):
        if len(by_level[level]) >= FANOUT:
            return by_level[level]
    return []


# -- compaction -------------------------------------------------------------------------------


def _compact(
    store: Store,
    experiment_id: str,
    runs: frozenset[str] | None,
    *,
    merge_all: bool,
    attempts: int,
) -> CompactionResult:
    """Cover the uncovered segments of some runs (or of the whole experiment) with new files."""
    started = time.perf_counter()
    run_id = next(iter(runs)) if runs is not None and len(runs) == 1 else None
    result = CompactionResult(experiment_id, run_id, 0, batch=runs is not None and run_id is None)
    for _attempt in range(attempts):
        # One run: a listing of its own segments (a prefix); several: one of them all.
        snap = take_snapshot(store, experiment_id, run_id)
        if runs is not None and run_id is None:
            snap.segments = [(p, s) for p, s in snap.segments if s.scope in runs]
        base = snap.manifest
        result.version = base.version
        # Many small segments (an experiment's sweep) are decoded together, not into a
        # table each; a run's few are decoded and cached one by one, for the reads after.
        read = read_segments_together if len(snap.segments) > 64 else read_segment_tables
        try:
            new_tables, segs = read(store, snap.segments)
        except FileNotFoundError:
            continue  # a segment vanished: only gc deletes, and only covered ones; relist
        full_in, reduced_in = _inputs(base, runs, merge_all)
        if not segs and (not merge_all or (len(full_in) <= 1 and len(reduced_in) <= 1)):
            break  # nothing new to cover and nothing to merge
        written: list[CompactedFile] = []
        try:
            new_events = _concat(new_tables)
            full_tables = _read_files(store, experiment_id, full_in) if full_in else []
            full = _write(
                store, experiment_id, "full", sort_events(_concat([*full_tables, new_events]))
            )
            written.append(full)
            reduced_tables = _read_files(store, experiment_id, reduced_in) if reduced_in else []
            reduced = _write(
                store,
                experiment_id,
                "reduced",
                reduce_events(_concat([*reduced_tables, new_events])),
            )
            written.append(reduced)
            manifest = commit(
                store,
                base,
                remove=[f.name for f in [*full_in, *reduced_in]],
                add=written,
                cover=[s for _, s in segs],
                operation="compact_experiment"
                if merge_all
                else ("compact_run" if run_id is not None else "compact_runs"),
            )
        except FileNotFoundError:
            _remove_quietly(store, experiment_id, written)
            continue  # an input file was collected: start again from the newest manifest
        except Conflict:
            _remove_quietly(store, experiment_id, written)
            continue
        result.version = manifest.version
        result.segments = len(segs)
        result.runs = len({s.scope for _, s in segs}) if runs is not None else 0
        result.events = new_events.num_rows
        result.files_written = [f.name for f in written]
        result.files_replaced = [f.name for f in [*full_in, *reduced_in]]
        _merge_tiers(store, experiment_id, manifest)
        break
    else:
        result.gave_up = True
        _log.info("evtrack: compaction of %s/%s gave up: lost every race", experiment_id, run_id)
    result.seconds = time.perf_counter() - started
    return result


def _inputs(
    base: Manifest, runs: frozenset[str] | None, merge_all: bool
) -> tuple[list[CompactedFile], list[CompactedFile]]:
    """Existing files that this compaction folds into its new ones."""
    if merge_all or runs is None:
        full, budget = [], MERGE_BUDGET_ROWS
        for f in sorted(base.full, key=lambda f: f.rows):
            if f.rows < BIG_FILE_ROWS and f.rows <= budget:
                full.append(f)
                budget -= f.rows
        return full, base.reduced
    # One run: fold in the run's own small full file(s), so a run compacted several times
    # (compactor loops, resumed runs) keeps one file.
    own = [f for f in base.full if f.runs and set(f.runs) <= runs and f.rows < BIG_FILE_ROWS]
    return own, []


def _merge_tiers(store: Store, experiment_id: str, manifest: Manifest) -> None:
    """Merge FANOUT similar-sized files of a family (best effort; a lost race is fine)."""
    for family in ("reduced", "full"):
        for _ in range(4):
            group = _tier_merge(list(manifest.files), family)
            if not group:
                break
            written: list[CompactedFile] = []
            try:
                tables = _read_files(store, experiment_id, group)
                merged = _concat(tables)
                merged = sort_events(merged) if family == "full" else reduce_events(merged)
                written.append(_write(store, experiment_id, family, merged))
                manifest = commit(
                    store,
                    manifest,
                    remove=[f.name for f in group],
                    add=written,
                    operation=f"merge_{family}",
                )
            except (Conflict, FileNotFoundError):
                _remove_quietly(store, experiment_id, written)
                return


def compact_run(
    store: Store, experiment_id: str, run_id: str, *, attempts: int = 5
) -> CompactionResult:
    """Cover a run's uncovered segments with a sorted full file and a reduced file.

    Cheap for a run with few events (one small file of each family and a manifest).
    Safe to run concurrently with writers, readers and other compactions.
    """
    return _compact(store, experiment_id, frozenset((run_id,)), merge_all=False, attempts=attempts)


def compact_runs(
    store: Store, experiment_id: str, run_ids: Iterable[str], *, attempts: int = 5
) -> CompactionResult:
    """Cover the uncovered segments of several runs of an experiment with one pair of files.

    What a sweep's ended runs want: one listing, one full and one reduced file and one
    manifest commit for the batch, where :func:`compact_run` per run would cost a
    listing, two files and a commit each, and readers would open a file per run until
    tier merges caught up. Segments of other runs (still running, or not asked for) are
    left uncovered. Safe to run concurrently with writers, readers and other compactions.
    """
    runs = frozenset(run_ids)
    if not runs:
        return CompactionResult(experiment_id, None, 0, batch=True)
    return _compact(store, experiment_id, runs, merge_all=False, attempts=attempts)


def compact_experiment(store: Store, experiment_id: str, *, attempts: int = 5) -> CompactionResult:
    """Cover every uncovered segment of an experiment and merge its files.

    Afterwards an experiment has one reduced file and one full file (plus full files of
    more than :data:`BIG_FILE_ROWS` rows, which are left as they are).
    """
    return _compact(store, experiment_id, None, merge_all=True, attempts=attempts)


def compact_all(store: Store) -> list[CompactionResult]:
    """:func:`compact_experiment` for every experiment of the store."""
    return [compact_experiment(store, e) for e in store.list_experiment_ids()]


def covered_segments(store: Store, experiment_id: str) -> list[tuple[str, SegmentName]]:
    """Visible segments that the newest manifest covers (what gc may delete)."""
    manifest = read_manifest(store, experiment_id)
    return [(p, s) for p, s in list_segments(store, experiment_id) if manifest.coverage.covers(s)]
