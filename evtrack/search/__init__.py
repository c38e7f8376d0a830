"""Search: MLflow's filter and order_by grammar, parsed and compiled to DuckDB SQL.

``parser`` turns strings into a typed AST; ``compiler`` turns the AST into
parameterised SQL over the public views (``runs``, ``params``, ``tags``,
``latest_metrics``, ``inputs``, ``experiments``, ``experiment_tags``). Neither
module imports duckdb: they build text and parameter lists, and the caller runs them.
"""
