"""MLflow's module name for the exception tree (``mlflow.exceptions.MlflowException``)."""

from .errors import *  # noqa: F403
from .errors import __all__  # noqa: F401
