"""MLflow's module name for the exception tree (``mlflow.exceptions.MlflowException``)."""

from evtrack.errors import *  # noqa: F403
from evtrack.errors import __all__  # noqa: F401
