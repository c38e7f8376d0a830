"""Run the scoring server: resolve the model once, then serve it with uvicorn
(httptools + uvloop when installed) in one or more worker processes.

With ``workers > 1`` uvicorn starts fresh processes that import
:func:`app_from_handoff`; the parent hands them the downloaded model folder and the
options through one environment variable (a process handoff, not a user setting).
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
from typing import Any

from evtrack.errors import EvtrackError, InvalidParameterValue

__all__ = ["app_from_handoff", "build_app", "serve"]

_HANDOFF = "EVTRACK_SCORING_HANDOFF"


def _options(**kw: Any) -> dict[str, Any]:
    return {
        "name": kw.get("name") or "model",
        "timeout": float(kw.get("timeout") or 60),
        "max_body_bytes": int(kw.get("max_body_bytes") or 64 * 1024 * 1024),
        "batch_max_size": int(kw.get("batch_max_size") or 0),
        "batch_max_ms": float(kw.get("batch_max_ms") or 0),
        "multiprocess_metrics": bool(kw.get("multiprocess_metrics")),
    }


def build_app(model_path: str, **options: Any):
    """The ASGI app serving the model folder at ``model_path``."""
    from evtrack.models.pyfunc import load_model
    from evtrack.models.scoring.app import ScoringApp

    return ScoringApp(load_model(model_path), **_options(**options))


def app_from_handoff():
    """uvicorn's factory in worker processes."""
    from evtrack import settings

    data = json.loads(settings.get("scoring_handoff"))
    return build_app(data["model_path"], **data["options"])


def serve(
    model_uri: str,
    host: str = "127.0.0.1",
    port: int = 5000,
    workers: int = 1,
    timeout: float = 60,
    env_manager: str = "local",
    batch_max_size: int = 0,
    batch_max_ms: float = 0,
    max_body_bytes: int = 64 * 1024 * 1024,
    name: str | None = None,
    tracking_uri: str | None = None,
) -> None:
    """Serve ``model_uri`` until interrupted (``evtrack models serve``)."""
    try:
        import prometheus_client  # noqa: F401
        import uvicorn
    except ImportError as exc:
        raise EvtrackError(
            f"Serving needs {exc.name!r}, which is not installed: pip install 'evtrack[serve]'."
        ) from None

    from evtrack.models.uri import download_model

    if workers < 1:
        raise InvalidParameterValue("--workers must be at least 1.")
    local = download_model(model_uri, tracking_uri=tracking_uri)
    if env_manager != "local":
        from evtrack.models.envs import reexec_in_env

        reexec_in_env(
            local,
            env_manager,
            [
                "models",
                "serve",
                "-m",
                local,
                "-h",
                host,
                "-p",
                str(port),
                "-w",
                str(workers),
                "--timeout",
                str(timeout),
                "--batch-max-size",
                str(batch_max_size),
                "--batch-max-ms",
                str(batch_max_ms),
                "--max-body-size",
                str(max_body_bytes),
                "--name",
                name or _default_name(model_uri),
            ],
        )
        return
    options = _options(
        name=name or _default_name(model_uri),
        timeout=timeout,
        max_body_bytes=max_body_bytes,
        batch_max_size=batch_max_size,
        batch_max_ms=batch_max_ms,
    )
    common = functools.partial(
        uvicorn.run,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=5,
        lifespan="on",
    )
    if workers == 1:
        common(build_app(local, **options))
        return
    build_app(local, **options)  # fail here, once, if the model cannot load
    options["multiprocess_metrics"] = True
    # uvicorn's workers are fresh processes: the environment is what they inherit
    os.environ.update({_HANDOFF: json.dumps({"model_path": local, "options": options})})
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="evtrack-prom-"))
    common("evtrack.models.scoring.server:app_from_handoff", factory=True, workers=workers)


def _default_name(model_uri: str) -> str:
    """The V2 model name: a registered model's name, else the folder's last part."""
    if model_uri.startswith("models:/"):
        rest = model_uri[len("models:/") :]
        return rest.split("/")[0].split("@")[0] or "model"
    return os.path.basename(model_uri.rstrip("/")) or "model"
