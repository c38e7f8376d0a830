"""What one server worker holds: its store, group commit, artifact mapping.

The worker's store is a :class:`~evtrack.store.log.store.LogStore` opened for sharing
(``shared=True``): params already logged are re-read from the store before a param is
accepted (another worker may have logged it), and "is this run active" is cached for
:data:`ACTIVE_TTL` seconds for metric-only batches, the hot path (a run deleted through
another worker may accept metric points for that long; one deleted through this worker
refuses them at once). Every flush the store makes goes through :class:`GroupCommit`,
so a request returns only when its events are durable and concurrent requests share
flushes. New experiments get their artifact location under the server's artifact root.
Handlers call the store through the :class:`~evtrack.store.base.TrackingStore`
interface (``backend().store``), or MLflow's client names through ``backend().client``,
a facade over the same store.

Artifact URIs are stored as real fsspec URLs (so ``evtrack`` reading the store finds
the files); with ``serve_artifacts`` the REST API shows those under the proxied root
as ``mlflow-artifacts:/…``, which the stock client uploads and downloads through
``/api/2.0/mlflow-artifacts/artifacts/…``, exactly as with ``mlflow server``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, overload

from evtrack.errors import InvalidParameterValue
from evtrack.server.commit import GroupCommit
from evtrack.store.log.layout import resolve_uri
from evtrack.store.log.store import LogStore
from evtrack.tracking.client import MlflowClient

__all__ = ["ACTIVE_TTL", "Backend"]

#: Seconds a run's "active" state is trusted by the metric-only hot path.
ACTIVE_TTL = 2.0

PROXY_SCHEME = "mlflow-artifacts:"


def _file_url(uri: str) -> str:
    return resolve_uri(uri) if "://" not in uri else uri.rstrip("/")


class Backend:
    """The store-side state of one app: client, artifact root and its public mapping."""

    def __init__(
        self,
        backend_store_uri: str,
        default_artifact_root: str | None,
        serve_artifacts: bool,
        allowed_artifact_locations: Sequence[str] = (),
        artifacts_destination: str | None = None,
    ) -> None:
        from evtrack.artifacts.locations import ArtifactLocations

        store_uri = resolve_uri(backend_store_uri)
        root = _file_url(default_artifact_root) if default_artifact_root else None
        dest = _file_url(artifacts_destination) if artifacts_destination else None
        for name, value in (("--default-artifact-root", root), ("--artifacts-destination", dest)):
            if value and value.startswith(PROXY_SCHEME):
                raise InvalidParameterValue(
                    f"{name} must be a storage URL (a folder, s3://...); the server itself "
                    "maps the proxied root to mlflow-artifacts:/ for clients."
                )
        self.group: GroupCommit | None = None
        self.store = LogStore(
            store_uri,
            artifact_root=root or dest,
            commit=self._group_commit,
            shared=True,
            active_ttl=ACTIVE_TTL,
        )
        layout = self.store.layout
        # As with `mlflow server`: the proxy serves --artifacts-destination, by default a
        # folder of its own, disjoint from the event log (it must never cover experiments/);
        # an explicit --default-artifact-root is where new experiments live, and clients
        # write there directly.
        dest = dest or layout.url("artifacts")
        if root is None:
            root = self.store.artifact_root = dest
        for value in {root, dest}:
            _check_disjoint(layout, value)
        self.group = GroupCommit(self.store.writer.flush)
        self.client = MlflowClient(store=self.store)
        self.serve_artifacts = serve_artifacts
        # Everything under this root is served through the mlflow-artifacts proxy.
        self.proxied_root = dest
        # Runs the Python client created in the store directly keep their artifacts in
        # <store>/experiments/<id>/artifacts; they are shown as mlflow-artifacts:/<id>/...
        # as before. The proxy resolves a path by its run, so the two never mix.
        self.legacy_root = layout.url("experiments")
        allowed = tuple(allowed_artifact_locations) + ((root,) if root != dest else ())
        self.locations = ArtifactLocations(layout, dest, allowed)

    def _group_commit(self) -> None:
        assert self.group is not None
        self.group.commit()

    # -- artifact URIs: stored form <-> what clients see ----------------------------

    @overload
    def public_uri(self, uri: str) -> str: ...
    @overload
    def public_uri(self, uri: None) -> None: ...
    def public_uri(self, uri: str | None) -> str | None:
        """``file:///store/artifacts/1/...`` -> ``mlflow-artifacts:/1/...``."""
        if uri is None or not self.serve_artifacts:
            return uri
        for root in (self.proxied_root, self.legacy_root):
            if uri == root:
                return PROXY_SCHEME + "/"
            if uri.startswith(root + "/"):
                return PROXY_SCHEME + "/" + uri[len(root) + 1 :]
        return uri

    def stored_uri(self, uri: str) -> str:
        """The inverse of :meth:`public_uri` for locations clients send, checked against
        the allow-list (:class:`~evtrack.artifacts.locations.ArtifactLocations`)."""
        if uri.startswith(PROXY_SCHEME):
            rel = uri[len(PROXY_SCHEME) :].lstrip("/")
            from evtrack.tracking.validation import check_artifact_path

            rel = check_artifact_path(rel)
            return f"{self.proxied_root}/{rel}" if rel else self.proxied_root
        if "://" not in uri:
            # A local path is made absolute and kept a path, as `mlflow server` does
            # (resolve_uri_if_local); the allow-list compares it as its file:// URL.
            uri = os.path.abspath(os.path.expanduser(uri))
        return self.locations.check_new(uri)

    def stored_source(self, source: str) -> str:
        """A model version's ``source`` as stored, for a source a client sends.

        ``models:/…`` and ``runs:/…`` URIs name an entity of this store and are kept as
        given (MLflow 3's ``register_model`` sends ``models:/<model_id>``);
        ``mlflow-artifacts:/…`` maps to the artifact root as in :meth:`stored_uri`. Any
        other location must be one this server may read (its artifact root, the store's
        run folders, ``--allowed-artifact-locations``): a version's files are served from
        it, so a client must not point one at ``/etc`` or an internal URL. As in MLflow,
        a ``..`` component is refused everywhere.
        """
        import urllib.parse

        if ".." in urllib.parse.unquote(source).replace("\\", "/").split("/"):
            raise InvalidParameterValue(
                f"Invalid model version source {source!r}: relative path components (..) "
                "are not allowed."
            )
        if source.startswith(("models:/", "runs:/")):
            return source
        if source.startswith(PROXY_SCHEME):
            return self.stored_uri(source)
        url = _file_url(source)
        if not self.locations.may_read(url):
            raise InvalidParameterValue(
                f"Invalid model version source {source!r}: give a models:/ or runs:/ URI, "
                "an mlflow-artifacts:/ URI, or a location under the server's artifact root "
                "or its --allowed-artifact-locations."
            )
        return url

    def proxied_path(self, rel: str) -> str:
        """The storage URL of a path under the proxied root (``rel`` already checked)."""
        return f"{self.proxied_root}/{rel}" if rel else self.proxied_root


def _check_disjoint(store: Any, root: str) -> None:
    """Refuse an artifact root that is the store or lies inside its event log."""
    inside = [store.url(part) for part in ("experiments", "runs", "names")]
    if root.rstrip("/") == store.url().rstrip("/") or any(
        root == p or root.startswith(p + "/") for p in inside
    ):
        raise InvalidParameterValue(
            f"The artifact root {root!r} overlaps the store's event log; use a folder of its "
            f"own, such as {store.url('artifacts')!r} (the default)."
        )
