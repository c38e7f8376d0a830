"""Live pages: change streams (Server-Sent Events), and the JSON the pages then fetch.

An open run page or runs table subscribes to ``/-/runs/<id>/changes`` or
``/-/experiments/<id>/changes``, a ``text/event-stream`` that says ``change`` whenever a
segment of that run (experiment) appears, and nothing otherwise but a comment line
every ``heartbeat`` seconds (10). The page then asks ``/-/…/version`` for the new state, so
an idle page makes no request at all. Every stream of one app shares one
:class:`~evtrack.store.log.watch.StoreWatcher` (one observer of the store, however
many tabs are open); a change also marks the experiment's snapshot stale so the next
request lists the store at once instead of trusting a listing up to ``min_interval``
old.

A stream holds a worker thread for as long as the page is open: waitress (``evtrack
ui``) and gunicorn's ``gthread`` workers serve each request on a thread of a fixed pool,
so at most ``max_streams`` streams are open at once and ``evtrack ui`` adds that many
threads to its pool; past the cap a page gets 503 and falls back to checking
``/-/…/version`` every ``poll_seconds``. A stream ends when the page closes: under
``evtrack ui`` waitress reports it within half a second (it keeps reading the socket:
``channel_request_lookahead``); under other servers the next heartbeat fails to write.
Either way the server closes the generator, which unsubscribes and frees the slot.
Hidden tabs close their stream and open a new one when shown again.

``/-/…/version`` answers from the segment listing alone (throttled, see
:mod:`evtrack.web.snapshots`).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

from flask import Response, request

from evtrack.errors import InvalidParameterValue
from evtrack.web.views.base import arg_float, arg_int, blueprint, state, to_json
from evtrack.web.views.run import run_info, run_version

if TYPE_CHECKING:  # pragma: no cover
    from evtrack.store.log.watch import StoreWatcher
    from evtrack.web.snapshots import Snapshots


#: How often a stream asks waitress whether its page went away (seconds).
DISCONNECT_CHECK = 0.5


class LiveStreams:
    """The change streams of one web app: one watcher, at most ``max_streams`` open."""

    def __init__(
        self,
        watcher: StoreWatcher,
        snapshots: Snapshots,
        *,
        max_streams: int = 4,
        heartbeat: float = 10.0,
        retry_ms: int = 2000,
    ) -> None:
        self.watcher = watcher
        self.snapshots = snapshots
        self.max_streams = max_streams
        self.heartbeat = heartbeat
        self.retry_ms = retry_ms
        self._slots = threading.BoundedSemaphore(max_streams)
        self._open = 0
        self._lock = threading.Lock()

    def close(self) -> None:
        """Stop the watcher (its thread or observer); open streams end."""
        self.watcher.close()

    @property
    def open_streams(self) -> int:
        with self._lock:
            return self._open

    def response(self, experiment_id: str, run_id: str | None) -> Response:
        """A ``text/event-stream`` of changes, or 503 when ``max_streams`` are open."""
        if not self._slots.acquire(blocking=False):
            resp = to_json(
                {
                    "error_code": "TEMPORARILY_UNAVAILABLE",
                    "message": f"{self.max_streams} live pages are open already (the "
                    "server's max_streams); this page checks for changes every few seconds "
                    "instead. Close other tabs or raise max_streams.",
                },
                503,
            )
            resp.headers["Retry-After"] = "30"
            return resp
        try:
            sub = self.watcher.subscribe(experiment_id, run_id)
        except BaseException:
            self._slots.release()
            raise
        with self._lock:
            self._open += 1
        # waitress (with channel_request_lookahead, as `evtrack ui` runs it) tells when
        # the page went away without a write; elsewhere the next heartbeat finds out.
        gone = request.environ.get("waitress.client_disconnected")
        resp = Response(_Stream(self, sub, experiment_id, gone), mimetype="text/event-stream")
        resp.headers["Cache-Control"] = "no-store"
        resp.headers["X-Accel-Buffering"] = "no"  # nginx: pass each event on at once
        return resp

    def _release(self) -> None:
        with self._lock:
            self._open -= 1
        self._slots.release()


class _Stream:
    """The body of one change stream; closing it (the server does, when the page went
    away, at shutdown, or for a HEAD request that never reads it) frees the slot once."""

    def __init__(self, live: LiveStreams, sub, experiment_id: str, gone) -> None:  # noqa: ANN001
        self.live = live
        self.sub = sub
        self.experiment_id = experiment_id
        self.gone = gone
        self._released = False
        self._lock = threading.Lock()

    def __iter__(self) -> Iterator[bytes]:
        live, sub = self.live, self.sub
        check = min(live.heartbeat, DISCONNECT_CHECK) if self.gone else live.heartbeat
        try:
            yield f"retry: {live.retry_ms}\n: {live.watcher.mode}\n\n".encode()
            quiet = 0.0
            while not sub.closed:
                changes = sub.wait(check)
                if self.gone is not None and self.gone():
                    return
                if not changes:
                    quiet += check
                    if quiet >= live.heartbeat:
                        quiet = 0.0
                        yield b": keep-alive\n\n"
                    continue
                quiet = 0.0
                live.snapshots.invalidate(self.experiment_id)
                names = set().union(*(c.names for c in changes))
                data = json.dumps({"experiment_id": self.experiment_id, "segments": len(names)})
                yield f"event: change\ndata: {data}\n\n".encode()
        finally:
            self.close()

    def close(self) -> None:
        with self._lock:
            if self._released:
                return
            self._released = True
        self.sub.close()
        self.live._release()


def _live() -> LiveStreams:
    live = state().live
    if live is None:
        raise InvalidParameterValue("Live updates are off for this web view (live=False).")
    return live


@blueprint.get("/-/experiments/<experiment_id>/changes")
def api_experiment_changes(experiment_id: str):
    state().snapshots.experiment(experiment_id)  # 404 for an unknown experiment
    return _live().response(experiment_id, None)


@blueprint.get("/-/runs/<run_id>/changes")
def api_run_changes(run_id: str):
    snap, _ = state().snapshots.run(run_id)  # 404 for an unknown run
    return _live().response(snap.experiment_id, run_id)


@blueprint.get("/-/experiments/<experiment_id>/version")
def api_experiment_version(experiment_id: str):
    snap = state().snapshots.experiment(experiment_id)
    return to_json(
        {
            "experiment_id": experiment_id,
            "version": snap.version,
            "last_activity": snap.max_time,
        }
    )


@blueprint.get("/-/runs/<run_id>/version")
def api_run_version(run_id: str):
    snap, row = state().snapshots.run(run_id)
    metrics = snap.query(
        "SELECT key, value, step, timestamp FROM latest_metrics WHERE run_id = ? ORDER BY key",
        [run_id],
    )
    return to_json(
        {
            "run_id": run_id,
            "version": run_version(snap, run_id),
            "run": run_info(row),
            "metrics": metrics,
        }
    )


@blueprint.get("/-/runs/<run_id>/metric")
def api_metric(run_id: str):
    """Points of one metric to draw: ``key``, ``x`` (step|relative|wall), ``lo``/``hi``
    (the visible x range, optional), ``width`` (pixels: about 4 points per pixel at most).
    """
    from evtrack.web.series import X_AXES

    key = request.args.get("key", "")
    if not key:
        raise InvalidParameterValue("key is required.")
    axis = request.args.get("x", "step")
    if axis not in X_AXES:
        raise InvalidParameterValue(f"Invalid x axis {axis!r}: use one of {', '.join(X_AXES)}.")
    width = arg_int("width", 1000, 16, 8192)
    lo, hi = arg_float("lo"), arg_float("hi")
    st = state()
    snap, row = st.snapshots.run(run_id)
    series = st.series.get(snap.experiment_id, run_id, key)
    window = series.window(axis, lo, hi, width, origin_ms=row.get("start_time"))
    return to_json({"run_id": run_id, "key": key, "axis": axis, "lo": lo, "hi": hi, **window})
