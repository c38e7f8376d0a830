"""Compile parsed searches into parameterised DuckDB SQL with MLflow's semantics.

The SQL runs over the public views (treated as a contract, one row per run and key
in ``params``, ``tags`` and ``latest_metrics``)::

    runs(run_id, experiment_id, run_name, user_id, status, start_time, end_time,
         lifecycle_stage, artifact_uri, deleted_time)
    params(run_id, key, value)   tags(run_id, key, value)
    latest_metrics(run_id, key, value, step, timestamp)
    inputs(run_id, name, digest, context)
    experiments(experiment_id, name, artifact_location, lifecycle_stage,
                creation_time, last_update_time)
    experiment_tags(experiment_id, key, value)

Every user-supplied value *and key* is a ``?`` parameter; the only identifiers that
reach the SQL text come from fixed tables in this module, so no filter can inject SQL.

The semantics are those of MLflow's SQLAlchemy store (``sqlalchemy_store.py``):

* a run without the key never matches a metric/param/tag comparison, not even ``!=``;
* metrics compare the latest value; NaN matches only ``!=`` (MLflow stores NaN as
  ``0`` plus an ``is_nan`` flag and special-cases it; DuckDB would otherwise treat NaN
  as the largest number, equal to itself);
* ``attributes.run_name`` *filters* on the ``mlflow.runName`` tag but *sorts* on the
  run's name column, as MLflow does;
* ``order_by`` puts missing values last in both directions (and NaN metrics after
  real values, before missing ones), then sorts by ``start_time DESC`` (unless
  already sorted by it) and ``run_id ASC``;
* pages are ``LIMIT max_results + 1 OFFSET n``; the extra row says whether there is a
  next page, whose token is MLflow's base64 JSON ``{"offset": n}``.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from evtrack.errors import InvalidParameterValue
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
    "SearchQuery",
    "build_search_experiments",
    "build_search_runs",
    "compile_search_experiments",
    "compile_search_runs",
    "decode_page_token",
    "next_page_token",
    "search_experiment_ids",
    "search_run_ids",
]

# MLflow's ViewType values and search limits (mlflow.store.tracking).
ACTIVE_ONLY, DELETED_ONLY, ALL = 1, 2, 3
SEARCH_MAX_RESULTS_DEFAULT = 1000
SEARCH_MAX_RESULTS_THRESHOLD = 50000
RUN_NAME_TAG = "mlflow.runName"
_DBL_MAX = sys.float_info.max

_SQL_OPERATORS = {
    "=": "=",
    "!=": "<>",
    "<": "<",
    "<=": "<=",
    ">": ">",
    ">=": ">=",
    "LIKE": "LIKE",
    "ILIKE": "ILIKE",
}
_RUN_COLUMNS = {  # attribute key -> column of the runs view
    "run_id": "r.run_id",
    "run_name": "r.run_name",
    "user_id": "r.user_id",
    "status": "r.status",
    "artifact_uri": "r.artifact_uri",
    "start_time": "r.start_time",
    "end_time": "r.end_time",
}
_KEY_VALUE_TABLES = {"metric": "latest_metrics", "parameter": "params", "tag": "tags"}
_DATASET_COLUMNS = {"name": "name", "digest": "digest", "context": "context"}
_EXPERIMENT_COLUMNS = {
    "name": "e.name",
    "experiment_id": "e.experiment_id",
    "creation_time": "e.creation_time",
    "last_update_time": "e.last_update_time",
}
_DEFAULT_EXPERIMENT_ORDER = ["creation_time DESC", "experiment_id ASC"]


class _Connection(Protocol):
    """What the search helpers need of a DuckDB connection."""

    def execute(self, query: str, parameters: object = ...) -> Any: ...


@dataclass(frozen=True)
class SearchQuery:
    """Compiled SQL plus what is needed to cut its rows into a page."""

    sql: str
    params: list[Any]
    offset: int
    max_results: int | None
    # The parsed search, for evaluate.py's plain-Python twin of the SQL (runs only).
    experiment_ids: tuple[str, ...] = ()
    stages: tuple[str, ...] = ()
    comparisons: tuple[Comparison, ...] = ()
    order: tuple[OrderBy, ...] = ()

    def page(self, ids: Sequence[str]) -> tuple[list[str], str | None]:
        """Split the rows of :attr:`sql` into this page and the next page's token."""
        if self.max_results is None or len(ids) <= self.max_results:
            return list(ids), None
        return list(ids[: self.max_results]), next_page_token(self.offset + self.max_results)


# --- pages, limits, view types -------------------------------------------------------


def next_page_token(offset: int) -> str:
    """MLflow's page token for the page starting at ``offset``: base64 of ``{"offset": n}``."""
    return base64.b64encode(json.dumps({"offset": offset}).encode("utf-8")).decode("ascii")


def decode_page_token(page_token: str | bytes | None) -> int:
    """The offset a page token points at; ``None`` or ``""`` is the first page (0).

    Accepts tokens written by MLflow and by :func:`next_page_token`. Unlike MLflow,
    a negative offset is rejected instead of reaching the database.
    """
    if not page_token:
        return 0
    try:
        decoded = base64.b64decode(page_token)
    except (TypeError, ValueError, binascii.Error):
        raise InvalidParameterValue("Invalid page token, could not base64-decode") from None
    try:
        parsed = json.loads(decoded)
    except ValueError:
        raise InvalidParameterValue(f"Invalid page token, decoded value={decoded!r}") from None
    offset = parsed.get("offset") if isinstance(parsed, dict) else None
    if not offset:
        raise InvalidParameterValue(f"Invalid page token, parsed value={parsed}")
    try:
        offset = int(offset)
    except (TypeError, ValueError):
        raise InvalidParameterValue(f"Invalid page token, not stringable {offset}") from None
    if offset < 0:
        raise InvalidParameterValue(f"Invalid page token, negative offset {offset}")
    return offset


def _validate_max_results(max_results: int | None, allow_null: bool) -> None:
    if max_results is None and allow_null:
        return
    if not isinstance(max_results, int) or isinstance(max_results, bool) or max_results < 1:
        raise InvalidParameterValue(
            f"Invalid value {max_results} for parameter 'max_results' supplied. It must be "
            "a positive integer"
        )
    if max_results > SEARCH_MAX_RESULTS_THRESHOLD:
        raise InvalidParameterValue(
            f"Invalid value {max_results} for parameter 'max_results' supplied. It must be at "
            f"most {SEARCH_MAX_RESULTS_THRESHOLD}"
        )


def _stages(view_type: int) -> list[str]:
    stages = {ACTIVE_ONLY: ["active"], DELETED_ONLY: ["deleted"], ALL: ["active", "deleted"]}
    try:
        return stages[int(view_type)]
    except (KeyError, TypeError, ValueError):
        raise InvalidParameterValue(
            f"Invalid view type {view_type!r}: use 1 (ACTIVE_ONLY), 2 (DELETED_ONLY) or 3 (ALL)"
        ) from None


def _placeholders(n: int) -> str:
    return ", ".join("?" * n)


# --- run filters ---------------------------------------------------------------------


class _Sql:
    """SQL fragments with their parameters, kept in the order they appear in the text."""

    def __init__(self) -> None:
        self.joins: list[str] = []
        self.join_params: list[Any] = []
        self.where: list[str] = []
        self.where_params: list[Any] = []
        self.order: list[str] = []

    def add_where(self, clause: str, *params: Any) -> None:
        self.where.append(clause)
        self.where_params.extend(params)


def _value_test(column: str, comparison: Comparison, sql: _Sql) -> str:
    """``column <op> ?`` for one comparison, registering its parameter(s)."""
    value = comparison.value
    if comparison.comparator in ("IN", "NOT IN"):
        assert isinstance(value, tuple)
        sql.where_params.extend(value)
        return f"{column} {comparison.comparator} ({_placeholders(len(value))})"
    sql.where_params.append(value)
    return f"{column} {_SQL_OPERATORS[comparison.comparator]} ?"


def _clamped(column: str) -> str:
    """A metric value as MLflow's SQL store holds it: it stores +-inf as +-DBL_MAX, so
    ``metrics.m = 1.7976931348623157e308`` matches an infinite value and inf ties with
    DBL_MAX when sorting. NaN passes through unchanged (it is handled separately)."""
    return f"greatest(least({column}, {_DBL_MAX!r}), {-_DBL_MAX!r})"


def _run_filter(c: Comparison, sql: _Sql) -> None:
    if c.entity_type == "attribute" and c.key != "run_name":
        sql.where.append(_value_test(_RUN_COLUMNS[c.key], c, sql))
        return
    if c.entity_type == "dataset":
        test = _value_test("i." + _DATASET_COLUMNS[c.key], c, sql)
        sql.where.append(f"EXISTS (SELECT 1 FROM inputs AS i WHERE i.run_id = r.run_id AND {test})")
        return
    if c.entity_type == "attribute":  # run_name: MLflow reads the mlflow.runName tag
        table, key = "tags", RUN_NAME_TAG
    else:
        table, key = _KEY_VALUE_TABLES[c.entity_type], c.key
    head = f"EXISTS (SELECT 1 FROM {table} AS k WHERE k.run_id = r.run_id AND k.key = ?"
    if c.comparator in ("IS NULL", "IS NOT NULL"):
        negate = "NOT " if c.comparator == "IS NULL" else ""
        sql.add_where(f"{negate}{head})", key)
        return
    sql.where_params.append(key)
    column = _clamped("k.value") if c.entity_type == "metric" else "k.value"
    test = _value_test(column, c, sql)
    if c.entity_type == "metric":
        # NaN satisfies only "!="; DuckDB would otherwise order NaN above +inf.
        nan = "isnan(k.value)"
        test = f"({nan} OR {test})" if c.comparator == "!=" else f"(NOT {nan} AND {test})"
    sql.where.append(f"{head} AND {test})")


def _run_order(obs: list[OrderBy], sql: _Sql) -> None:
    for n, ob in enumerate(obs, start=1):
        direction = "ASC" if ob.ascending else "DESC"
        if ob.entity_type == "attribute":
            column = _RUN_COLUMNS[ob.key]
            sql.order.append(f"CASE WHEN {column} IS NULL THEN 1 ELSE 0 END")
        else:
            alias, table = f"o{n}", _KEY_VALUE_TABLES[ob.entity_type]
            sql.joins.append(
                f"LEFT JOIN {table} AS {alias} ON {alias}.run_id = r.run_id AND {alias}.key = ?"
            )
            sql.join_params.append(ob.key)
            column = f"{alias}.value"
            if ob.entity_type == "metric":
                sql.order.append(
                    f"CASE WHEN isnan({column}) THEN 1 WHEN {column} IS NULL THEN 2 ELSE 0 END"
                )
                column = _clamped(column)
            else:
                sql.order.append(f"CASE WHEN {column} IS NULL THEN 1 ELSE 0 END")
        sql.order.append(f"{column} {direction}")
    if not any(ob.entity_type == "attribute" and ob.key == "start_time" for ob in obs):
        sql.order.append("r.start_time DESC")
    sql.order.append("r.run_id ASC")


def _paged(text: str, params: list[Any], max_results: int | None, offset: int) -> SearchQuery:
    """Add LIMIT (one extra row, to detect a next page) and OFFSET, both as parameters."""
    params = list(params)
    if max_results is not None:
        text += "\nLIMIT ?"
        params.append(max_results + 1)
    params.append(offset)
    return SearchQuery(text + "\nOFFSET ?", params, offset, max_results)


def build_search_runs(
    experiment_ids: Sequence[str],
    filter_string: str | None = None,
    run_view_type: int = ACTIVE_ONLY,
    max_results: int | None = SEARCH_MAX_RESULTS_DEFAULT,
    order_by: list[str] | None = None,
    page_token: str | None = None,
) -> SearchQuery:
    """Like :func:`compile_search_runs`, returning a :class:`SearchQuery`."""
    _validate_max_results(max_results, allow_null=True)
    if isinstance(experiment_ids, (str, bytes)):
        experiment_ids = [str(experiment_ids)]
    stages = _stages(run_view_type)
    comparisons = parse_filter(filter_string)
    order = parse_order_by(order_by)
    offset = decode_page_token(page_token)
    sql = _Sql()
    ids = [str(e) for e in experiment_ids]
    if ids:
        sql.add_where(f"r.experiment_id IN ({_placeholders(len(ids))})", *ids)
    else:
        sql.add_where("FALSE")
    sql.add_where(f"r.lifecycle_stage IN ({_placeholders(len(stages))})", *stages)
    for comparison in comparisons:
        _run_filter(comparison, sql)
    _run_order(order, sql)
    text = "\n".join(
        ["SELECT r.run_id", "FROM runs AS r", *sql.joins]
        + ["WHERE " + "\n  AND ".join(sql.where), "ORDER BY " + ",\n  ".join(sql.order)]
    )
    query = _paged(text, [*sql.join_params, *sql.where_params], max_results, offset)
    return dataclasses.replace(
        query,
        experiment_ids=tuple(ids),
        stages=tuple(stages),
        comparisons=tuple(comparisons),
        order=tuple(order),
    )


def compile_search_runs(
    experiment_ids: Sequence[str],
    filter_string: str | None = None,
    run_view_type: int = ACTIVE_ONLY,
    max_results: int | None = SEARCH_MAX_RESULTS_DEFAULT,
    order_by: list[str] | None = None,
    page_token: str | None = None,
) -> tuple[str, list[Any], int]:
    """``(sql, params, offset)``: SQL selecting the ``run_id`` of one page of
    ``search_runs`` in result order, its parameters, and the page's offset.

    Arguments are those of MLflow's ``search_runs``. The SQL fetches up to
    ``max_results + 1`` rows: if it returns more than ``max_results``, keep the first
    ``max_results`` and hand out ``next_page_token(offset + max_results)``
    (:meth:`SearchQuery.page` and :func:`search_run_ids` do this). ``max_results=None``
    means no limit, as in MLflow's SQL store. Raises
    :class:`~evtrack.errors.InvalidFilter` for a bad filter or ``order_by`` and
    :class:`~evtrack.errors.InvalidParameterValue` for a bad limit, view type or token.
    """
    q = build_search_runs(
        experiment_ids, filter_string, run_view_type, max_results, order_by, page_token
    )
    return q.sql, q.params, q.offset


def search_run_ids(
    con: _Connection,
    experiment_ids: Sequence[str],
    filter_string: str | None = None,
    run_view_type: int = ACTIVE_ONLY,
    max_results: int | None = SEARCH_MAX_RESULTS_DEFAULT,
    order_by: list[str] | None = None,
    page_token: str | None = None,
) -> tuple[list[str], str | None]:
    """Run ``search_runs`` on a DuckDB connection that has the views: ``(run_ids, next_page_token)``."""
    q = build_search_runs(
        experiment_ids, filter_string, run_view_type, max_results, order_by, page_token
    )
    return q.page([row[0] for row in con.execute(q.sql, q.params).fetchall()])


# --- experiments -----------------------------------------------------------------------


def _experiment_filter(c: Comparison, sql: _Sql) -> None:
    if c.entity_type == "attribute":
        sql.where.append(_value_test(_EXPERIMENT_COLUMNS[c.key], c, sql))
        return
    head = (
        "EXISTS (SELECT 1 FROM experiment_tags AS k "
        "WHERE k.experiment_id = e.experiment_id AND k.key = ?"
    )
    if c.comparator in ("IS NULL", "IS NOT NULL"):
        negate = "NOT " if c.comparator == "IS NULL" else ""
        sql.add_where(f"{negate}{head})", c.key)
        return
    sql.where_params.append(c.key)
    sql.where.append(f"{head} AND {_value_test('k.value', c, sql)})")


def _experiment_order(obs: list[OrderBy], sql: _Sql) -> None:
    if not any(ob.key == "experiment_id" for ob in obs):
        obs = [*obs, OrderBy("attribute", "experiment_id", ascending=False)]
    for ob in obs:
        direction = "ASC" if ob.ascending else "DESC"
        if ob.key == "experiment_id":
            # MLflow's ids are integers; sort numeric ids as numbers, any others after.
            sql.order.append(f"TRY_CAST(e.experiment_id AS HUGEINT) {direction} NULLS LAST")
        sql.order.append(f"{_EXPERIMENT_COLUMNS[ob.key]} {direction} NULLS LAST")


def build_search_experiments(
    view_type: int = ACTIVE_ONLY,
    filter_string: str | None = None,
    max_results: int = SEARCH_MAX_RESULTS_DEFAULT,
    order_by: list[str] | None = None,
    page_token: str | None = None,
) -> SearchQuery:
    """Like :func:`compile_search_experiments`, returning a :class:`SearchQuery`."""
    _validate_max_results(max_results, allow_null=False)
    stages = _stages(view_type)
    comparisons = parse_experiments_filter(filter_string)
    order = parse_experiments_order_by(order_by or _DEFAULT_EXPERIMENT_ORDER)
    offset = decode_page_token(page_token)
    sql = _Sql()
    sql.add_where(f"e.lifecycle_stage IN ({_placeholders(len(stages))})", *stages)
    for comparison in comparisons:
        _experiment_filter(comparison, sql)
    _experiment_order(order, sql)
    text = "\n".join(
        [
            "SELECT e.experiment_id",
            "FROM experiments AS e",
            "WHERE " + "\n  AND ".join(sql.where),
            "ORDER BY " + ",\n  ".join(sql.order),
        ]
    )
    return _paged(text, sql.where_params, max_results, offset)


def compile_search_experiments(
    view_type: int = ACTIVE_ONLY,
    filter_string: str | None = None,
    max_results: int = SEARCH_MAX_RESULTS_DEFAULT,
    order_by: list[str] | None = None,
    page_token: str | None = None,
) -> tuple[str, list[Any], int]:
    """``(sql, params, offset)`` selecting the ``experiment_id`` of one page of
    ``search_experiments``.

    Default order is MLflow's: ``creation_time DESC, experiment_id ASC``; any other
    ``order_by`` gets ``experiment_id DESC`` as the last tie-breaker, as in MLflow.
    Paging works as in :func:`compile_search_runs`; ``max_results`` may not be None.
    """
    q = build_search_experiments(view_type, filter_string, max_results, order_by, page_token)
    return q.sql, q.params, q.offset


def search_experiment_ids(
    con: _Connection,
    view_type: int = ACTIVE_ONLY,
    filter_string: str | None = None,
    max_results: int = SEARCH_MAX_RESULTS_DEFAULT,
    order_by: list[str] | None = None,
    page_token: str | None = None,
) -> tuple[list[str], str | None]:
    """Run ``search_experiments`` on a DuckDB connection: ``(experiment_ids, next_page_token)``."""
    q = build_search_experiments(view_type, filter_string, max_results, order_by, page_token)
    return q.page([row[0] for row in con.execute(q.sql, q.params).fetchall()])
