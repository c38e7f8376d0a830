"""A tracking server on 127.0.0.1 for the length of one project run.

Code written for MLflow (``import mlflow``) cannot open an evtrack store itself, but it
speaks MLflow's REST API, which ``evtrack server`` serves. So when the child's
environment may contain mlflow, the runner serves the store on a free loopback port, in
a thread of its own process, and points ``MLFLOW_TRACKING_URI`` there. The socket is
bound before the child starts (the URL is known at once); the Flask app is built in the
server thread while the child starts up, and requests that arrive first wait for it.

Limits: loopback only and without authentication, like any process of the same user
could reach the store anyway; it lives as long as the runner, so a ``kill -9`` of the
runner takes it down while the child may still be running.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["LoopbackServer"]


class LoopbackServer:
    """``LoopbackServer(store_uri).start()``; ``.url``; ``.stop()``."""

    def __init__(self, store_uri: str) -> None:
        from werkzeug.serving import WSGIRequestHandler, make_server

        class Quiet(WSGIRequestHandler):
            def log_request(self, code: Any = "-", size: Any = "-") -> None:
                pass  # the child's own output is what the user watches

        self._store_uri = store_uri
        self._app: Callable[..., Iterable[bytes]] | None = None
        self._ready = threading.Event()
        # threaded=True: a ThreadedWSGIServer, whose request threads are daemons already
        self._server = make_server("127.0.0.1", 0, self._wsgi, threaded=True, request_handler=Quiet)
        self.url = f"http://127.0.0.1:{self._server.port}"
        self._thread = threading.Thread(target=self._serve, name="evtrack-loopback", daemon=True)

    def _wsgi(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        self._ready.wait()
        assert self._app is not None
        return self._app(environ, start_response)

    def _serve(self) -> None:
        try:
            from evtrack.server.app import create_app

            self._app = create_app(self._store_uri)
        except Exception as exc:  # noqa: BLE001 - answer every request with the reason
            message = f"evtrack loopback server could not start: {exc}".encode()

            def failing(environ: dict[str, Any], start_response: Callable) -> list[bytes]:
                start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
                return [message]

            self._app = failing
        finally:
            self._ready.set()
        self._server.serve_forever(poll_interval=0.2)

    def start(self) -> LoopbackServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._ready.wait()
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()
