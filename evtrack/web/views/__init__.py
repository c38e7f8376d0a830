"""One module per page (each registers its routes on :data:`base.blueprint`)."""

from evtrack.web.views import (  # noqa: F401 - routes
    artifacts,
    compare,
    experiments,
    live,
    models,
    run,
    runs,
)
from evtrack.web.views.base import blueprint

__all__ = ["blueprint"]
