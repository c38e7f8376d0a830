"""The segment sink for an ``http(s)://`` store: the writer's segments PUT to the server.

:class:`HttpSink` takes the place of the filesystem layout under the process's writer.
Each segment is PUT to ``/api/evtrack/segments/<experiment_id>/<segment name>``; the
server writes it create-only, so a retry after a timeout or a 5xx never stores an event
twice. Segments that cannot be sent when the process exits go to a spool folder that
``evtrack sync`` sends later.
"""

from __future__ import annotations

import gzip
import logging
import os
import threading
import urllib.parse
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from evtrack import settings
from evtrack.errors import EvtrackError
from evtrack.store.rest.transport import _Http, _http_error

if TYPE_CHECKING:  # pragma: no cover
    pass

__all__ = ["HttpSink", "get_sink", "send_segment", "spool_folder", "sync_spool"]

_log = logging.getLogger(__name__)
_RETRY_STATUS = {429, 500, 502, 503, 504}


# -- the sink under the writer ---------------------------------------------------------


class HttpSink:
    """What the :class:`~evtrack.store.log.writer.Writer` writes segments to, for an HTTP URI."""

    is_local = False
    is_remote = True

    def __init__(self, uri: str) -> None:
        self.uri = uri.rstrip("/")
        self.http = _Http(self.uri)
        self.storage_options: dict[str, Any] = {}
        # Larger segments are split before they are sent; a server that refuses one as
        # too large also tells the writer its own limit (see writer._split_refused).
        self.max_segment_bytes: int = settings.get("http_max_segment_bytes")

    def __repr__(self) -> str:
        return f"HttpSink({self.uri!r})"

    def events_dir(self, experiment_id: str) -> str:
        return experiment_id

    def put(self, path: str, data: bytes, *, create_only: bool = False) -> None:
        experiment_id, name = path.split("/", 1)
        send_segment(self.http, experiment_id, name, data)

    def close(self) -> None:
        """Close the sink's connections (the process's writer for it is closed first)."""
        from evtrack.store.log.writer import close_writer

        close_writer(self)  # type: ignore[arg-type]
        with _SINKS_LOCK:
            if _SINKS.get(self.uri) is self:
                del _SINKS[self.uri]
        self.http.close()

    def spool(self, segments: Iterable[tuple[str, bytes]], refused: bool = False) -> None:
        """Keep segments that could not be sent in the spool folder (``evtrack sync``).

        ``refused``: the server refused them for good (the writer has already said why),
        so ``evtrack sync`` will only succeed once that cause is fixed.
        """
        folder = spool_folder(self.uri)
        n = 0
        for path, data in segments:
            experiment_id, name = path.split("/", 1)
            target = os.path.join(folder, experiment_id, name)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            tmp = target + ".part"
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
            n += 1
        if n and not refused:
            _log.warning(
                "evtrack: server %s unreachable; %d segment(s) kept in %s. "
                "Run `evtrack sync` to send them.",
                self.uri,
                n,
                folder,
            )


def send_segment(http: _Http, experiment_id: str, name: str, data: bytes) -> None:
    headers = {"Content-Type": "application/octet-stream"}
    body = data
    if name.endswith(".jsonl"):
        body = gzip.compress(data, compresslevel=5)
        headers["Content-Encoding"] = "gzip"
    path = f"/api/evtrack/segments/{urllib.parse.quote(experiment_id)}/{urllib.parse.quote(name)}"
    status, resp = http.request("PUT", path, body, headers)
    if status != 200:
        raise _http_error(status, resp)


_SINKS: dict[str, HttpSink] = {}
_SINKS_LOCK = threading.Lock()


def get_sink(uri: str) -> HttpSink:
    with _SINKS_LOCK:
        sink = _SINKS.get(uri.rstrip("/"))
        if sink is None:
            sink = _SINKS[uri.rstrip("/")] = HttpSink(uri)
        return sink


def spool_folder(uri: str) -> str:
    root = settings.get("spool_dir") or os.path.join(
        os.path.expanduser("~"), ".cache", "evtrack", "spool"
    )
    safe = urllib.parse.quote(uri.rstrip("/"), safe="")
    return os.path.join(root, safe)


def sync_spool(uri: str) -> tuple[int, int]:
    """Send every spooled segment for ``uri``; returns (sent, still spooled).

    Safe to run any number of times, even concurrently with a training process: the
    server stores each segment name once, and a file is removed only after a 200.
    """
    folder = spool_folder(uri)
    http = _Http(uri)
    sent = left = 0
    if not os.path.isdir(folder):
        return 0, 0
    for experiment_id in sorted(os.listdir(folder)):
        sub = os.path.join(folder, experiment_id)
        for name in sorted(os.listdir(sub)):
            if name.endswith(".part"):
                continue
            path = os.path.join(sub, name)
            with open(path, "rb") as f:
                data = f.read()
            try:
                send_segment(http, experiment_id, name, data)
            except EvtrackError as exc:
                _log.error("evtrack sync: %s/%s not sent: %s", experiment_id, name, exc)
                left += 1
                continue
            os.unlink(path)
            sent += 1
    return sent, left
