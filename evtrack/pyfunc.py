"""``evtrack.pyfunc``: MLflow's ``mlflow.pyfunc`` spelling — load any model as a
``python_function``, and save or log custom :class:`PythonModel` subclasses."""

from evtrack.models.flavors.python_model import log_model, save_model
from evtrack.models.pyfunc import (
    FLAVOR_NAME,
    PyFuncModel,
    PythonModel,
    PythonModelContext,
    load_model,
)

__all__ = [
    "FLAVOR_NAME",
    "PyFuncModel",
    "PythonModel",
    "PythonModelContext",
    "load_model",
    "log_model",
    "save_model",
]
