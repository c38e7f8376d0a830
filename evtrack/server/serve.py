"""Running the server: one threaded process, or several gunicorn workers.

``workers=1`` serves with werkzeug's threaded WSGI server (HTTP/1.1 keep-alive), in
this process. ``workers>1`` runs gunicorn's ``gthread`` workers; the app is built in
each worker after the fork (no preloading), so every worker has its own writer id and
its own group commit. Every acknowledged write is already durable, so killing a worker
loses nothing that was answered with 200.
"""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Sequence
from typing import Any

from evtrack.server.auth import Auth
from evtrack.server.sql_budget import (
    DEFAULT_CONCURRENCY,
    DEFAULT_MAX_ANSWER_BYTES,
    default_memory,
)

__all__ = ["run_server"]

_log = logging.getLogger("evtrack.server")


def run_server(
    backend_store_uri: str,
    default_artifact_root: str | None = None,
    host: str = "127.0.0.1",
    port: int = 5000,
    workers: int = 1,
    serve_artifacts: bool = True,
    auth: Auth | None = None,
    read_only: bool = False,
    threads: int = 16,
    timeout: int = 120,
    allowed_artifact_locations: Sequence[str] = (),
    sql_memory: int | None = None,
    sql_concurrency: int = DEFAULT_CONCURRENCY,
    sql_max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES,
    web: bool = True,
    artifacts_destination: str | None = None,
) -> None:
    """Serve until interrupted (SIGINT/SIGTERM).

    ``sql_memory`` is the SQL memory budget of the whole server (default
    :func:`~evtrack.server.sql_budget.default_memory`); each of ``workers`` processes
    gets its share.
    """
    memory = (sql_memory or default_memory()) // max(workers, 1)
    kwargs: dict[str, Any] = {
        "backend_store_uri": backend_store_uri,
        "default_artifact_root": default_artifact_root,
        "serve_artifacts": serve_artifacts,
        "auth": auth,
        "read_only": read_only,
        "allowed_artifact_locations": tuple(allowed_artifact_locations),
        "web": web,
        # Each worker builds its own budget (a semaphore cannot cross a fork).
        "sql_budget_args": (memory, sql_concurrency, sql_max_answer_bytes),
        "artifacts_destination": artifacts_destination,
    }
    if workers <= 1:
        _serve_threaded(host, port, kwargs)
    else:
        _serve_gunicorn(host, port, workers, threads, timeout, kwargs)


def _app(kwargs: dict[str, Any]) -> Any:
    from evtrack.server.app import create_app
    from evtrack.server.sql_budget import SqlBudget

    options = dict(kwargs)
    memory, concurrency, answer = options.pop("sql_budget_args")
    return create_app(**options, sql_budget=SqlBudget(memory, concurrency, answer))


def _serve_threaded(host: str, port: int, kwargs: dict[str, Any]) -> None:
    from werkzeug.serving import WSGIRequestHandler, make_server

    class Handler(WSGIRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: load generators reuse connections

        def log_request(self, code: Any = "-", size: Any = "-") -> None:
            if _log.isEnabledFor(logging.DEBUG):
                super().log_request(code, size)

    app = _app(kwargs)
    # threaded=True: a ThreadedWSGIServer, whose request threads are daemons already
    server = make_server(host, port, app, threaded=True, request_handler=Handler)

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    print(f"evtrack server listening on http://{host}:{server.port}", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def _serve_gunicorn(
    host: str, port: int, workers: int, threads: int, timeout: int, kwargs: dict[str, Any]
) -> None:
    from gunicorn.app.base import BaseApplication

    class Application(BaseApplication):
        def load_config(self) -> None:
            settings = {
                "bind": f"{host}:{port}",
                "workers": workers,
                "worker_class": "gthread",
                "threads": threads,
                "timeout": timeout,
                "keepalive": 30,
                "preload_app": False,
                "accesslog": None,
            }
            for key, value in settings.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            return _app(kwargs)

    print(
        f"evtrack server listening on http://{host}:{port} ({workers} workers)",
        file=sys.stderr,
        flush=True,
    )
    Application().run()
