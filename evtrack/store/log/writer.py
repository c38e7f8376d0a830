"""The writer: where log calls land, and how they become segments.

Each process has one :class:`Writer` per store, with a random id. Log calls only
append to in-memory buffers; a background thread flushes them every
``flush_interval`` seconds (or sooner when ``buffer_events`` are waiting), writing one
segment per run touched. :meth:`Writer.flush` does the same synchronously and is what
``end_run()``, ``synchronous=True``, every read and interpreter exit call.

Durability window: events logged since the last flush live only in this process. A
``kill -9`` loses at most ``flush_interval`` seconds (and at most ``buffer_events``
events) of them; everything flushed before is readable.

Failures are of two kinds (see :attr:`evtrack.errors.EvtrackError.retryable`):

* **transient** (a store or server that is down, throttling, a 5xx): the segment stays
  at the head of the queue and is retried under the same name, so a retry never writes
  an event twice. The background thread backs off exponentially (up to 30 s) while
  the failure lasts; a synchronous :meth:`Writer.flush` raises the error and keeps the
  events queued.
* **permanent** (a server's 4xx: the run was deleted, the segment is invalid or too
  large): that segment alone leaves the queue; later segments are not held up. A
  segment refused as too large is first split into pieces that fit (the server's limit
  is learnt from its answer) and the pieces sent under fresh names. What is still
  refused is kept in the sink's spool folder when it has one (``evtrack sync`` resends
  it once the cause is fixed), logged as an error, and raised as
  :class:`~evtrack.errors.SegmentRefused` from the next :meth:`Writer.flush` naming that
  run (``end_run``, ``synchronous=True``) or from ``evtrack.flush()``.

Small segments (up to ``jsonl_max_events`` events, no metric arrays) are encoded as
JSONL with the standard library, so a short script never imports pyarrow; larger ones
are built as Arrow tables and written as Parquet.

Forks: a forked child gets a fresh writer id, drops the parent's buffered events (the
parent writes those), and restarts the background thread at once, so points logged in
the child are flushed without any call from the hot path. ``multiprocessing`` children
leave through ``os._exit`` (no ``atexit``); a ``multiprocessing`` finaliser flushes them
instead. A worker killed by ``Pool.terminate()`` (SIGTERM, as leaving ``with Pool()``
does) loses what it logged in its last ``flush_interval``: end runs in the worker, or
``close()`` and ``join()`` the pool, to make everything durable.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import secrets
import sys
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from evtrack import settings
from evtrack.clock import now_ms
from evtrack.errors import SegmentRefused

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Iterable, Sequence
    from typing import TypeAlias

    import pyarrow as pa

    from evtrack.store.log.layout import Store

    # A buffered non-metric event: (time, kind, key, value, text).
    _Event: TypeAlias = tuple[int, str, str, Any, Any]
    # Keyed by (experiment_id, run_id or "_"): what _take_buffers hands to a flush.
    _EventBuffers: TypeAlias = dict[tuple[str, str], list[_Event]]
    _ArrayBuffers: TypeAlias = dict[tuple[str, str], list[pa.Table]]
    _MetricChunks: TypeAlias = dict[tuple[str, str], list[Any]]

__all__ = ["Writer", "close_writer", "flush_all", "get_writer"]

_log = logging.getLogger(__name__)

_WRITERS: dict[int, Writer] = {}  # id(store) -> writer; the writer keeps its store alive
_WRITERS_LOCK = threading.Lock()
_MAX_BACKOFF = 30.0


def get_writer(store: Store) -> Writer:
    """The process's writer for ``store`` (made on first use, until :func:`close_writer`)."""
    with _WRITERS_LOCK:
        writer = _WRITERS.get(id(store))
        if writer is None or writer.store is not store:
            writer = _WRITERS[id(store)] = Writer(store)
        return writer


def close_writer(store: Store) -> None:
    """Flush and stop ``store``'s writer, if it has one (:meth:`Store.close` calls this)."""
    with _WRITERS_LOCK:
        writer = _WRITERS.get(id(store))
        if writer is None or writer.store is not store:
            return
        del _WRITERS[id(store)]
    writer.close()


@dataclass
class _Segment:
    """A built segment waiting to be written."""

    path: str
    data: bytes
    experiment_id: str
    scope: str  # run id, or "_" for an experiment's own events
    ext: str
    events: int


class Writer:
    """Buffers events for one store and flushes them as segments."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.id = secrets.token_hex(8)
        self._seq = 0  # next event sequence number
        self._segments = 0  # next segment number
        # (experiment_id, run_id) -> flat list key, value, step, timestamp, key, value...
        # The hot path extends it by one 4-tuple at a time: a single atomic C call, and
        # no tuple kept alive, so the garbage collector has nothing to scan.
        self._metrics: dict[tuple[str, str], list[Any]] = {}
        # How many holders (active runs) keep a reference to each metric list: a list
        # someone holds is never dropped, so their points cannot land in a lost list.
        self._holders: dict[tuple[str, str], int] = {}
        # (experiment_id, run_id or "_") -> list of (time, kind, key, value, text)
        self._events: _EventBuffers = {}
        # (experiment_id, run_id) -> list of Arrow tables of metric arrays
        self._arrays: dict[tuple[str, str], list[pa.Table]] = {}
        # segments built but not yet written (a failed flush)
        self._pending: list[_Segment] = []
        # run id -> refusals not yet reported to a caller
        self._refused: dict[str, list[SegmentRefused]] = {}
        # run id -> events this writer has made durable (end_run's compaction rule)
        self._written: dict[str, int] = {}
        # Largest segment the store takes (an evtrack server's ingest limit), if any.
        self.max_segment_bytes: int | None = getattr(store, "max_segment_bytes", None)
        self._flush_lock = threading.Lock()
        self._buffer_lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._interval = settings.get("flush_interval")
        self.buffer_limit = settings.get("buffer_events")
        self._jsonl_max = settings.get("jsonl_max_events")
        self.last_error: BaseException | None = None
        _ALL[id(self)] = self

    def __repr__(self) -> str:
        return f"Writer({self.store!r}, id={self.id!r})"

    # -- the hot path --------------------------------------------------------------

    def metric_buffer(self, experiment_id: str, run_id: str) -> list[Any]:
        """The flat list that metric points are added to, four items per point; held.

        Callers keep this list and call ``buf.extend((key, value, step, timestamp))``
        directly: one ``extend`` is atomic under the GIL, so points from several threads
        never interleave, and :meth:`flush` only ever removes a prefix of the list. The
        caller owns a hold on the list until :meth:`drop_metric_buffer`; callers that add
        points once should use :meth:`add_points` instead.
        """
        key = (experiment_id, run_id)
        with self._buffer_lock:
            buf = self._metrics.get(key)
            if buf is None:
                buf = self._metrics[key] = []
            self._holders[key] = self._holders.get(key, 0) + 1
        self._ensure_thread()
        return buf

    def drop_metric_buffer(self, experiment_id: str, run_id: str) -> None:
        """Give up a hold taken by :meth:`metric_buffer` (an active run has ended)."""
        key = (experiment_id, run_id)
        with self._buffer_lock:
            held = self._holders.get(key, 0) - 1
            if held > 0:
                self._holders[key] = held
                return
            self._holders.pop(key, None)
        self.release(experiment_id, run_id)

    def add_points(
        self, experiment_id: str, run_id: str, flat: list[Any] | tuple[Any, ...]
    ) -> None:
        """Buffer metric points given flat (``key, value, step, timestamp, key, ...``)."""
        key = (experiment_id, run_id)
        with self._buffer_lock:
            buf = self._metrics.get(key)
            if buf is None:
                buf = self._metrics[key] = []
            buf.extend(flat)
        self._ensure_thread()
        if len(buf) >= 4 * self.buffer_limit:
            self.wake()

    def release(self, experiment_id: str, run_id: str) -> None:
        """Forget an ended run's (empty, unheld) metric buffer so flushes stop visiting it.

        A process that runs thousands of runs (a sweep, a tracking server) would
        otherwise scan every buffer it ever made on every flush. A later log call to
        the run simply gets a new buffer.
        """
        key = (experiment_id, run_id)
        with self._buffer_lock:
            buf = self._metrics.get(key)
            if buf is not None and not buf and not self._holders.get(key):
                del self._metrics[key]
                self._written.pop(run_id, None)

    def written(self, run_id: str) -> int:
        """How many events of ``run_id`` this writer has made durable (until released)."""
        return self._written.get(run_id, 0)

    def add(
        self,
        experiment_id: str,
        run_id: str | None,
        kind: str,
        key: str,
        text: str | None = None,
        value: float | None = None,
        time_ms: int | None = None,
    ) -> None:
        """Buffer one non-metric event (param, tag, run or experiment attribute...)."""
        scope = (experiment_id, run_id or "_")
        event = (time_ms if time_ms is not None else now_ms(), kind, key, value, text)
        with self._buffer_lock:
            self._events.setdefault(scope, []).append(event)
        self._ensure_thread()

    def add_arrays(self, experiment_id: str, run_id: str, table: pa.Table) -> None:
        """Buffer a whole metric series (columns key, value, step, timestamp)."""
        with self._buffer_lock:
            self._arrays.setdefault((experiment_id, run_id), []).append(table)
        self._ensure_thread()
        if table.num_rows >= self.buffer_limit:
            self.wake()

    def wake(self) -> None:
        """Ask the background thread to flush now (the buffer is full)."""
        self._wake.set()

    # -- flushing ------------------------------------------------------------------

    def flush(self, run_id: str | None = None) -> None:
        """Write every buffered event as segments; returns when they are visible.

        A transient failure raises (its ``retryable`` is true) and keeps the events
        queued. With ``run_id``, segments of that run that the store refused for good
        since the last report raise :class:`~evtrack.errors.SegmentRefused`; refusals
        of other runs are left for their own callers.
        """
        with self._flush_lock:
            self._build_segments()
            self._write_pending()
        if run_id is not None and run_id in self._refused:
            self._raise_refused([run_id])

    def raise_refused(self) -> None:
        """Raise every refusal not yet reported (``evtrack.flush()``)."""
        if self._refused:
            self._raise_refused(list(self._refused))

    def _raise_refused(self, run_ids: list[str]) -> None:
        errors = [e for r in run_ids for e in self._refused.pop(r, ())]
        if not errors:
            return
        if len(errors) == 1:
            raise errors[0]
        first = errors[0]
        raise SegmentRefused(
            f"{len(errors)} segments ({sum(e.events for e in errors)} events) were refused; "
            f"the first: {first.message}",
            error_code=first.error_code,
            events=sum(e.events for e in errors),
        )

    def has_pending(self) -> bool:
        return bool(self._pending or self._events or self._arrays or any(self._metrics.values()))

    def _take_buffers(self) -> tuple[_EventBuffers, _ArrayBuffers, _MetricChunks]:
        with self._buffer_lock:
            events, self._events = self._events, {}
            arrays, self._arrays = self._arrays, {}
            metric_chunks: _MetricChunks = {}
            for scope, buf in self._metrics.items():
                n = len(buf) // 4 * 4
                if n:
                    metric_chunks[scope] = buf[:n]
                    del buf[:n]
        return events, arrays, metric_chunks

    def _put_back(
        self, events: _EventBuffers, arrays: _ArrayBuffers, metric_chunks: _MetricChunks
    ) -> None:
        """Return taken buffers in front of whatever was logged meanwhile."""
        with self._buffer_lock:
            for scope, evs in events.items():
                self._events[scope] = evs + self._events.get(scope, [])
            for scope, tables in arrays.items():
                self._arrays[scope] = tables + self._arrays.get(scope, [])
            for scope, chunk in metric_chunks.items():
                buf = self._metrics.get(scope)
                if buf is None:
                    buf = self._metrics[scope] = []
                buf[0:0] = chunk  # one C call: atomic against the hot path's extend

    def _build_segments(self) -> None:
        events, arrays, metric_chunks = self._take_buffers()
        if not (events or arrays or metric_chunks):
            return
        seq, segments = self._seq, self._segments
        built: list[_Segment] = []
        try:
            for scope in dict.fromkeys([*events, *metric_chunks, *arrays]):
                built.extend(
                    self._encode_scope(
                        scope, events.get(scope, ()), metric_chunks.get(scope), arrays.get(scope)
                    )
                )
        except BaseException:
            # Nothing built is queued and the counters rewind: the events go back to
            # the buffers and the next flush tries again with the same identities.
            self._seq, self._segments = seq, segments
            self._put_back(events, arrays, metric_chunks)
            raise
        self._pending.extend(built)

    def _encode_scope(
        self,
        scope: tuple[str, str],
        evs: Sequence[_Event],
        chunk: list[Any] | None,
        arrays: list[pa.Table] | None,
    ) -> list[_Segment]:
        experiment_id, run_id = scope
        n = len(evs) + (len(chunk) // 4 if chunk else 0)
        if not arrays and n <= self._jsonl_max:
            data = self._jsonl(scope, evs, chunk)
            return self._segments_for(experiment_id, run_id, "jsonl", data, n)
        from evtrack.store.log.segments import encode

        table = self._arrow(scope, evs, chunk, arrays or ())
        return self._segments_for(
            experiment_id, run_id, "parquet", encode(table, "parquet"), table.num_rows, table
        )

    def _segments_for(
        self,
        experiment_id: str,
        run_id: str,
        ext: str,
        data: bytes,
        events: int,
        table: pa.Table | None = None,
    ) -> list[_Segment]:
        """Name ``data`` as one segment, or as several if it exceeds the store's limit."""
        limit = self.max_segment_bytes
        if limit is not None and len(data) > limit and events > 1:
            return self._split(experiment_id, run_id, ext, data, events, limit, table)
        from evtrack.store.log.segments import SegmentName

        name = SegmentName(run_id, self.id, self._segments, ext).name
        self._segments += 1
        path = f"{self.store.events_dir(experiment_id)}/{name}"
        return [_Segment(path, data, experiment_id, run_id, ext, events)]

    def _split(
        self,
        experiment_id: str,
        run_id: str,
        ext: str,
        data: bytes,
        events: int,
        limit: int,
        table: pa.Table | None = None,
    ) -> list[_Segment]:
        """Pieces of a segment, each under ``limit`` bytes where one event allows."""
        from evtrack.store.log.segments import decode, encode

        out: list[_Segment] = []
        if ext == "jsonl":
            header, _, body = data.partition(b"\n")
            lines = body.splitlines(keepends=True)
            piece: list[bytes] = []
            size = len(header) + 1
            for line in lines:
                if piece and size + len(line) > limit:
                    out += self._segments_for(
                        experiment_id, run_id, ext, header + b"\n" + b"".join(piece), len(piece)
                    )
                    piece, size = [], len(header) + 1
                piece.append(line)
                size += len(line)
            out += self._segments_for(
                experiment_id, run_id, ext, header + b"\n" + b"".join(piece), len(piece)
            )
            return out
        if table is None:
            table = decode(data, ext)
        parts = max(2, -(-len(data) * 5 // (limit * 4)))  # aim at 80% of the limit
        step = -(-table.num_rows // parts)
        for start in range(0, table.num_rows, step):
            part = table.slice(start, step)
            out += self._segments_for(
                experiment_id, run_id, ext, encode(part, ext), part.num_rows, part
            )
        return out

    def _jsonl(
        self, scope: tuple[str, str], evs: Sequence[_Event], chunk: list[Any] | None
    ) -> bytes:
        """A JSONL segment straight from the buffered tuples (no pyarrow)."""
        from evtrack.store.log.segments import encode_jsonl_rows

        experiment_id, run = scope
        run_id = None if run == "_" else run
        seq = self._seq
        rows: list[dict[str, Any]] = []
        for t, kind, key, value, text in evs:
            row: dict[str, Any] = {"writer": self.id, "seq": seq, "time": t, "kind": kind}
            row["experiment_id"] = experiment_id
            if run_id is not None:
                row["run_id"] = run_id
            row["key"] = key
            if value is not None:
                row["value"] = value
            if text is not None:
                row["text"] = text
            rows.append(row)
            seq += 1
        if chunk:
            for i in range(0, len(chunk), 4):
                stamp = chunk[i + 3]
                rows.append(
                    {
                        "writer": self.id,
                        "seq": seq,
                        "time": stamp,
                        "kind": "metric",
                        "experiment_id": experiment_id,
                        "run_id": run_id,
                        "key": chunk[i],
                        "value": chunk[i + 1],
                        "step": chunk[i + 2],
                        "timestamp": stamp,
                    }
                )
                seq += 1
        self._seq = seq
        return encode_jsonl_rows(rows)

    def _arrow(
        self,
        scope: tuple[str, str],
        evs: Sequence[_Event],
        chunk: list[Any] | None,
        arrays: Iterable[pa.Table],
    ) -> pa.Table:
        import pyarrow as pa

        from evtrack.store.log.columns import metric_columns
        from evtrack.store.log.events import event_schema

        schema = event_schema()
        parts: list[pa.Table] = []
        if evs:
            times, kinds, keys, values, texts = zip(*evs)
            parts.append(self._table(schema, scope, kinds, keys, values, None, None, texts, times))
        if chunk:
            keys, values, steps, stamps = metric_columns(chunk)
            parts.append(
                self._table(schema, scope, "metric", keys, values, steps, stamps, None, stamps)
            )
        for arr in arrays:
            parts.append(
                self._table(
                    schema,
                    scope,
                    "metric",
                    arr["key"],
                    arr["value"],
                    arr["step"],
                    arr["timestamp"],
                    None,
                    arr["timestamp"],
                )
            )
        return parts[0] if len(parts) == 1 else pa.concat_tables(parts)

    def _table(
        self,
        schema: pa.Schema,
        scope: tuple[str, str],
        kinds: str | Sequence[str],
        keys: Any,
        values: Any,
        steps: Any,
        stamps: Any,
        texts: Any,
        times: Any,
    ) -> pa.Table:
        import numpy as np
        import pyarrow as pa

        from evtrack.store.log.columns import from_python, numeric, strings

        n = len(keys)
        first = self._seq
        self._seq += n
        experiment_id, run_id = scope

        dictionary = pa.dictionary(pa.int32(), pa.string())

        def col(data: Any, typ: pa.DataType) -> Any:
            if data is None:
                return pa.nulls(n, typ)
            if isinstance(data, (pa.Array, pa.ChunkedArray)):
                return data.cast(typ) if data.type != typ else data
            return from_python(data, typ)

        def const(value: str | None) -> Any:
            # A dictionary column holding one value n times: no per-row string.
            if value is None:
                return pa.nulls(n, dictionary)
            return pa.DictionaryArray.from_arrays(
                numeric(np.zeros(n, dtype=np.int32), pa.int32()), strings([value])
            )

        return pa.Table.from_arrays(
            [
                const(self.id),
                numeric(np.arange(first, first + n, dtype=np.int64), pa.int64()),
                col(times, pa.int64()),
                const(kinds) if isinstance(kinds, str) else col(kinds, dictionary),
                const(experiment_id),
                const(None if run_id == "_" else run_id),
                col(keys, dictionary),
                col(values, pa.float64()),
                col(steps, pa.int64()),
                col(stamps, pa.int64()),
                col(texts, pa.string()),
            ],
            schema=schema,
        )

    def _write_pending(self) -> None:
        while self._pending:
            seg = self._pending[0]
            try:
                self.store.put(seg.path, seg.data, create_only=not self.store.is_local)
            except FileExistsError:
                pass  # an earlier attempt did land: the name is ours alone
            except Exception as exc:
                if getattr(exc, "retryable", True):
                    raise  # transient: keep the queue as it is, retry later
                self._pending.pop(0)
                pieces = self._split_refused(seg, exc)
                if pieces:
                    self._pending[0:0] = pieces
                else:
                    self._refuse(seg, exc)
                continue
            self._pending.pop(0)
            self._written[seg.scope] = self._written.get(seg.scope, 0) + seg.events
            recent = getattr(self.store, "recent", None)  # an HTTP sink keeps none
            if recent is not None:
                recent.remember(seg.path, seg.data)

    def _split_refused(self, seg: _Segment, exc: BaseException) -> list[_Segment]:
        """Pieces of a segment refused as too large, if splitting can help."""
        limit = _size_limit(exc)
        if limit is None or seg.events < 2:
            return []
        # Leave room for the request's framing; learnt once, used for every later segment.
        limit = max(1024, int(limit * 0.9))
        if self.max_segment_bytes is None or limit < self.max_segment_bytes:
            self.max_segment_bytes = limit
        if len(seg.data) <= self.max_segment_bytes:
            return []  # it already fits: splitting would not change the answer
        return self._split(
            seg.experiment_id, seg.scope, seg.ext, seg.data, seg.events, self.max_segment_bytes
        )

    def _refuse(self, seg: _Segment, exc: BaseException) -> None:
        code = getattr(exc, "error_code", "INTERNAL_ERROR")
        where = "kept"
        spool = getattr(self.store, "spool", None)
        if spool is not None:
            try:
                spool([(seg.path, seg.data)], refused=True)
                where = "kept in the spool folder (`evtrack sync` resends it)"
            except OSError as spool_exc:
                where = f"lost: it could not be spooled either ({spool_exc})"
        else:
            where = "dropped"
        error = SegmentRefused(
            f"{self.store.uri} refused segment {seg.path.rsplit('/', 1)[-1]} "
            f"({seg.events} events of run {seg.scope}) for good: {exc}. Not retried; {where}.",
            error_code=code,
            events=seg.events,
        )
        _log.error("evtrack: %s", error.message)
        self._refused.setdefault(seg.scope, []).append(error)

    # -- background thread -----------------------------------------------------------

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            with _WRITERS_LOCK:
                if self._closed:
                    # Logged to after close(): no thread, but the exit flush still sees it.
                    _ALL.setdefault(id(self), self)
                    return
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(
                        target=self._loop, name=f"evtrack-writer-{self.id}", daemon=True
                    )
                    self._thread.start()

    def _loop(self) -> None:
        failures = 0
        while not self._closed:
            wait = (
                self._interval if not failures else min(self._interval * 2**failures, _MAX_BACKOFF)
            )
            self._wake.wait(wait)
            self._wake.clear()
            if self._closed:
                return
            try:
                self.flush()
            except Exception as exc:  # noqa: BLE001 - keep the events, retry with backoff
                if self.last_error is None:
                    _log.warning("evtrack: flush to %s failed, will retry: %s", self.store.uri, exc)
                self.last_error = exc
                failures = min(failures + 1, 16)
            else:
                self.last_error = None
                failures = 0

    def close(self) -> None:
        """Flush, then stop the background thread.

        If the flush fails the error is raised and the events stay with the writer: the
        exit flush tries them once more (and a server's sink spools them).
        """
        try:
            self.flush()
        finally:
            self._closed = True
            self._wake.set()
            thread = self._thread
            if thread is not None and thread is not threading.current_thread():
                thread.join()
            self._thread = None
            if not self.has_pending():
                _ALL.pop(id(self), None)

    def _reset_after_fork(self) -> None:
        # A forked child must not reuse the parent's identity or its buffered events.
        self.id = secrets.token_hex(8)
        self._seq = 0
        self._segments = 0
        # Keep the metric lists themselves: active runs hold references to them and keep
        # logging into them in the child. Only the parent's buffered points are dropped.
        for buf in self._metrics.values():
            del buf[:]
        self._events = {}
        self._arrays = {}
        self._pending = []
        self._refused = {}
        self._written = {}
        self._flush_lock = threading.Lock()
        self._buffer_lock = threading.Lock()
        self._wake = threading.Event()
        had_thread, self._thread = self._thread is not None, None
        # The hot path does not check the thread (it only extends a list), so start it
        # now if the parent was logging: the child's points then reach the store.
        if had_thread and not self._closed:
            self._ensure_thread()


def _size_limit(exc: BaseException) -> int | None:
    """The byte limit a server's "too large" refusal names, if it is one."""
    if getattr(exc, "error_code", None) != "INVALID_PARAMETER_VALUE":
        return None
    m = re.search(r"(?:at most|exceeds) (\d+) bytes", str(exc))
    return int(m.group(1)) if m else None


# Every live writer of the process, for the exit flush. Strong references: a writer
# with buffered events must not vanish before it has flushed; close() removes it.
_ALL: dict[int, Writer] = {}


def flush_all(raise_refused: bool = False) -> None:
    """Flush every writer of this process (used at exit and by ``evtrack.flush()``).

    Events that cannot be written go to the sink's spool folder when it has one
    (``evtrack sync``); otherwise the error is logged. With ``raise_refused`` the first
    failure, or a permanent refusal not yet reported, is raised after every writer had
    its turn.
    """
    first: BaseException | None = None
    for writer in list(_ALL.values()):
        try:
            writer.flush()
            if raise_refused:
                writer.raise_refused()
        except Exception as exc:  # noqa: BLE001
            if isinstance(exc, SegmentRefused):
                first = first or exc
                continue
            spool = getattr(writer.store, "spool", None)  # a remote server's sink keeps them
            if spool is not None:
                spool([(s.path, s.data) for s in writer._pending])
                writer._pending.clear()
                continue
            _log.error("evtrack: could not flush events to %s: %s", writer.store.uri, exc)
            first = first or exc
    if raise_refused and first is not None:
        raise first


def _flush_at_exit() -> None:
    flush_all()
    # Then close the connections to tracking servers, so no socket is left to the
    # interpreter's teardown (a ResourceWarning under -W error).
    for writer in list(_ALL.values()):
        http = getattr(writer.store, "http", None)
        if http is not None:
            http.close()


class _ChildHook:
    """Owner of the after-fork registration (multiprocessing keeps it by weak reference)."""

    @staticmethod
    def finalizer(_: object = None) -> None:
        from multiprocessing import util

        # Run by the child's util._exit_function() before os._exit; a priority above
        # the default so it comes before multiprocessing closes its own queues.
        util.Finalize(None, _flush_at_exit, exitpriority=10)


_CHILD_HOOK = _ChildHook()


def _finalize_in_child() -> None:
    """Have ``multiprocessing`` flush before its children leave through ``os._exit``.

    A child's bootstrap clears the finaliser registry and then runs the after-fork
    hooks, so the finaliser is registered both now (evtrack imported inside the
    child's target) and from an after-fork hook (imported or forked before bootstrap).
    """
    if "multiprocessing.util" not in sys.modules:
        return
    from multiprocessing import util

    _CHILD_HOOK.finalizer()
    util.register_after_fork(_CHILD_HOOK, _ChildHook.finalizer)


def _after_fork() -> None:
    global _WRITERS_LOCK
    _WRITERS_LOCK = threading.Lock()  # another parent thread may have held it at fork
    for writer in list(_ALL.values()):
        writer._reset_after_fork()
    if _ALL:
        _finalize_in_child()


def _at_import() -> None:
    atexit.register(_flush_at_exit)
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_after_fork)
    # A spawn/forkserver child imports evtrack afresh and also leaves through
    # os._exit: register the finaliser whenever multiprocessing is loaded (in a parent
    # it only repeats the atexit flush, which then has nothing left to do).
    _finalize_in_child()


_at_import()
