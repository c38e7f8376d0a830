"""The read-only web view: ``evtrack ui``, and the pages ``evtrack server`` mounts.

Experiments, an experiment's runs table, run pages with metric charts, comparison of
runs and artifact previews, each page with a JSON twin (``?format=json``). Nothing in
this package writes to the store. See ``docs/web.md``.

``create_app(tracking_uri)`` builds a Flask app; ``register(app, client)`` mounts the
:data:`blueprint` in another app; :func:`serve` runs the app on a threaded server.
Importing this package imports Flask (``import evtrack`` does not import it).
"""

from __future__ import annotations

from evtrack.web.app import blueprint, create_app, register
from evtrack.web.server import serve

__all__ = ["blueprint", "create_app", "register", "serve"]
