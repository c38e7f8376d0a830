"""The writer: where log calls land, and how they become segments.

Each process has one :class:`Writer` per store, with a random id. Log calls only
append to in-memory buffers; a background thread flushes them every
``flush_interval`` seconds (or sooner when ``buffer_events`` are waiting), writing one
segment per run touched. :meth:`Writer.flush` does the same synchronously and is what
``end_run()``, ``synchronous=True``, every read and interpreter exit call.

Durability window: events logged since the last flush live only in this process. A
``kill -9`` loses at most ``flush_interval`` seconds (and at most ``buffer_events``
events) of them; everything flushed before is readable. A flush that fails (object
store down) keeps its events and retries them, under the same segment names, on the
next flush, so a retry never writes an event twice.
"""

from __future__ import annotations

import atexit
import logging
import os
import secrets
import sys
import threading
import weakref
from typing import TYPE_CHECKING, Any

from evtrack import settings
from evtrack.clock import now_ms

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa

    from evtrack.store.log.layout import Store

__all__ = ["Writer", "get_writer"]

_log = logging.getLogger(__name__)

_WRITERS: dict[int, Writer] = {}
_WRITERS_LOCK = threading.Lock()
_ALL: weakref.WeakSet[Writer] = weakref.WeakSet()


def get_writer(store: Store) -> Writer:
    """The process's writer for ``store``."""
    with _WRITERS_LOCK:
        writer = _WRITERS.get(id(store))
        if writer is None:
            writer = _WRITERS[id(store)] = Writer(store)
        return writer


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
        self._metrics: dict[tuple[str, str], list] = {}
        # (experiment_id, run_id or "_") -> list of (time, kind, key, value, text)
        self._events: dict[tuple[str, str], list[tuple[int, str, str, Any, Any]]] = {}
        # (experiment_id, run_id) -> list of Arrow tables of metric arrays
        self._arrays: dict[tuple[str, str], list[pa.Table]] = {}
        # segments built but not yet written (a failed flush): (path, data)
        self._pending: list[tuple[str, bytes]] = []
        self._flush_lock = threading.Lock()
        self._buffer_lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._interval = settings.get("flush_interval")
        self.buffer_limit = settings.get("buffer_events")
        self._jsonl_max = settings.get("jsonl_max_events")
        self.last_error: BaseException | None = None
        _ALL.add(self)

    # -- the hot path --------------------------------------------------------------

    def metric_buffer(self, experiment_id: str, run_id: str) -> list:
        """The flat list that metric points are added to, four items per point.

        Callers keep this list and call ``buf.extend((key, value, step, timestamp))``
        directly: one ``extend`` is atomic under the GIL, so points from several threads
        never interleave, and :meth:`flush` only ever removes a prefix of the list.
        """
        buf = self._metrics.get((experiment_id, run_id))
        if buf is None:
            with self._buffer_lock:
                buf = self._metrics.setdefault((experiment_id, run_id), [])
            self._ensure_thread()
        return buf

    def release(self, experiment_id: str, run_id: str) -> None:
        """Forget an ended run's (empty) metric buffer so flushes stop visiting it.

        A process that runs thousands of runs (a sweep, a tracking server) would
        otherwise scan every buffer it ever made on every flush. A later log call to
        the run simply gets a new buffer from :meth:`metric_buffer`.
        """
        with self._buffer_lock:
            buf = self._metrics.get((experiment_id, run_id))
            # Only if nobody else holds the list (an ActiveRun still logging into it):
            # the dict, ``buf`` and getrefcount's argument are the three references.
            if buf is not None and not buf and sys.getrefcount(buf) <= 3:
                del self._metrics[(experiment_id, run_id)]

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

    def flush(self) -> None:
        """Write every buffered event as segments; returns when they are visible.

        Raises if the store cannot be written; the events stay buffered and are retried.
        """
        with self._flush_lock:
            self._build_segments()
            self._write_pending()

    def has_pending(self) -> bool:
        return bool(self._pending or self._events or self._arrays or any(self._metrics.values()))

    def _build_segments(self) -> None:
        from evtrack.store.log.segments import SegmentName

        with self._buffer_lock:
            events, self._events = self._events, {}
            arrays, self._arrays = self._arrays, {}
            metric_chunks = {}
            for scope, buf in self._metrics.items():
                n = len(buf) // 4 * 4
                if n:
                    metric_chunks[scope] = buf[:n]
                    del buf[:n]
        scopes = list(dict.fromkeys([*events, *metric_chunks, *arrays]))
        for scope in scopes:
            experiment_id, run_id = scope
            evs = events.get(scope)
            if scope not in arrays:
                small = self._small_segment(scope, evs or (), metric_chunks.get(scope) or ())
                if small is not None:
                    name = SegmentName(run_id, self.id, self._segments, "jsonl").name
                    self._segments += 1
                    self._pending.append((f"{self.store.events_dir(experiment_id)}/{name}", small))
                    continue
            # Arrow only for what needs it (series, big buffers): a flush of a few events
            # must not import pyarrow (a quarter of a second in a fresh process).
            import pyarrow as pa

            from evtrack.store.log.events import event_schema
            from evtrack.store.log.segments import encode

            schema = event_schema()
            parts = []
            if evs:
                times, kinds, keys, values, texts = zip(*evs)
                parts.append(
                    self._table(schema, scope, kinds, keys, values, None, None, texts, times)
                )
            chunk = metric_chunks.get(scope)
            if chunk:
                keys, values, steps, stamps = _metric_columns(chunk)
                parts.append(
                    self._table(schema, scope, "metric", keys, values, steps, stamps, None, stamps)
                )
            for arr in arrays.get(scope, ()):
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
            table = parts[0] if len(parts) == 1 else pa.concat_tables(parts)
            fmt = (
                "jsonl" if table.num_rows <= self._jsonl_max and scope not in arrays else "parquet"
            )
            name = SegmentName(run_id, self.id, self._segments, fmt).name
            self._segments += 1
            data = encode(table, fmt)
            self._pending.append((f"{self.store.events_dir(experiment_id)}/{name}", data))

    def _small_segment(self, scope: tuple[str, str], evs, chunk) -> bytes | None:
        """A small segment's JSONL straight from the buffers, without Arrow (None if big).

        The same rows, in the same sequence order, as the Arrow path below: events first,
        then metric points (whose event time is their timestamp).
        """
        from evtrack.store.log.segments import encode_jsonl_rows

        n = len(evs) + len(chunk) // 4
        if n > self._jsonl_max:
            return None
        experiment_id, run_id = scope
        run = None if run_id == "_" else run_id
        seq = self._seq
        rows = []
        for t, kind, key, value, text in evs:
            rows.append(
                {
                    "writer": self.id,
                    "seq": seq,
                    "time": t,
                    "kind": kind,
                    "experiment_id": experiment_id,
                    "run_id": run,
                    "key": key,
                    "value": value,
                    "text": text,
                }
            )
            seq += 1
        for i in range(0, len(chunk), 4):
            key, value, step, stamp = chunk[i : i + 4]
            rows.append(
                {
                    "writer": self.id,
                    "seq": seq,
                    "time": stamp,
                    "kind": "metric",
                    "experiment_id": experiment_id,
                    "run_id": run,
                    "key": key,
                    "value": float(value),
                    "step": step,
                    "timestamp": stamp,
                }
            )
            seq += 1
        self._seq = seq
        return encode_jsonl_rows(rows)

    def _table(self, schema, scope, kinds, keys, values, steps, stamps, texts, times):
        import numpy as np
        import pyarrow as pa

        n = len(keys)
        first = self._seq
        self._seq += n
        experiment_id, run_id = scope

        def col(data, typ):
            if data is None:
                return pa.nulls(n, typ)
            if isinstance(data, (pa.Array, pa.ChunkedArray)):
                return data.cast(typ) if data.type != typ else data
            return pa.array(data, typ)

        def const(value):
            # A dictionary column holding one value n times: no per-row string.
            return pa.DictionaryArray.from_arrays(
                pa.array(np.zeros(n, dtype=np.int32)), pa.array([value], pa.string())
            )

        dictionary = pa.dictionary(pa.int32(), pa.string())
        return pa.Table.from_arrays(
            [
                const(self.id),
                pa.array(np.arange(first, first + n, dtype=np.int64)),
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
            path, data = self._pending[0]
            try:
                self.store.put(path, data, create_only=not self.store.is_local)
            except FileExistsError:
                pass  # an earlier attempt did land: the name is ours alone
            self._pending.pop(0)

    # -- background thread -----------------------------------------------------------

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            with _WRITERS_LOCK:
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(
                        target=self._loop, name=f"evtrack-writer-{self.id}", daemon=True
                    )
                    self._thread.start()

    def _loop(self) -> None:
        while True:
            self._wake.wait(self._interval)
            self._wake.clear()
            try:
                self.flush()
                self.last_error = None
            except Exception as exc:  # noqa: BLE001 - keep the events, retry next time
                if self.last_error is None:
                    _log.warning("evtrack: flush to %s failed, will retry: %s", self.store.uri, exc)
                self.last_error = exc

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
        self._flush_lock = threading.Lock()
        self._buffer_lock = threading.Lock()
        self._wake = threading.Event()
        self._thread = None


def _metric_columns(chunk: list) -> tuple:
    """Arrow columns from a flat ``[key, value, step, timestamp, ...]`` list."""
    import numpy as np
    import pyarrow as pa

    # Building a dictionary column of repeated keys is ~5x faster than pa.string().
    keys = pa.array(chunk[0::4], pa.dictionary(pa.int32(), pa.string()))
    values = pa.array(chunk[1::4], pa.float64())
    steps = pa.array(np.array(chunk[2::4], dtype=np.int64))
    stamps = pa.array(np.array(chunk[3::4], dtype=np.int64))
    return keys, values, steps, stamps


def flush_all() -> None:
    """Flush every writer of this process (used at exit)."""
    for writer in list(_ALL):
        try:
            writer.flush()
        except Exception as exc:  # noqa: BLE001
            spool = getattr(writer.store, "spool", None)  # a remote server's sink keeps them
            if spool is not None:
                spool(writer._pending)
                writer._pending.clear()
                continue
            _log.error("evtrack: could not flush events to %s at exit: %s", writer.store.uri, exc)


def _after_fork() -> None:
    for writer in list(_ALL):
        writer._reset_after_fork()


atexit.register(flush_all)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)
