"""MLflow's ``mlflow.tracking`` module path: ``from mlflow.tracking import MlflowClient``."""

from evtrack.tracking.client import MlflowClient

__all__ = ["MlflowClient"]
