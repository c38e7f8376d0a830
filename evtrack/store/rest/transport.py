"""HTTP transport to an ``evtrack server``: keep-alive connections, retries, error mapping."""

from __future__ import annotations

import base64
import http.client
import json
import logging
import threading
import time
import urllib.parse
from typing import TYPE_CHECKING, Any

from evtrack import settings
from evtrack.errors import EvtrackError, StoreUnavailable, error_for_code

if TYPE_CHECKING:  # pragma: no cover
    pass

__all__ = ["ServerUnreachable", "is_http_uri"]

_log = logging.getLogger(__name__)
_RETRY_STATUS = {429, 500, 502, 503, 504}


def is_http_uri(uri: str | None) -> bool:
    return bool(uri) and str(uri).startswith(("http://", "https://"))


class ServerUnreachable(StoreUnavailable):
    """The server did not answer (or answered 5xx) after every retry."""


class _Http:
    """A tiny keep-alive HTTP client (one connection per thread), stdlib only."""

    def __init__(self, base_url: str) -> None:
        parsed = urllib.parse.urlsplit(base_url)
        self.base_url = base_url.rstrip("/")
        self.scheme = parsed.scheme
        self.netloc = parsed.netloc
        self.prefix = parsed.path.rstrip("/")
        self._local = threading.local()
        # Every thread's connection, so close() can close them all (no socket left
        # open at exit, which -W error::ResourceWarning turns into a failure).
        self._conns: set[http.client.HTTPConnection] = set()
        self._conns_lock = threading.Lock()
        self.timeout = settings.get("http_timeout")
        self.retries = settings.get("http_retries")
        token = settings.get("tracking_token")
        user, password = settings.get("tracking_username"), settings.get("tracking_password")
        self.auth: str | None = None
        if token:
            self.auth = f"Bearer {token}"
        elif user:
            creds = base64.b64encode(f"{user}:{password or ''}".encode()).decode()
            self.auth = f"Basic {creds}"

    def _conn(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            cls = (
                http.client.HTTPSConnection
                if self.scheme == "https"
                else http.client.HTTPConnection
            )
            conn = self._local.conn = cls(self.netloc, timeout=self.timeout)
            with self._conns_lock:
                self._conns.add(conn)
        return conn

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            with self._conns_lock:
                self._conns.discard(conn)
        self._local.conn = None

    def close(self) -> None:
        """Close every thread's connection; a later request opens a new one."""
        with self._conns_lock:
            conns, self._conns = self._conns, set()
        for conn in conns:
            conn.close()
        self._local = threading.local()

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        retries: int | None = None,
    ) -> tuple[int, bytes]:
        """(status, body); retries connection errors and 429/5xx with backoff."""
        headers = dict(headers or {})
        if self.auth:
            headers["Authorization"] = self.auth
        attempts = 1 + (self.retries if retries is None else retries)
        last: Exception | None = None
        for attempt in range(attempts):
            if attempt:
                time.sleep(min(0.25 * 2 ** (attempt - 1), 8.0))
            try:
                conn = self._conn()
                conn.request(method, self.prefix + path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
            except (OSError, http.client.HTTPException) as exc:
                self._drop()
                last = exc
                continue
            if resp.status in _RETRY_STATUS and attempt + 1 < attempts:
                last = _http_error(resp.status, data)
                continue
            return resp.status, data
        raise ServerUnreachable(f"evtrack server {self.base_url} unreachable: {last}")

    def call(self, method: str, path: str, payload: dict[str, Any] | None = None) -> Any:
        """A JSON API call; raises the server's error as the matching EvtrackError."""
        if method == "GET" and payload:
            query = urllib.parse.urlencode(
                [(k, x) for k, v in payload.items() for x in (v if isinstance(v, list) else [v])]
            )
            status, data = self.request("GET", f"{path}?{query}")
        else:
            body = json.dumps(payload or {}).encode()
            status, data = self.request(method, path, body, {"Content-Type": "application/json"})
        if status != 200:
            raise _http_error(status, data)
        return json.loads(data) if data else {}


def _http_error(status: int, data: bytes) -> EvtrackError:
    """The server's error, carrying the HTTP status it came with: whatever its class,
    it is retryable when the server answered 429 or 5xx (see :mod:`evtrack.errors`)."""
    try:
        body = json.loads(data)
        err = error_for_code(body["error_code"], body["message"])
    except (ValueError, KeyError, TypeError):
        text = data[:500].decode("utf-8", "replace")
        err = EvtrackError(f"HTTP {status}: {text}")
    err.http_status = status
    if status == 429 or status >= 500:
        err.retryable = True
    return err
