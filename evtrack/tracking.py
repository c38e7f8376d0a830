"""MLflow's ``mlflow.tracking`` module path: ``from mlflow.tracking import MlflowClient``."""

from .client import MlflowClient

__all__ = ["MlflowClient"]
