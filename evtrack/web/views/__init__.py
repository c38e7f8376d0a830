"""One module per page (each registers its routes on :data:`base.blueprint`)."""

from . import artifacts, compare, experiments, live, run, runs  # noqa: F401 - routes
from .base import blueprint

__all__ = ["blueprint"]
