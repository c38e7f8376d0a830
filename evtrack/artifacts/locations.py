"""Which artifact locations a server or web view may open: an allow-list of URL prefixes.

An experiment's ``artifact_location`` is data a client chose. A server that opened it
as given would fetch whatever URL a client names (``http://127.0.0.1:…/internal``,
a cloud metadata endpoint: server-side request forgery) or read and write folders it
does not own. So a server only opens locations under:

* its artifact root (``--default-artifact-root``, default ``<store>/artifacts``), which
  is what ``mlflow-artifacts:/…`` URIs from clients map to;
* the store's own per-experiment folders ``<store>/experiments/<id>/artifacts``, where
  evtrack's Python client puts artifacts when it writes to the store directly (and
  where servers before 0.x put them);
* the ``artifact_root`` setting (``EVTRACK_ARTIFACT_ROOT``), when set;
* any prefix given with ``--allowed-artifact-locations`` (the operator's choice, e.g.
  ``s3://team-bucket/artifacts``).

A new experiment's location must lie under the artifact root or an allowed prefix
(:meth:`ArtifactLocations.check_new`); reading a run's artifacts needs its artifact URI
under any of the above (:meth:`ArtifactLocations.check_read`), and on local disk it
must still be there once symlinks are resolved. Prefixes match whole path components (``s3://b/art`` does not allow ``s3://b/artifacts-other``), and a URI
holding a ``..`` component or a query string is never allowed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

from evtrack.errors import InvalidParameterValue, PermissionDenied

if TYPE_CHECKING:  # pragma: no cover
    from evtrack.store.log.layout import Store

__all__ = ["ArtifactLocations", "normalize_location"]


def normalize_location(uri: str) -> str:
    """A canonical URL: local paths become ``file:///abs``; no trailing slash."""
    from evtrack.store.log.layout import resolve_uri

    return resolve_uri(uri).rstrip("/")


def _suspicious(uri: str) -> bool:
    parts = uri.split("://", 1)[-1].split("/")
    return ".." in parts or "?" in uri or "#" in uri or "\\" in uri


def _under(uri: str, prefix: str) -> bool:
    return uri == prefix or uri.startswith(prefix + "/")


def _resolves_inside(uri: str, prefix: str) -> bool:
    """On local disk, whether ``uri`` is still under ``prefix`` once symlinks are resolved
    (a run or experiment folder replaced by a link to ``/`` is refused)."""
    if not (uri.startswith("file://") and prefix.startswith("file://")):
        return True
    real = os.path.realpath(uri[len("file://") :])
    base = os.path.realpath(prefix[len("file://") :])
    return real == base or real.startswith(base.rstrip(os.sep) + os.sep)


class ArtifactLocations:
    """The allow-list of one server or web view (see the module docstring)."""

    def __init__(
        self, store: Store, artifact_root: str | None = None, extra: Iterable[str] = ()
    ) -> None:
        from evtrack import settings

        self.store_url = store.url().rstrip("/")
        self.root = normalize_location(artifact_root) if artifact_root else store.url("artifacts")
        self.extra = [normalize_location(p) for p in extra if p]
        setting = settings.get("artifact_root")
        self.setting = normalize_location(setting) if setting else None
        # <store>/experiments/<id>/artifacts/...: the Python client's default location.
        self._legacy = re.compile(
            re.escape(store.url("experiments")) + r"/[A-Za-z0-9][\w\-]{0,63}/artifacts(/.*)?"
        )

    # -- new experiments ------------------------------------------------------------------

    def may_create(self, uri: str) -> bool:
        uri = uri.rstrip("/")
        if _suspicious(uri):  # before normalizing: abspath would fold a ".." away
            return False
        uri = normalize_location(uri)  # a plain local path is compared as its file:// URL
        return any(_under(uri, p) for p in (self.root, *self.extra))

    def check_new(self, uri: str) -> str:
        """``uri`` if a client may give it as an experiment's artifact location."""
        if not self.may_create(uri):
            raise InvalidParameterValue(
                f"Artifact location {uri!r} is not allowed on this server. Leave it unset "
                "(the server picks one under its artifact root), give an mlflow-artifacts:/ "
                "URI, or ask the operator to allow it with --allowed-artifact-locations."
            )
        return uri

    # -- reading --------------------------------------------------------------------------

    def _prefix_of(self, uri: str) -> str | None:
        """The allowed folder ``uri`` lies in, or None."""
        for prefix in (self.root, *self.extra, *([self.setting] if self.setting else [])):
            if _under(uri, prefix):
                return prefix
        m = self._legacy.fullmatch(uri)
        if m is None:
            return None
        return uri[: m.start(1)] if m.group(1) else uri

    def may_read(self, uri: str) -> bool:
        uri = uri.rstrip("/")
        if _suspicious(uri):
            return False
        uri = normalize_location(uri)
        prefix = self._prefix_of(uri)
        return prefix is not None and _resolves_inside(uri, prefix)

    def check_read(self, uri: str) -> str:
        """``uri`` if its artifacts may be opened; 403 ``PERMISSION_DENIED`` otherwise."""
        if not self.may_read(uri):
            raise PermissionDenied(
                f"This server does not open artifacts at {uri!r}: the location is outside "
                "its artifact root and allowed locations (--allowed-artifact-locations)."
            )
        return uri
