"""Snapshots: what a reader sees of an experiment at one moment.

A snapshot is the newest manifest (see :mod:`evtrack.store.log.manifest`) plus every segment it
does not cover. Readers take the manifest first and list the segments second; either
order is safe against a compaction (a segment is covered only once its events are in a
published file) and the ``(writer, seq)`` identity of each event is in exactly one place.

Failures a reader meets and what it does:

* a file removed by ``evtrack gc`` between listing and reading: :class:`FileNotFoundError`,
  and :func:`read_events` starts again from a fresh listing (after five such attempts it
  raises :class:`~evtrack.errors.StoreUnavailable`, a transient error: try again);
* a damaged segment (disk fault, hand edit, a copy cut short): a warning is logged once
  per process, the file is counted in :func:`damaged_files` and skipped; every other
  event is still read. ``evtrack doctor`` reports it, ``--repair`` sets it aside;
* a damaged compacted file: the experiment is read from its segments alone, ignoring the
  manifest (correct while gc has not yet removed the replaced segments);
  ``evtrack doctor --repair`` rebuilds the file.

Listings are never cached (a live reader sees new segments at once); decoded files are,
by path, since no file changes once it is visible.
"""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from evtrack.errors import StoreError, StoreUnavailable
from evtrack.store.log.events import COLUMNS, DICTIONARY_COLUMNS, empty_table, event_schema
from evtrack.store.log.manifest import CompactedFile, Manifest, compacted_dir, read_manifest
from evtrack.store.log.segments import SegmentName, decode, decode_jsonl_many, parse_name

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa
    import pyarrow.parquet as pq

    from evtrack.store.log.layout import Store

__all__ = [
    "Snapshot",
    "count_events",
    "damaged_files",
    "decode_compacted",
    "fetch",
    "list_segments",
    "read_events",
    "read_experiment_events",
    "read_file_tables",
    "read_segment_tables",
    "read_segments_together",
    "take_snapshot",
]

_log = logging.getLogger(__name__)

T = TypeVar("T")

_DAMAGED: dict[str, str] = {}
_DAMAGED_LOCK = threading.Lock()


def damaged_files() -> dict[str, str]:
    """Damaged files this process met while reading (path → reason)."""
    with _DAMAGED_LOCK:
        return dict(_DAMAGED)


def _report_damaged(path: str, reason: str) -> None:
    with _DAMAGED_LOCK:
        first = path not in _DAMAGED
        _DAMAGED[path] = reason
    if first:
        _log.warning("evtrack: skipping damaged file (run `evtrack doctor`): %s", reason)


class DamagedCompactedFile(StoreError):
    """A compacted file that cannot be decoded."""


# -- listing ------------------------------------------------------------------------------

_NAMES: dict[str, SegmentName | None] = {}


def _parse(name: str) -> SegmentName | None:
    seg = _NAMES.get(name, False)
    if seg is False:
        if len(_NAMES) > 2_000_000:
            _NAMES.clear()
        seg = _NAMES[name] = parse_name(name)
    return seg  # type: ignore[return-value]


def list_segments(
    store: Store, experiment_id: str, scope: str | None = None
) -> list[tuple[str, SegmentName]]:
    """Visible segments of an experiment (of one run, or ``"_"``): one listing."""
    folder = store.events_dir(experiment_id)
    prefix = None if scope is None else scope + "."
    out = []
    for name in store.listdir(folder):
        if prefix is not None and not name.startswith(prefix):
            continue
        seg = _parse(name)
        if seg is not None:
            out.append((f"{folder}/{name}", seg))
    return out


# -- snapshots ----------------------------------------------------------------------------


@dataclass
class Snapshot:
    """The newest manifest of an experiment and the segments it does not cover."""

    manifest: Manifest
    files: list[CompactedFile]  # the family read: full (history) or reduced
    segments: list[tuple[str, SegmentName]]  # uncovered, visible segments

    def file_path(self, store: Store, f: CompactedFile) -> str:
        return f"{compacted_dir(store, self.manifest.experiment_id)}/{f.name}"


def take_snapshot(
    store: Store,
    experiment_id: str,
    run_id: str | None = None,
    history: bool = True,
    use_manifest: bool = True,
) -> Snapshot:
    manifest = read_manifest(store, experiment_id) if use_manifest else Manifest(experiment_id)
    coverage = manifest.coverage
    segments = [
        (p, s) for p, s in list_segments(store, experiment_id, run_id) if not coverage.covers(s)
    ]
    files = manifest.full if history else manifest.reduced
    if run_id is not None:
        files = [f for f in files if f.may_hold(run_id)]
    return Snapshot(manifest, files, segments)


# -- reading files ------------------------------------------------------------------------


def fetch(store: Store, paths: list[str]) -> dict[str, bytes | BaseException]:
    """File contents by path; errors are returned, not raised (one batch on object stores)."""
    if not paths:
        return {}
    if store.is_local:
        # Local files are read with open(): fsspec's per-call path handling cost more
        # than the read itself for the thousands of small segments of a first search.
        out: dict[str, bytes | BaseException] = {}
        for p in paths:
            try:
                out[p] = _read_local(p)
            except Exception as exc:  # noqa: BLE001 - returned to the caller
                out[p] = exc
        return out
    known: dict[str, bytes | BaseException] = {}
    if store.recent is not None:
        for p in paths:
            data = store.recent.get(p)
            if data is not None:
                known[p] = data
        paths = [p for p in paths if p not in known]
    if len(paths) == 1:
        try:
            known[paths[0]] = store.read_bytes(paths[0])
        except Exception as exc:  # noqa: BLE001 - returned to the caller
            known[paths[0]] = exc
    elif paths:
        got = store.fs.cat(paths, on_error="return")
        known.update((p, got.get(p, FileNotFoundError(p))) for p in paths)
    return known


def _read_local(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def decode_compacted(data: bytes, where: str, run_id: str | None = None) -> pa.Table:
    """A compacted Parquet file as an event table (only ``run_id``'s rows if given)."""
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(io.BytesIO(data), read_dictionary=DICTIONARY_COLUMNS)
        groups = _row_groups(pf, run_id)
        table = pf.read_row_groups(groups) if groups is not None else pf.read()
        return _conform(table, run_id)
    except Exception as exc:  # noqa: BLE001 - any decoding failure means a damaged file
        raise DamagedCompactedFile(f"cannot read {where}: {exc}") from exc


def _row_groups(pf: pq.ParquetFile, run_id: str | None) -> list[int] | None:
    """Row groups whose run_id statistics may hold ``run_id`` (files are sorted by run)."""
    if run_id is None:
        return None
    md = pf.metadata
    col = md.schema.names.index("run_id")
    keep = []
    for i in range(md.num_row_groups):
        stats = md.row_group(i).column(col).statistics
        if stats is None or not stats.has_min_max or stats.min <= run_id <= stats.max:
            keep.append(i)
    return keep


def _conform(table: pa.Table, run_id: str | None) -> pa.Table:
    schema = event_schema()
    table = table.select([name for name, _ in COLUMNS])
    if not table.schema.equals(schema):
        table = table.cast(schema)
    if run_id is not None and table.num_rows:
        from evtrack.store.log.columns import column_equals  # no pandas (see there)

        table = table.filter(column_equals(table["run_id"], run_id))
    return table


def _read_compacted_ranged(store: Store, path: str, run_id: str) -> pa.Table:
    """Only the row groups of one run, with ranged reads (big multi-run files)."""
    import pyarrow.parquet as pq

    try:
        with store.fs.open(path, "rb") as fh:
            pf = pq.ParquetFile(fh, read_dictionary=DICTIONARY_COLUMNS)
            groups = _row_groups(pf, run_id)
            table = pf.read_row_groups(groups) if groups else empty_table(pf.schema_arrow)
        return _conform(table, run_id)
    except FileNotFoundError:
        raise
    except Exception as exc:  # noqa: BLE001 - any decoding failure means a damaged file
        raise DamagedCompactedFile(f"cannot read {path}: {exc}") from exc


_RANGED_MIN_ROWS = 1_000_000


def read_file_tables(store: Store, snap: Snapshot, run_id: str | None = None) -> list[pa.Table]:
    """The compacted files of a snapshot as tables (cached by path)."""
    out: list[pa.Table] = []
    whole: list[tuple[str, CompactedFile]] = []
    for f in snap.files:
        path = snap.file_path(store, f)
        single = run_id is None or f.runs == (run_id,)
        key = path if single else f"{path}#{run_id}"
        cached = store.cache.get(key)
        if cached is not None:
            out.append(cached)
        elif not single and f.rows >= _RANGED_MIN_ROWS:
            table = _read_compacted_ranged(store, path, run_id)  # type: ignore[arg-type]
            store.cache.put(key, table)
            out.append(table)
        else:
            whole.append((key, f))
    if whole:
        blobs = fetch(store, [snap.file_path(store, f) for _, f in whole])
        for key, f in whole:
            path = snap.file_path(store, f)
            data = blobs[path]
            if isinstance(data, BaseException):
                raise data
            single = key == path
            table = decode_compacted(data, path, None if single else run_id)
            store.cache.put(key, table)
            out.append(table)
    return out


def read_segment_tables(
    store: Store, segments: list[tuple[str, SegmentName]]
) -> tuple[list[pa.Table], list[tuple[str, SegmentName]]]:
    """Decode segments, skipping (and reporting) damaged ones; returns (tables, read).

    :class:`FileNotFoundError` if one vanished since the listing (the caller relists).
    """
    tables: list[pa.Table] = []
    read: list[tuple[str, SegmentName]] = []
    missing = []
    for p, s in segments:
        cached = store.cache.get(p)
        if cached is None:
            missing.append((p, s))
        else:
            tables.append(cached)
            read.append((p, s))
    blobs = fetch(store, [p for p, _ in missing])
    payloads: dict[str, bytes] = {}
    for p, _ in missing:
        data = blobs[p]
        if isinstance(data, FileNotFoundError):
            raise FileNotFoundError(p)
        if isinstance(data, BaseException):
            raise data
        payloads[p] = data
    batch = _decode_jsonl_batch(store, [(p, payloads[p]) for p, s in missing if s.ext == "jsonl"])
    for p, s in missing:
        if p in batch:
            tables.append(batch[p])
            read.append((p, s))
            continue
        try:
            table = decode(payloads[p], s.ext, where=p)
        except StoreError as exc:
            _report_damaged(p, str(exc))
            continue
        store.cache.put(p, table)
        tables.append(table)
        read.append((p, s))
    return tables, read


def read_segments_together(
    store: Store, segments: list[tuple[str, SegmentName]]
) -> tuple[list[pa.Table], list[tuple[str, SegmentName]]]:
    """The events of many segments as a few tables, and which segments were read.

    For a reader that keeps its own state (the run index, a compaction): unlike
    :func:`read_segment_tables` nothing is cached per segment and the JSONL ones are
    decoded into one table — a first search over 10,000 uncompacted runs reads 20,000 of
    them, and a table per segment cost ~15 KB of memory apiece outside Arrow's pool. A
    damaged segment makes it fall back to :func:`read_segment_tables`, which skips and
    reports it (it is then not among those read). :class:`FileNotFoundError` if one
    vanished since the listing.
    """
    jsonl = [(p, s) for p, s in segments if s.ext == "jsonl" and store.cache.get(p) is None]
    if len(jsonl) < 2:
        return read_segment_tables(store, segments)
    fetched = fetch(store, [p for p, _ in jsonl])
    blobs: list[bytes] = []
    for p, _ in jsonl:
        data = fetched[p]
        if isinstance(data, FileNotFoundError):
            raise FileNotFoundError(p)
        if isinstance(data, BaseException):
            raise data
        blobs.append(data)
    del fetched
    try:
        (table,) = decode_jsonl_many(blobs, whole=True)
    except StoreError:
        return read_segment_tables(store, segments)
    del blobs
    done = {p for p, _ in jsonl}
    rest, read = read_segment_tables(store, [(p, s) for p, s in segments if p not in done])
    return [table, *rest], [*jsonl, *read]


def _decode_jsonl_batch(store: Store, items: list[tuple[str, bytes]]) -> dict[str, pa.Table]:
    """Decode small JSONL segments together (see segments.decode_jsonl_many) and cache
    them; empty if any is damaged, so the caller decodes one by one and reports it."""
    if len(items) < 2:
        return {}
    try:
        tables = decode_jsonl_many([data for _, data in items])
    except StoreError:
        return {}
    out = {}
    for (p, _), table in zip(items, tables):
        store.cache.put(p, table)
        out[p] = table
    return out


def relisting(store: Store, read: Callable[[], T], attempts: int = 5) -> T:
    """``read()``, again from a fresh listing while a file it listed is gone when read.

    Only gc deletes, and only what a newer manifest covers, so a read that lost such a
    race sees the new state on its next listing. :class:`StoreUnavailable` after
    ``attempts`` losses in a row.
    """
    for attempt in range(attempts):
        try:
            return read()
        except FileNotFoundError as exc:
            if attempt == attempts - 1:
                raise StoreUnavailable(
                    f"The store at {store.uri} kept changing while it was read (a file "
                    f"listed was gone when read, {attempts} times: {exc}). Another process "
                    "is compacting or collecting garbage; try again."
                ) from exc
    raise AssertionError("unreachable")


def read_events(
    store: Store,
    experiment_ids: list[str] | None = None,
    run_id: str | None = None,
    history: bool = True,
    attempts: int = 5,
) -> pa.Table:
    """Events of some experiments (default: all) or one run, as one Arrow table."""
    import pyarrow as pa

    def read() -> list[pa.Table]:
        ids = store.list_experiment_ids() if experiment_ids is None else experiment_ids
        tables: list[pa.Table] = []
        for experiment_id in ids:
            tables.extend(_experiment_tables(store, experiment_id, run_id, history))
        return [t for t in tables if t.num_rows]

    tables = relisting(store, read, attempts)
    if not tables:
        return empty_table()
    if len(tables) == 1:
        return tables[0]
    table = pa.concat_tables(tables)
    # DuckDB scans an Arrow table chunk by chunk: thousands of tiny chunks (one per
    # segment) made a search over 10,000 uncompacted runs ~50x slower.
    return table.combine_chunks() if len(tables) > 16 else table


def count_events(
    store: Store, experiment_ids: list[str], kind: str, attempts: int = 5
) -> int | None:
    """How many events of ``kind`` some experiments hold, every one counted once.

    Reads only each Parquet file's ``kind`` column (dictionary-encoded: a few bytes per
    row group), where a full read decodes every column: counting the 10 M metric points
    of an import took 4.6 s through the views. None if a file is damaged: the caller
    counts through the views, which skip and report it.
    """
    import pyarrow.parquet as pq

    from evtrack.store.log.columns import column_equals

    def count(data: bytes, path: str) -> int:
        if path.endswith(".jsonl"):
            column = decode(data, "jsonl", where=path).column("kind")
        else:
            pf = pq.ParquetFile(io.BytesIO(data), read_dictionary=DICTIONARY_COLUMNS)
            column = pf.read(columns=["kind"]).column("kind")
        return sum(chunk.true_count for chunk in column_equals(column, kind).chunks)

    def read() -> int:
        total = 0
        for experiment_id in experiment_ids:
            snap = take_snapshot(store, experiment_id)
            paths = [snap.file_path(store, f) for f in snap.files]
            paths += [p for p, _ in snap.segments]
            blobs = fetch(store, paths)
            for path in paths:
                data = blobs[path]
                if isinstance(data, BaseException):
                    raise data
                total += count(data, path)
        return total

    try:
        return relisting(store, read, attempts)
    except (StoreError, ValueError, OSError) as exc:
        if isinstance(exc, StoreUnavailable):
            raise  # kept changing: not a damaged file
        return None  # damaged: left to the views' read, which reports it


def read_experiment_events(store: Store, experiment_ids: list[str], attempts: int = 5) -> pa.Table:
    """Only the experiments' own events (name, stage, tags...), never their runs'.

    What ``get_experiment`` and ``create_run`` need; reading every run's events for it
    made run creation slow down as an experiment grew. Segments are the ``_`` scope
    ones; from compacted (reduced) files, which mix all runs, the rows without a run
    are kept (files are decoded once per process and cached, so this is a filter).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    def read() -> list[pa.Table]:
        tables: list[pa.Table] = []
        for experiment_id in experiment_ids:
            snap = take_snapshot(store, experiment_id, "_", history=False)
            manifest = snap.manifest
            files = Snapshot(manifest, list(manifest.reduced), [])
            try:
                whole = read_file_tables(store, files)
            except DamagedCompactedFile:
                tables.append(read_events(store, [experiment_id], None, False))
                continue
            tables.extend(t.filter(pc.is_null(t["run_id"])) for t in whole)
            tables.extend(read_segment_tables(store, snap.segments)[0])
        return [t for t in tables if t.num_rows]

    tables = relisting(store, read, attempts)
    if not tables:
        return empty_table()
    return pa.concat_tables(tables) if len(tables) > 1 else tables[0]


def _experiment_tables(
    store: Store, experiment_id: str, run_id: str | None, history: bool
) -> list[pa.Table]:
    snap = take_snapshot(store, experiment_id, run_id, history)
    try:
        files = read_file_tables(store, snap, run_id)
    except DamagedCompactedFile as exc:
        _report_damaged(str(exc), str(exc))
        snap = take_snapshot(store, experiment_id, run_id, history, use_manifest=False)
        files = []
    segments, _ = read_segment_tables(store, snap.segments)
    return files + segments
