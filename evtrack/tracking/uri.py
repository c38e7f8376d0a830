"""The process's tracking URI: set in code, else ``EVTRACK_TRACKING_URI``, else ./evruns.

A module of its own so the client and the fluent API both read it without importing
each other (``fluent`` builds on ``client``; ``client`` only needs the default URI).
"""

from __future__ import annotations

from typing import Any

from evtrack import settings

__all__ = ["get_tracking_uri", "is_tracking_uri_set", "set_tracking_uri"]

_tracking_uri: str | None = None


def set_tracking_uri(uri: str | Any) -> None:
    """Point evtrack at a store (a folder, ``file://``, ``memory://``, ``s3://``...)."""
    global _tracking_uri
    _tracking_uri = str(uri) if uri is not None else None


def get_tracking_uri() -> str:
    """The tracking URI in use: set in code, else ``EVTRACK_TRACKING_URI``, else ./evruns."""
    from evtrack.store.log.layout import resolve_uri

    return _tracking_uri or resolve_uri(settings.get("tracking_uri"))


def is_tracking_uri_set() -> bool:
    return _tracking_uri is not None or settings.get("tracking_uri") != "./evruns"
