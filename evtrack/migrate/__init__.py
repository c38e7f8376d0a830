"""Moving history between MLflow and evtrack, both ways (``evtrack import`` / ``export``).

:func:`import_mlflow` reads an MLflow file store, database or tracking server
(:mod:`.source` and its readers) into an evtrack store; :func:`export_mlflow` writes an
evtrack store out as an MLflow file store or database. See docs/mlflow-bridge.md.
"""

from __future__ import annotations

from evtrack.migrate.exporter import ExportReport, export_mlflow
from evtrack.migrate.importer import ImportReport, import_mlflow

__all__ = ["ExportReport", "ImportReport", "export_mlflow", "import_mlflow"]
