"""The ``evtrack:`` URI spellings MLflow's plugin registry dispatches on.

MLflow picks a tracking store by the URI's scheme, so an evtrack store named to MLflow
needs a scheme of its own: ``evtrack:///abs/path`` for a local folder and
``evtrack+<fsspec protocol>://…`` (``evtrack+s3://bucket/prefix``, ``evtrack+file:///x``,
``evtrack+memory://name``) for anything fsspec opens. evtrack itself accepts the same
spellings wherever it takes a tracking URI, so one ``MLFLOW_TRACKING_URI`` serves both.
This module must stay import-light: :func:`evtrack.store.log.layout.resolve_uri` uses it.
"""

from __future__ import annotations

import os

__all__ = [
    "PREFIX",
    "SCHEMES",
    "absolute_artifact_location",
    "is_evtrack_uri",
    "to_evtrack_uri",
    "to_store_url",
]

PREFIX = "evtrack"
#: Schemes registered with MLflow's entry points (pyproject.toml): MLflow matches the
#: scheme exactly, so every ``evtrack+<protocol>`` we support is listed there too.
SCHEMES = (
    "evtrack",
    "evtrack+file",
    "evtrack+memory",
    "evtrack+s3",
    "evtrack+gs",
    "evtrack+gcs",
    "evtrack+az",
    "evtrack+abfs",
)


def is_evtrack_uri(uri: str) -> bool:
    return uri == PREFIX or uri.startswith((PREFIX + ":", PREFIX + "+"))


def to_store_url(uri: str) -> str:
    """``evtrack:///p`` -> ``/p``, ``evtrack+s3://b/p`` -> ``s3://b/p``; others unchanged.

    ``evtrack:relative/path`` and ``evtrack:///abs`` both name a local folder (MLflow
    hands the plugin the URI as typed, so a relative one is relative to the process's
    working directory, like MLflow's own ``./mlruns``).
    """
    if not is_evtrack_uri(uri):
        return uri
    rest = uri[len(PREFIX) :]
    if rest.startswith("+"):
        return rest[1:]
    rest = rest[1:]  # drop the ":"
    if rest.startswith("//"):
        rest = rest[2:]  # evtrack:///abs -> /abs ; evtrack://host/... has no host meaning
    return rest or "."


def to_evtrack_uri(url: str) -> str:
    """The inverse for what MLflow should see: ``s3://b/p`` -> ``evtrack+s3://b/p``."""
    if is_evtrack_uri(url):
        return url
    if url.startswith("file://"):
        return PREFIX + ":" + url[len("file:") :]
    if "://" in url:
        return PREFIX + "+" + url
    return PREFIX + "://" + url


def absolute_artifact_location(location: str) -> str:
    """A relative local ``artifact_location`` resolved against the working directory, as
    MLflow's ``resolve_uri_if_local`` does: ``my_location`` -> ``/cwd/my_location``,
    ``file:rel`` -> ``file:///cwd/rel``; URLs with a scheme and absolute paths unchanged."""
    if "://" in location:
        return location
    if location.startswith("file:"):
        path = location[len("file:") :]
        return location if path.startswith("/") else "file://" + os.path.join(os.getcwd(), path)
    if ":" in location.split("/")[0]:
        return location  # another scheme (mlflow-artifacts:, runs:...): not a local path
    return location if os.path.isabs(location) else os.path.join(os.getcwd(), location)
