"""Building the web view: a Flask app of its own, or a blueprint in another app.

``create_app(tracking_uri)`` is what ``evtrack ui`` serves. ``register(app, client)``
mounts the same pages in another Flask app (``evtrack server`` does), without
touching that app's own routes: the read-only guard and the security headers belong
to the blueprint. Both keep per-app state (snapshot and series caches) in
``app.extensions["evtrack_web"]``.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from flask import Flask

from evtrack.web import headers
from evtrack.web.views import blueprint
from evtrack.web.views.base import EXTENSION, WebState, close_parts, reject_writes

if TYPE_CHECKING:  # pragma: no cover
    from evtrack.artifacts.locations import ArtifactLocations
    from evtrack.tracking.client import MlflowClient

__all__ = ["blueprint", "create_app", "register"]


def register(
    app: Flask,
    client: MlflowClient | None = None,
    *,
    tracking_uri: str | None = None,
    url_prefix: str | None = None,
    min_interval: float = 1.0,
    poll_seconds: float = 3.0,
    live: bool = True,
    max_streams: int = 4,
    watch_interval: float = 1.0,
    stream_heartbeat: float = 10.0,
    locations: ArtifactLocations | None = None,
    allowed_artifact_locations: Sequence[str] = (),
) -> WebState:
    """Mount the web view on ``app`` for the store of ``client`` (or ``tracking_uri``).

    ``min_interval`` is how long a listing of an experiment's segments is trusted
    before the store is listed again. With ``live``, open pages get changes pushed
    (Server-Sent Events, see :mod:`evtrack.web.views.live`): at most ``max_streams``
    at once, each holding a worker thread, so keep it well below the server's thread
    count (the default, 4, suits a gunicorn ``gthread`` worker of 16 threads; ``evtrack
    ui`` adds threads for its streams and allows 16); an object store is listed every ``watch_interval`` seconds while a page is
    open. Pages past the cap, or all pages without ``live``, check every
    ``poll_seconds``. A stream writes a comment every ``stream_heartbeat`` seconds: that
    write is how a closed page is noticed and its thread given back. Nothing is written to the store: the client's writer is never used.

    Artifacts are opened only at the locations ``locations`` allows (default: the
    store's own artifact folders, the ``artifact_root`` setting and
    ``allowed_artifact_locations``; see :mod:`evtrack.artifacts.locations`), so a run
    whose artifact URI names another host is never fetched by the view.
    """
    from evtrack.artifacts.locations import ArtifactLocations
    from evtrack.store.log.layout import get_store, resolve_uri
    from evtrack.web.series import SeriesCache
    from evtrack.web.snapshots import Snapshots

    uri = client.tracking_uri if client is not None else resolve_uri(tracking_uri)
    store = get_store(uri)  # the web view reads the event log's files directly
    snapshots = Snapshots(store, min_interval=min_interval)
    streams = None
    if live:
        from evtrack.store.log.watch import StoreWatcher
        from evtrack.web.views.live import LiveStreams

        watcher = StoreWatcher(store, interval=watch_interval)
        streams = LiveStreams(
            watcher, snapshots, max_streams=max_streams, heartbeat=stream_heartbeat
        )
    web = WebState(
        store=store,
        snapshots=snapshots,
        series=SeriesCache(store),
        tracking_uri=uri,
        poll_seconds=poll_seconds,
        live=streams,
        locations=locations or ArtifactLocations(store, None, allowed_artifact_locations),
    )
    # Its threads stop when the state goes away or at interpreter exit (`evtrack ui`,
    # `evtrack server`'s workers), whichever is first; web.close() stops them sooner.
    weakref.finalize(web, close_parts, web.series, web.live)
    app.extensions[EXTENSION] = web
    app.register_blueprint(blueprint, url_prefix=url_prefix)
    return web


def create_app(tracking_uri: str | None = None, **options: Any) -> Flask:
    """The web view as an app of its own: every request that is not GET/HEAD gets 405."""
    app = Flask(__name__, static_folder=None)
    app.before_request(reject_writes)  # also for URLs no route matches
    app.after_request(headers.apply)  # also for 404s of URLs no route matches
    register(app, tracking_uri=tracking_uri, **options)
    return app
