"""Compacting a process's ended runs in batches, in the background.

A sweep ends hundreds of small runs a minute. Left uncompacted, each is two or three
segments that every later search must read: one GET each on an object store (a search
over 1,000 such runs on S3 made ~2,000 requests), one file each locally. Compacting each
run as it ends (``compact_run``) would cost DuckDB and a manifest commit per run in the
middle of the sweep, and leave a file per run. So a store counts the small runs (fewer
than ``auto_compact_min_events`` events written by this process: a long run is a few
large segments, cheap to read) *this process* ends, per experiment, and once :data:`~evtrack.settings` ``auto_compact_batch`` of them
have ended, one background thread compacts them together
(:func:`~evtrack.store.log.compaction.compact_runs`: one listing, one pair of files,
one manifest commit). The segments it reads are mostly the ones this process has just
written, which the store remembers (``Store.recent``), so an object store is not asked
for them again.

Exactly-once is the compaction's own guarantee (create-only manifest versions; a lost
race retries or finds the work done), so a batch that is interrupted (the process
exits, is killed) loses nothing: its runs stay readable from their segments until
``evtrack compact`` or a compactor covers them. Fewer runs than a batch still pending at
exit are left for those too; batches that are due (full) finish before the interpreter
exits, which a script ending exactly on a batch boundary pays once. Off with
``auto_compact`` false or ``auto_compact_batch`` 0.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import TYPE_CHECKING

from evtrack import settings

if TYPE_CHECKING:  # pragma: no cover
    from evtrack.store.log.layout import Store

__all__ = ["EndedRuns", "close_ended_runs", "ended_runs"]

_log = logging.getLogger(__name__)

_BATCHERS: dict[int, EndedRuns] = {}  # id(store) -> its batcher; the batcher keeps it alive
_LOCK = threading.Lock()


def ended_runs(store: Store) -> EndedRuns:
    """The process's :class:`EndedRuns` for ``store`` (made on first use)."""
    with _LOCK:
        batcher = _BATCHERS.get(id(store))
        if batcher is None or batcher.store is not store:
            batcher = _BATCHERS[id(store)] = EndedRuns(store)
        return batcher


def close_ended_runs(store: Store) -> None:
    """Wait for ``store``'s running batch, if any, and forget the pending runs."""
    with _LOCK:
        batcher = _BATCHERS.pop(id(store), None)
    if batcher is not None and batcher.store is store:
        batcher.close()


class EndedRuns:
    """Runs this process ended on one store, compacted per experiment in batches."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._pending: dict[str, list[str]] = {}  # experiment id -> ended run ids
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.batches = 0  # compactions that covered something (for tests and benchmarks)

    def note(self, experiment_id: str, run_id: str) -> None:
        """``run_id`` has ended: compact it with others once the batch is full."""
        batch = settings.get("auto_compact_batch")
        if batch <= 0 or not settings.get("auto_compact"):
            return
        with self._lock:
            if self._closed:
                return
            runs = self._pending.setdefault(experiment_id, [])
            runs.append(run_id)
            if len(runs) < batch or self._thread is not None:
                return  # not full yet, or the running worker takes it next
            # Not a daemon: at exit the interpreter joins it before tearing anything
            # down (atexit hooks close s3fs's session and DuckDB refuses to run after
            # its own), so the batches that are due finish; fewer runs than a batch are
            # left. A daemon thread would be stopped mid-compaction.
            self._thread = threading.Thread(
                target=self._work, name="evtrack-compact-ended", daemon=False
            )
            self._thread.start()

    def pending(self, experiment_id: str) -> list[str]:
        with self._lock:
            return list(self._pending.get(experiment_id, ()))

    def _next(self) -> tuple[str, list[str]] | None:
        """An experiment with a full batch and its runs (taken off the pending list);
        None when there is none, and then the worker is gone (under the same lock, so
        a run ending meanwhile starts a new one)."""
        batch = max(1, settings.get("auto_compact_batch"))
        with self._lock:
            if not self._closed:
                for experiment_id, runs in self._pending.items():
                    if len(runs) >= batch:
                        del self._pending[experiment_id]
                        return experiment_id, runs
            self._thread = None
            return None

    def _work(self) -> None:
        from evtrack.store.log.compaction import compact_runs

        while (item := self._next()) is not None:
            experiment_id, runs = item
            try:
                result = compact_runs(self.store, experiment_id, runs)
            except ImportError:
                continue  # compaction needs duckdb and pyarrow; the events are safe without
            except Exception as exc:  # noqa: BLE001 - an optimisation; the events are safe
                _log.warning(
                    "evtrack: could not compact %d ended runs of experiment %s: %s",
                    len(runs),
                    experiment_id,
                    exc,
                )
                continue
            if result.segments:
                self.batches += 1

    def wait(self) -> None:
        """Wait until no batch is being compacted (pending, not-yet-full ones stay)."""
        while (thread := self._thread) is not None:
            thread.join()

    def close(self) -> None:
        """Stop taking runs; finish the batches that are due (full ones), drop the rest."""
        batch = max(1, settings.get("auto_compact_batch"))
        with self._lock:
            self._pending = {e: r for e, r in self._pending.items() if len(r) >= batch}
        self.wait()
        with self._lock:
            self._closed = True
            self._pending.clear()


def _after_fork() -> None:
    # The parent's worker thread does not exist in a child, nor do its locks' owners:
    # a child starts with no batcher and batches only the runs it ends itself.
    global _LOCK
    _LOCK = threading.Lock()
    _BATCHERS.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)
