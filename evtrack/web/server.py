"""Serving the web view: waitress, a production WSGI server that runs threads.

The Flask development server is not meant for anything but development; waitress is
pure Python (so it also runs on Windows), handles concurrent requests on a thread
pool, and needs no configuration. Binds 127.0.0.1 unless told otherwise: the view
shows everything in the store to whoever can reach the port.
"""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["make_server", "serve"]


def serve(
    tracking_uri: str | None = None,
    host: str = "127.0.0.1",
    port: int = 5000,
    threads: int = 8,
    warm: bool = True,
    **options: Any,
) -> None:
    """Serve the web view of ``tracking_uri`` until interrupted (port 0: any free port).

    Prints the URL on stdout once the socket is listening. With ``warm``, a background
    thread imports the query stack and reads every experiment once, newest first, so
    the first page a person opens does not pay for it.
    """
    server = make_server(tracking_uri, host=host, port=port, threads=threads, warm=warm, **options)
    shown = f"[{host}]" if ":" in host else host
    uri = server.evtrack_app.extensions["evtrack_web"].tracking_uri
    print(
        f"evtrack ui: {uri} at http://{shown}:{server.effective_port}/ (Ctrl+C to stop)",
        flush=True,
    )
    try:
        server.run()
    except KeyboardInterrupt:  # pragma: no cover - interactive
        print("evtrack ui: stopped", file=sys.stderr)
    finally:
        server.close()
        server.evtrack_app.extensions["evtrack_web"].close()  # the view's threads


def make_server(
    tracking_uri: str | None = None,
    host: str = "127.0.0.1",
    port: int = 5000,
    threads: int = 8,
    warm: bool = True,
    wrap: Any = None,
    **options: Any,
) -> Any:
    """The waitress server :func:`serve` runs (not yet running; ``.run()`` it).

    ``threads`` serve pages; the pool gets ``max_streams`` more, one per live page
    (change streams hold their thread while the page is open), so open pages never
    starve requests. ``wrap`` wraps the WSGI app (middleware; tests count requests).
    """
    import threading

    from waitress.server import create_server

    from evtrack.web.app import create_app

    options.setdefault("max_streams", 16)  # each gets a thread of its own, added below
    app = create_app(tracking_uri, **options)
    live = app.extensions["evtrack_web"].live
    pool = threads + (live.max_streams if live is not None else 0)
    if warm:
        threading.Thread(target=_warm, args=(app,), name="evtrack-ui-warm", daemon=True).start()
    # channel_request_lookahead: keep reading a connection while its request runs, so a
    # change stream learns within a moment that its page was closed (live.py).
    # Any: the server also carries `evtrack_app`, an attribute of ours the stubs lack.
    server: Any = create_server(
        wrap(app) if wrap else app,
        host=host,
        port=port,
        threads=pool,
        ident="evtrack",
        channel_request_lookahead=1,
    )
    server.evtrack_app = app  # not `.application`: waitress serves that attribute
    return server


def _warm(app: Any) -> None:
    import logging

    try:
        import duckdb  # noqa: F401 - imported now rather than during the first request
        import numpy  # noqa: F401
        import pyarrow.compute  # noqa: F401
        import pyarrow.parquet  # noqa: F401

        snapshots = app.extensions["evtrack_web"].snapshots
        ids = list(reversed(snapshots.experiment_ids()))
    except Exception as exc:  # noqa: BLE001 - warming is best effort; requests will retry
        logging.getLogger(__name__).info("evtrack ui: not warming: %s", exc)
        return
    for experiment_id in ids:
        try:
            snapshots.experiment(experiment_id)
        except Exception as exc:  # noqa: BLE001 - the page will show the error itself
            logging.getLogger(__name__).info("evtrack ui: %s: %s", experiment_id, exc)
