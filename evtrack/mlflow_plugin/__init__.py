"""evtrack as a plugin of the stock ``mlflow`` package (``pip install 'evtrack[mlflow]'``).

MLflow finds these through its entry points (``mlflow.tracking_store``,
``mlflow.artifact_repository``, ``mlflow.model_registry_store``), declared in
``pyproject.toml`` for every scheme in :data:`evtrack.mlflow_plugin.uris.SCHEMES`. The
store classes live in :mod:`evtrack.mlflow_plugin.tracking_store` and import ``mlflow``;
this package itself does not, so ``import evtrack`` never pulls MLflow in.
"""
