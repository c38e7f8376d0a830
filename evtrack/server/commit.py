"""Group commit: a request is acknowledged only once its events are durable, and
concurrent requests share the flushes that make them so.

Each request first buffers its events in the worker's writer, then calls
:meth:`GroupCommit.commit`. That waits for a flush that *started after* the call (so it
took this request's events) to finish. If no flush is running the caller runs one
itself; otherwise it waits, and when that flush ends one of the waiters runs the next
for everyone who arrived meanwhile. Under load every flush carries many requests'
events, so the number of segments written grows with time, not with requests.

A flush that fails is reported to every request it carried (HTTP 500): their events
stay in the writer and are retried by the next flush under the same segment names, so
a client that retries on 500 may log a metric point twice, as with any server that
fails after doing part of the work.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

__all__ = ["GroupCommit"]

_KEEP_ERRORS = 1024


class GroupCommit:
    def __init__(self, flush: Callable[[], None]) -> None:
        self._flush = flush
        self._cond = threading.Condition(threading.Lock())
        self._started = 0  # flushes started
        self._finished = 0  # flushes finished (they run one at a time, in order)
        self._running = False
        self._errors: dict[int, BaseException] = {}
        self.flushes = 0  # for tests and /health

    def commit(self) -> None:
        """Return once every event buffered before this call is durable; raise if not."""
        cond = self._cond
        with cond:
            target = self._started + 1  # the first flush to start after now
            while self._finished < target:
                if self._running:
                    cond.wait()
                    continue
                self._running = True
                self._started += 1
                generation = self._started
                error: BaseException | None = None
                cond.release()
                try:
                    self._flush()
                except BaseException as exc:  # noqa: BLE001 - handed to the waiters
                    error = exc
                finally:
                    cond.acquire()
                    self._running = False
                    self._finished = generation
                    self.flushes += 1
                    if error is not None:
                        self._errors[generation] = error
                        for old in [g for g in self._errors if g < generation - _KEEP_ERRORS]:
                            del self._errors[old]
                    cond.notify_all()
            error = self._errors.get(target)
        if error is not None:
            raise error
