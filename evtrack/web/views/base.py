"""What every page shares: the blueprint, the read-only guard, JSON twins, headers.

Every page answers HTML by default and JSON with ``?format=json`` (its *twin*, with
the same data the template got). Requests other than GET and HEAD get 405 before any
view runs: the web view has no route that writes.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Response, current_app, render_template, request

from evtrack.errors import EvtrackError, InvalidParameterValue, ResourceDoesNotExist
from evtrack.web import headers

if TYPE_CHECKING:  # pragma: no cover
    from evtrack.artifacts.locations import ArtifactLocations
    from evtrack.store.log.layout import Store
    from evtrack.web.series import SeriesCache
    from evtrack.web.snapshots import Snapshots
    from evtrack.web.views.live import LiveStreams

__all__ = ["WebState", "blueprint", "close_parts", "page", "state", "to_json"]

blueprint = Blueprint(
    "evtrack_web",
    __name__.rsplit(".", 2)[0],
    template_folder="templates",
    static_folder="static",
    static_url_path="/static/evtrack-web",
)

EXTENSION = "evtrack_web"
READ_METHODS = ("GET", "HEAD")


@dataclass
class WebState:
    """What the views need, kept on ``app.extensions["evtrack_web"]``."""

    store: Store
    snapshots: Snapshots
    series: SeriesCache
    tracking_uri: str
    poll_seconds: float = 3.0
    #: Pushes changes to live pages (see :mod:`evtrack.web.views.live`); None: pages poll.
    live: LiveStreams | None = None
    #: Which run artifact URIs the views may open (None: any; see evtrack.artifacts.locations).
    locations: ArtifactLocations | None = None

    def close(self) -> None:
        """Stop the threads of this web view: the series prefetcher and the watcher.

        Idempotent. ``register`` also arranges it for when this state is garbage
        collected or the interpreter exits, whichever comes first.
        """
        close_parts(self.series, self.live)


def close_parts(series: SeriesCache, live: LiveStreams | None) -> None:
    """Close a web view's threaded parts (a function of its own, for ``weakref.finalize``:
    it must not hold the :class:`WebState` itself)."""
    try:
        series.close()
    finally:
        if live is not None:
            live.close()


def state() -> WebState:
    return current_app.extensions[EXTENSION]


# -- read-only guard and headers ------------------------------------------------------


def reject_writes() -> Response | None:
    """405 for anything but GET/HEAD (OPTIONS too: nothing here is cross-origin)."""
    if request.method in READ_METHODS:
        return None
    body = {"error_code": "METHOD_NOT_ALLOWED", "message": "The web view is read-only."}
    resp = Response(json.dumps(body), status=405, mimetype="application/json")
    resp.headers["Allow"] = ", ".join(READ_METHODS)
    return resp


blueprint.before_request(reject_writes)


# The blueprint's own hook covers its pages and errors wherever it is mounted; the apps
# that serve it (web.app.create_app, server.app.create_app) add the same hook app-wide,
# for 404s of URLs no route matches.
blueprint.after_request(headers.apply)


# -- JSON ---------------------------------------------------------------------------------


def _clean(value: Any) -> Any:
    """JSON has no NaN or infinity: write them as the strings MLflow's REST API uses."""
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return value
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    return value


def to_json(data: Any, status: int = 200) -> Response:
    body = json.dumps(_clean(data), allow_nan=False, default=str, separators=(",", ":"))
    resp = Response(body, status=status, mimetype="application/json")
    resp.headers["Cache-Control"] = "no-store"
    return resp


def wants_json() -> bool:
    return request.args.get("format") == "json"


def page(template: str, data: dict[str, Any], status: int = 200, **extra: Any) -> Response:
    """The page as HTML, or its JSON twin (``data``) with ``?format=json``."""
    if wants_json():
        return to_json(data, status)
    web = state()
    html = render_template(
        template,
        data=data,
        poll_ms=int(web.poll_seconds * 1000),
        live=web.live is not None,
        **extra,
    )
    resp = Response(html, status=status, mimetype="text/html")
    resp.headers["Cache-Control"] = "no-store"
    return resp


# -- request arguments ------------------------------------------------------------------


def arg_int(name: str, default: int, lo: int | None = None, hi: int | None = None) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidParameterValue(f"{name} must be an integer, got {raw!r}.") from None
    if lo is not None and value < lo or hi is not None and value > hi:
        raise InvalidParameterValue(f"{name} must be between {lo} and {hi}, got {value}.")
    return value


def arg_float(name: str) -> float | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        raise InvalidParameterValue(f"{name} must be a number, got {raw!r}.") from None
    if not math.isfinite(value):
        raise InvalidParameterValue(f"{name} must be a finite number.")
    return value


def arg_list(name: str) -> list[str]:
    """A comma-separated or repeated argument (run ids and keys hold no commas)."""
    out: list[str] = []
    for raw in request.args.getlist(name):
        out.extend(part for part in raw.split(",") if part)
    return out


# -- errors ------------------------------------------------------------------------------


@blueprint.errorhandler(EvtrackError)
def _evtrack_error(error: EvtrackError) -> Response:
    status = 404 if isinstance(error, ResourceDoesNotExist) else error.http_status
    data = {"error_code": error.error_code, "message": error.message}
    if wants_json() or is_api():
        return to_json(data, status)
    return page("error.html", data, status)


def is_api() -> bool:
    """JSON-only endpoints (chart data, versions) are the views named ``api_*``."""
    return (request.endpoint or "").rsplit(".", 1)[-1].startswith("api_")


def _register_filters() -> None:
    from evtrack.web.formatting import FILTERS

    for name, fn in FILTERS.items():
        blueprint.add_app_template_filter(fn, name)


_register_filters()


def _endpoint() -> str:
    """The endpoint of the page being rendered.

    ``request.endpoint`` is None only when no route matched (a 404 of an unknown URL);
    the templates calling :func:`url_with` and :func:`twin_url` are rendered by routed
    views only, so None here is a programming error, not a request to answer.
    """
    endpoint = request.endpoint
    if endpoint is None:
        raise RuntimeError("url_with/twin_url need a request that a route matched.")
    return endpoint


@blueprint.app_template_global()
def url_with(**changes: Any) -> str:
    """The current page's URL with some query arguments changed (None drops one)."""
    from flask import url_for

    args: dict[str, Any] = request.args.to_dict(flat=False)
    args.pop("format", None)
    for key, value in changes.items():
        if value is None or value == [] or value == "":
            args.pop(key, None)
        else:
            args[key] = value if isinstance(value, list) else [value]
    return url_for(_endpoint(), **(request.view_args or {}), **args)


@blueprint.app_template_global()
def twin_url() -> str:
    """The JSON twin of the current page."""
    from flask import url_for

    args: dict[str, Any] = request.args.to_dict(flat=False)
    args["format"] = ["json"]
    return url_for(_endpoint(), **(request.view_args or {}), **args)
