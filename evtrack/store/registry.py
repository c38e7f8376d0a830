"""Tracking URI → store: the scheme picks the implementation, imported only when used.

Modelled on fsspec's ``registry`` / ``get_filesystem_class``: a table of scheme →
``"module:Class"`` plus the extra that provides the scheme's filesystem package, so a
missing package is reported as ``pip install 'evtrack[s3]'`` before anything is
imported, and ``import evtrack`` never imports a store it does not use.

:func:`get_tracking_store` keeps one store per canonical URI for the process (a store
holds the process's writer and caches for that URI); :func:`close_stores` flushes and
forgets them (tests, long-lived servers switching stores).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import threading
from typing import TYPE_CHECKING, NamedTuple, Protocol

from evtrack.errors import InvalidParameterValue, MissingDependency

if TYPE_CHECKING:  # pragma: no cover
    from evtrack.store.base import TrackingStore

__all__ = [
    "StoreEntry",
    "canonical_uri",
    "close_stores",
    "get_store_class",
    "get_tracking_store",
    "known_schemes",
    "register_store",
]


class StoreEntry(NamedTuple):
    """Where a scheme's store class lives and what it needs installed."""

    target: str  # "package.module:Class"
    package: str | None = None  # importable name the scheme needs (e.g. "s3fs")
    extra: str | None = None  # evtrack extra that installs it


_LOG = "evtrack.store.log.store:LogStore"
_REST = "evtrack.store.rest.store:RestStore"

_REGISTRY: dict[str, StoreEntry] = {
    "file": StoreEntry(_LOG),
    "local": StoreEntry(_LOG),
    "memory": StoreEntry(_LOG),
    "s3": StoreEntry(_LOG, "s3fs", "s3"),
    "s3a": StoreEntry(_LOG, "s3fs", "s3"),
    "gs": StoreEntry(_LOG, "gcsfs", "gcs"),
    "gcs": StoreEntry(_LOG, "gcsfs", "gcs"),
    "az": StoreEntry(_LOG, "adlfs", "azure"),
    "abfs": StoreEntry(_LOG, "adlfs", "azure"),
    "abfss": StoreEntry(_LOG, "adlfs", "azure"),
    "http": StoreEntry(_REST),
    "https": StoreEntry(_REST),
}

_STORES: dict[str, TrackingStore] = {}
_LOCK = threading.Lock()


def _after_fork() -> None:
    # A lock another thread held at the fork would never be released in the child.
    global _LOCK
    _LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


def register_store(
    scheme: str, target: str, *, package: str | None = None, extra: str | None = None
) -> None:
    """Make ``scheme://`` URIs open ``target`` (``"module:Class"``, imported lazily)."""
    _REGISTRY[scheme] = StoreEntry(target, package, extra)


def known_schemes() -> list[str]:
    return sorted(_REGISTRY)


def canonical_uri(uri: str | None) -> str:
    """The tracking URI in canonical form (local paths absolute, no trailing slash)."""
    from evtrack.store.log.layout import resolve_uri

    return resolve_uri(uri)


def _scheme(uri: str) -> str:
    return uri.split("://", 1)[0].lower() if "://" in uri else "file"


class StoreClass(Protocol):
    """A store class: opened with its canonical URI (TrackingStore, a Protocol, has no
    constructor of its own to say so)."""

    def __call__(self, uri: str, /) -> TrackingStore: ...


def get_store_class(uri: str) -> StoreClass:
    """The store class for ``uri``'s scheme; a clear error if unknown or not installed."""
    scheme = _scheme(uri)
    entry = _REGISTRY.get(scheme)
    if entry is None:
        raise InvalidParameterValue(
            f"Unsupported tracking URI {uri!r}: no store for scheme {scheme!r}. Use a folder, "
            f"or one of {', '.join(s + '://' for s in known_schemes())}."
        )
    if entry.package is not None and importlib.util.find_spec(entry.package) is None:
        raise MissingDependency(
            f"The tracking URI {uri!r} needs the {entry.package!r} package: "
            f"pip install 'evtrack[{entry.extra}]'."
        )
    module, _, name = entry.target.partition(":")
    # The registry's targets are TrackingStore implementations (a test checks each one).
    cls: StoreClass = getattr(importlib.import_module(module), name)
    return cls


def get_tracking_store(uri: str | None = None) -> TrackingStore:
    """The process's store for ``uri`` (default: the configured tracking URI)."""
    canonical = canonical_uri(uri)
    store = _STORES.get(canonical)
    if store is None:
        cls = get_store_class(canonical)  # outside the lock: may import a package
        with _LOCK:
            store = _STORES.get(canonical)
            if store is None:
                store = _STORES[canonical] = cls(canonical)
    return store


def close_stores() -> None:
    """Flush and forget every store this process opened (the next use opens afresh)."""
    with _LOCK:
        stores = list(_STORES.values())
        _STORES.clear()
    for store in stores:
        store.close()
