"""Search: MLflow's filter and order_by grammar, parsed and compiled to DuckDB SQL.

``parser`` turns strings into a typed AST; ``compiler`` turns the AST into
parameterised SQL over the public views (``runs``, ``params``, ``tags``,
``latest_metrics``, ``inputs``, ``experiments``, ``experiment_tags``). Neither
module imports duckdb: they build text and parameter lists, and the caller runs them
(or hands a connection to :func:`search_run_ids` / :func:`search_experiment_ids`).
``docs/search.md`` describes the grammar and where evtrack differs from MLflow.
"""

from evtrack.search.compiler import (
    ACTIVE_ONLY,
    ALL,
    DELETED_ONLY,
    SEARCH_MAX_RESULTS_DEFAULT,
    SEARCH_MAX_RESULTS_THRESHOLD,
    SearchQuery,
    build_search_experiments,
    build_search_runs,
    compile_search_experiments,
    compile_search_runs,
    decode_page_token,
    next_page_token,
    search_experiment_ids,
    search_run_ids,
)
from evtrack.search.parser import (
    Comparison,
    OrderBy,
    parse_experiments_filter,
    parse_experiments_order_by,
    parse_filter,
    parse_order_by,
)

__all__ = [
    "ACTIVE_ONLY",
    "ALL",
    "DELETED_ONLY",
    "SEARCH_MAX_RESULTS_DEFAULT",
    "SEARCH_MAX_RESULTS_THRESHOLD",
    "Comparison",
    "OrderBy",
    "SearchQuery",
    "build_search_experiments",
    "build_search_runs",
    "compile_search_experiments",
    "compile_search_runs",
    "decode_page_token",
    "next_page_token",
    "parse_experiments_filter",
    "parse_experiments_order_by",
    "parse_filter",
    "parse_order_by",
    "search_experiment_ids",
    "search_run_ids",
]
