"""MLflow's ``ArtifactRepository`` for ``evtrack+<protocol>://`` artifact URIs, over fsspec.

Runs of a store on object storage keep their artifacts there too
(``s3://bucket/prefix/experiments/<id>/artifacts/<run>/artifacts``). The tracking-store
plugin shows MLflow such locations as ``evtrack+s3://…`` so that this repository serves
them with evtrack's own :class:`~evtrack.artifacts.repository.ArtifactRepository`:
the same fsspec filesystem and credentials as the store (``FSSPEC_S3_ENDPOINT_URL``,
``AWS_*``), and no boto3 needed. Local artifacts (``file://``) stay with MLflow's own
local repository.
"""

from __future__ import annotations

import os

from mlflow.entities import FileInfo
from mlflow.store.artifact.artifact_repo import ArtifactRepository

from evtrack.artifacts.repository import ArtifactRepository as EvtrackArtifacts
from evtrack.mlflow_plugin.uris import to_store_url

__all__ = ["EvtrackArtifactRepository"]


class EvtrackArtifactRepository(ArtifactRepository):
    """One run's (or experiment's) artifact tree on any fsspec filesystem."""

    def __init__(self, artifact_uri, tracking_uri=None, registry_uri=None) -> None:
        super().__init__(artifact_uri, tracking_uri, registry_uri)
        self._repo = EvtrackArtifacts(to_store_url(artifact_uri))

    def log_artifact(self, local_file, artifact_path=None):
        self._repo.upload_file(local_file, artifact_path)

    def log_artifacts(self, local_dir, artifact_path=None):
        self._repo.upload_dir(local_dir, artifact_path)

    def list_artifacts(self, path=None):
        return [FileInfo(f.path, f.is_dir, f.file_size) for f in self._repo.list(path)]

    def _download_file(self, remote_file_path, local_path):
        data = self._repo.read_bytes(remote_file_path)
        os.makedirs(os.path.dirname(os.path.abspath(local_path)), exist_ok=True)
        with open(local_path, "wb") as out:
            out.write(data)

    def delete_artifacts(self, artifact_path=None):
        self._repo.delete(artifact_path)
