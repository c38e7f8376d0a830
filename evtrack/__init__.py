"""evtrack: an experiment tracker whose store is an append-only event log.

``import evtrack as mlflow`` runs the usual MLflow tracking scripts unchanged. Importing
evtrack is cheap: pyarrow, DuckDB and pandas load on first use, not here.
"""

from __future__ import annotations

from evtrack import entities, errors, exceptions, tracking  # mlflow.exceptions, mlflow.tracking
from evtrack.entities import ViewType
from evtrack.errors import EvtrackError, MlflowException
from evtrack.tracking.client import MlflowClient
from evtrack.tracking.fluent import (
    ActiveRun,
    active_run,
    create_experiment,
    delete_experiment,
    delete_run,
    delete_tag,
    end_run,
    flush,
    get_artifact_uri,
    get_experiment,
    get_experiment_by_name,
    get_parent_run,
    get_run,
    get_tracking_uri,
    is_tracking_uri_set,
    last_active_run,
    log_artifact,
    log_artifacts,
    log_dict,
    log_figure,
    log_image,
    log_metric,
    log_metric_series,
    log_metrics,
    log_param,
    log_params,
    log_text,
    search_experiments,
    search_runs,
    set_experiment,
    set_experiment_tag,
    set_experiment_tags,
    set_tag,
    set_tags,
    set_tracking_uri,
    sql,
    start_run,
)

__version__ = "0.1.0"

_LAZY_MODULES = ("models", "pyfunc", "sklearn")  # mlflow.sklearn.log_model(...) spellings


def register_model(model_uri: str, name: str, tags: dict | None = None, **kwargs):
    """MLflow's ``register_model``: a new version of ``name`` from ``model_uri``."""
    from evtrack.models.registry_api import register_model as register

    return register(model_uri, name, tags, **kwargs)


def __getattr__(name: str):
    # Imported on first use so that `import evtrack` stays light.
    if name in _LAZY_MODULES:
        import importlib

        return importlib.import_module(f"evtrack.{name}")
    raise AttributeError(f"module 'evtrack' has no attribute {name!r}")


__all__ = [
    "ActiveRun",
    "EvtrackError",
    "MlflowClient",
    "MlflowException",
    "ViewType",
    "__version__",
    "active_run",
    "create_experiment",
    "delete_experiment",
    "delete_run",
    "delete_tag",
    "end_run",
    "entities",
    "errors",
    "exceptions",
    "flush",
    "get_artifact_uri",
    "get_experiment",
    "get_experiment_by_name",
    "get_parent_run",
    "get_run",
    "get_tracking_uri",
    "is_tracking_uri_set",
    "last_active_run",
    "log_artifact",
    "log_artifacts",
    "log_dict",
    "log_figure",
    "log_image",
    "log_metric",
    "log_metric_series",
    "log_metrics",
    "log_param",
    "log_params",
    "log_text",
    "models",
    "pyfunc",
    "register_model",
    "search_experiments",
    "search_runs",
    "set_experiment",
    "set_experiment_tag",
    "set_experiment_tags",
    "set_tag",
    "set_tags",
    "set_tracking_uri",
    "sklearn",
    "sql",
    "start_run",
    "tracking",
]
