"""Model URIs -> a local model folder.

Accepted: a local path or ``file://`` URL (used in place), ``runs:/<run_id>/<path>``
(the run's artifacts), ``models:/<model_id>`` (a logged model, ``m-…``),
``models:/<name>/<version>`` and ``models:/<name>@<alias>`` (the registry), and any
other fsspec URL (``s3://``, ``gs://``, ``memory://``…), which is copied into a
temporary folder. Remote models are downloaded on every call; nothing is cached.
"""

from __future__ import annotations

import os
import tempfile
from urllib.parse import urlparse

from evtrack.errors import InvalidParameterValue, ResourceDoesNotExist

__all__ = ["download_model", "parse_runs_uri"]


def parse_runs_uri(uri: str) -> tuple[str, str]:
    """``runs:/<run_id>/<path>`` -> (run_id, path)."""
    rest = uri[len("runs:") :].lstrip("/")
    run_id, _, path = rest.partition("/")
    if not run_id:
        raise InvalidParameterValue(
            f"Invalid model URI {uri!r}: expected runs:/<run_id>/<artifact path>."
        )
    return run_id, path.strip("/")


def _client(tracking_uri: str | None):
    from evtrack.tracking.client import MlflowClient

    return MlflowClient(tracking_uri)


def download_model(uri: str, dst: str | None = None, tracking_uri: str | None = None) -> str:
    """A local folder holding the model named by ``uri`` (downloaded when remote)."""
    if not isinstance(uri, str) or not uri:
        raise InvalidParameterValue("A model URI is required (a path, runs:/…, models:/…).")
    scheme = urlparse(uri).scheme
    if uri.startswith("runs:"):
        run_id, path = parse_runs_uri(uri)
        dst = dst or tempfile.mkdtemp(prefix="evtrack-model-")
        return _client(tracking_uri).download_artifacts(run_id, path, dst)
    if uri.startswith("models:"):
        from evtrack.models.registry_uri import resolve_models_uri

        return download_model(resolve_models_uri(uri, tracking_uri), dst, tracking_uri)
    if uri.startswith("mlflow-artifacts:"):
        return _download_proxied(uri, dst, tracking_uri)
    if scheme in ("", "file") or (len(scheme) == 1 and os.name == "nt"):
        local = urlparse(uri).path if scheme == "file" else uri
        if not os.path.exists(local):
            raise ResourceDoesNotExist(f"No model at {uri!r}: the path does not exist.")
        return os.path.abspath(local)
    import fsspec

    try:
        fs, root = fsspec.core.url_to_fs(uri)
    except (ImportError, ValueError) as exc:
        raise InvalidParameterValue(f"Cannot open model URI {uri!r}: {exc}") from None
    if not fs.exists(root):
        raise ResourceDoesNotExist(f"No model at {uri!r}.")
    dst = dst or tempfile.mkdtemp(prefix="evtrack-model-")
    target = os.path.join(dst, os.path.basename(root.rstrip("/")) or "model")
    fs.get(root.rstrip("/") + "/", target, recursive=True)
    return target


def _download_proxied(uri: str, dst: str | None, tracking_uri: str | None) -> str:
    """``mlflow-artifacts:/…`` through the proxy of the http(s) tracking server."""
    client = _client(tracking_uri)
    http = getattr(client.store, "http", None)
    if http is None:
        raise InvalidParameterValue(
            f"{uri!r} is served by a tracking server's artifact proxy: set the tracking URI "
            "to that server (http://…) to load it."
        )
    from evtrack.store.rest.artifacts import ProxiedArtifacts

    dst = dst or tempfile.mkdtemp(prefix="evtrack-model-")
    return ProxiedArtifacts(http, uri).download(None, os.path.join(dst, "model"))
