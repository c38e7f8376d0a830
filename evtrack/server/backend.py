"""What one server worker holds: the store, its writer, group commit, artifact mapping.

:class:`ServerClient` is evtrack's :class:`~evtrack.tracking.client.MlflowClient` with the
differences a shared, multi-process server needs:

* every ``writer.flush()`` the client makes goes through :class:`GroupCommit`, so a
  request returns only when its events are durable and concurrent requests share flushes;
* params already logged are re-read from the store before a param is accepted (another
  worker may have logged it), instead of trusting this process's cache;
* new experiments get their artifact location under the server's artifact root;
* "is this run active" is cached for :data:`ACTIVE_TTL` seconds for metric-only
  batches, the hot path. A run deleted through another worker may accept metric points
  for that long; a run deleted through this worker refuses them at once.

Artifact URIs are stored as real fsspec URLs (so ``evtrack`` reading the store finds
the files); with ``serve_artifacts`` the REST API shows those under the proxied root
as ``mlflow-artifacts:/…``, which the stock client uploads and downloads through
``/api/2.0/mlflow-artifacts/artifacts/…``, exactly as with ``mlflow server``.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from evtrack.errors import InvalidParameterValue
from evtrack.server.commit import GroupCommit
from evtrack.store.log.layout import resolve_uri
from evtrack.tracking.client import MlflowClient

__all__ = ["ACTIVE_TTL", "Backend", "ServerClient"]

#: Seconds a run's "active" state is trusted by the metric-only hot path.
ACTIVE_TTL = 2.0

PROXY_SCHEME = "mlflow-artifacts:"


class _CommittingWriter:
    """The worker's writer, whose ``flush`` is a group commit."""

    def __init__(self, writer: Any, commit: GroupCommit) -> None:
        self._writer = writer
        self._commit = commit

    def flush(self) -> None:
        self._commit.commit()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._writer, name)


class ServerClient(MlflowClient):
    def __init__(self, tracking_uri: str, artifact_root: str | None) -> None:
        super().__init__(tracking_uri)
        self.artifact_root = artifact_root.rstrip("/") if artifact_root else None
        self.raw_writer = self.writer
        self.group = GroupCommit(self.raw_writer.flush)
        self.writer = _CommittingWriter(self.raw_writer, self.group)  # type: ignore[assignment]
        self._active: dict[str, float] = {}
        self._active_lock = threading.Lock()

    def _default_artifact_location(self, experiment_id: str) -> str:
        if self.artifact_root:
            return f"{self.artifact_root}/{experiment_id}"
        return super()._default_artifact_location(experiment_id)

    def _check_params(self, run_id: str, params: dict[str, str]) -> dict[str, str]:
        self._state.params.pop(run_id, None)  # another worker may have logged it
        return super()._check_params(run_id, params)

    # -- the hot path's cached run check ---------------------------------------------

    def check_run_active(self, run_id: str) -> str:
        """The run's experiment id; raises if the run is missing or not active."""
        experiment_id = self._experiment_of(run_id)
        checked = self._active.get(run_id)
        if checked is not None and time.monotonic() - checked < ACTIVE_TTL:
            return experiment_id
        self._run_must_be_active(run_id)
        with self._active_lock:
            if len(self._active) > 100_000:
                self._active.clear()
            self._active[run_id] = time.monotonic()
        return experiment_id

    def forget_run(self, run_id: str) -> None:
        self._active.pop(run_id, None)

    def _set_run_stage(self, run_id: str, stage: str) -> None:
        self.forget_run(run_id)
        super()._set_run_stage(run_id, stage)


def _file_url(uri: str) -> str:
    return resolve_uri(uri) if "://" not in uri else uri.rstrip("/")


class Backend:
    """The store-side state of one app: client, artifact root and its public mapping."""

    def __init__(
        self,
        backend_store_uri: str,
        default_artifact_root: str | None,
        serve_artifacts: bool,
        artifacts_destination: str | None = None,
    ) -> None:
        store_uri = resolve_uri(backend_store_uri)
        root = _file_url(default_artifact_root) if default_artifact_root else None
        dest = _file_url(artifacts_destination) if artifacts_destination else None
        for name, value in (("--default-artifact-root", root), ("--artifacts-destination", dest)):
            if value and value.startswith(PROXY_SCHEME):
                raise InvalidParameterValue(
                    f"{name} must be a storage URL (a folder, s3://...); the server itself "
                    "maps the proxied root to mlflow-artifacts:/ for clients."
                )
        # As with `mlflow server`: an explicit --default-artifact-root is where new
        # experiments live and clients write there directly; the proxy serves
        # --artifacts-destination (default: the store's experiments/ folder).
        self.client = ServerClient(store_uri, root or dest)
        self.serve_artifacts = serve_artifacts
        # Everything under this root is served through the mlflow-artifacts proxy.
        self.proxied_root = dest or self.client.store.url("experiments")

    # -- artifact URIs: stored form <-> what clients see ----------------------------

    def public_uri(self, uri: str | None) -> str | None:
        """``file:///store/experiments/1/artifacts/...`` -> ``mlflow-artifacts:/1/...``."""
        if uri is None or not self.serve_artifacts:
            return uri
        root = self.proxied_root
        if uri == root:
            return PROXY_SCHEME + "/"
        if uri.startswith(root + "/"):
            return PROXY_SCHEME + "/" + uri[len(root) + 1 :]
        return uri

    def stored_uri(self, uri: str) -> str:
        """The inverse of :meth:`public_uri`, for locations clients send."""
        if uri.startswith(PROXY_SCHEME):
            rel = uri[len(PROXY_SCHEME) :].lstrip("/")
            from evtrack.tracking.validation import check_artifact_path

            rel = check_artifact_path(rel)
            return f"{self.proxied_root}/{rel}" if rel else self.proxied_root
        return uri

    def proxied_path(self, rel: str) -> str:
        """The storage URL of a path under the proxied root (``rel`` already checked)."""
        return f"{self.proxied_root}/{rel}" if rel else self.proxied_root
