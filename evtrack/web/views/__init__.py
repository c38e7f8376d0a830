"""One module per page (each registers its routes on :data:`base.blueprint`)."""

from evtrack.web.views import artifacts, compare, experiments, live, run, runs  # noqa: F401 - routes
from evtrack.web.views.base import blueprint

__all__ = ["blueprint"]
