"""Run a parsed ``search_runs`` over runs held as plain Python, with the SQL's semantics.

:mod:`evtrack.search.compiler` turns a search into DuckDB SQL over the run views. A
fresh process whose saved run summary is current (:mod:`evtrack.store.log.run_summary`)
answers without importing DuckDB: this module evaluates the same parsed search — the
:class:`~evtrack.search.compiler.SearchQuery` that ``build_search_runs`` parsed and
validated once — over the runs in Python, and must give exactly the rows the SQL gives
(``tests/test_search_fast_path.py`` pins the two against each other):

* a missing key, or a NULL column (``end_time`` of a running run), never matches, not
  even ``!=`` or ``NOT IN`` (SQL's three-valued logic);
* metrics compare the latest value clamped to ±DBL_MAX; NaN matches only ``!=``;
* ``attributes.run_name`` filters on the ``mlflow.runName`` tag, sorts on the run name;
* ``LIKE``/``ILIKE`` as DuckDB does them: ``%`` any run of characters, ``_`` one
  character, no escape character; ``ILIKE`` compares lower case (Unicode's simple
  mapping, as DuckDB's);
* order: each ``order_by`` key with missing values (and for metrics NaN, then missing)
  last in either direction, then ``start_time DESC`` unless ordered by it, then
  ``run_id ASC``; then the SQL's ``OFFSET``/``LIMIT max_results + 1``.
"""

from __future__ import annotations

import operator
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any, Protocol

from evtrack.search.compiler import RUN_NAME_TAG, SearchQuery
from evtrack.search.parser import Comparison, OrderBy

__all__ = ["SearchableRun", "evaluate_search_runs", "like"]

_DBL_MAX = sys.float_info.max
_DATASET_FIELDS = {"name": 0, "digest": 1, "context": 2}


class SearchableRun(Protocol):
    """What the evaluator reads of a run: its ``runs`` view row and its keyed values."""

    @property
    def info(self) -> Mapping[str, Any]: ...
    @property
    def params(self) -> Mapping[str, str]: ...
    @property
    def tags(self) -> Mapping[str, str]: ...
    @property
    def metrics(self) -> Sequence[tuple[str, float, int, int]]: ...  # key, value, ts, step
    @property
    def inputs(self) -> Sequence[tuple[str | None, str | None, str | None]]: ...


@lru_cache(maxsize=256)
def _like_regex(pattern: str) -> re.Pattern[str]:
    parts = (".*" if ch == "%" else "." if ch == "_" else re.escape(ch) for ch in pattern)
    return re.compile("".join(parts), re.DOTALL)


def _lower(text: str) -> str:
    # Python's lower() uses the full mapping, which turns U+0130 into two characters;
    # DuckDB uses the simple one-to-one mapping ("i"). That is the only difference.
    return text.replace("\u0130", "i").lower()


def like(value: str, pattern: str, case_insensitive: bool = False) -> bool:
    """DuckDB's ``value LIKE pattern`` (``ILIKE`` with ``case_insensitive``)."""
    if case_insensitive:
        value, pattern = _lower(value), _lower(pattern)
    return _like_regex(pattern).fullmatch(value) is not None


def _tester(comparator: str, value: Any) -> Callable[[Any], bool]:
    """``actual <comparator> value`` as a function of ``actual``, under SQL's rules: NULL
    (None) compares to nothing, not even with ``!=`` or ``NOT IN``."""
    if comparator in ("LIKE", "ILIKE"):
        insensitive = comparator == "ILIKE"
        regex = _like_regex(_lower(value) if insensitive else value)
        if insensitive:
            return lambda a: a is not None and regex.fullmatch(_lower(a)) is not None
        return lambda a: a is not None and regex.fullmatch(a) is not None
    if comparator in ("IN", "NOT IN"):
        values = frozenset(value)
        if comparator == "IN":
            return lambda a: a is not None and a in values
        return lambda a: a is not None and a not in values
    op = _OPERATORS[comparator]  # KeyError: the parser allows no other comparator
    return lambda a: a is not None and bool(op(a, value))


_OPERATORS: dict[str, Callable[[Any, Any], Any]] = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def _clamp(value: float) -> float:
    """A metric value as MLflow's SQL store holds it (±inf as ±DBL_MAX)."""
    return max(min(value, _DBL_MAX), -_DBL_MAX)


def _metric(run: SearchableRun, key: str) -> tuple[bool, float | None]:
    """``(has the key, latest value)``."""
    for k, value, _ts, _step in run.metrics:
        if k == key:
            return True, value
    return False, None


def _predicate(c: Comparison) -> Callable[[SearchableRun], bool]:
    comparator = c.comparator
    if comparator in ("IS NULL", "IS NOT NULL"):
        present = comparator == "IS NOT NULL"
        key = c.key
        if c.entity_type == "metric":
            return lambda r: _metric(r, key)[0] is present
        mapping = "params" if c.entity_type == "parameter" else "tags"
        return lambda r: (key in getattr(r, mapping)) is present
    test = _tester(comparator, c.value)
    if c.entity_type == "attribute" and c.key != "run_name":
        key = c.key
        return lambda r: test(r.info.get(key))
    if c.entity_type == "dataset":
        at = _DATASET_FIELDS[c.key]
        return lambda r: any(test(i[at]) for i in r.inputs)
    if c.entity_type == "metric":
        key = c.key
        nan_matches = comparator == "!="  # NaN satisfies only "!="

        def metric_test(r: SearchableRun) -> bool:
            for k, actual, _ts, _step in r.metrics:
                if k == key:
                    if actual is None:
                        return False
                    if actual != actual:
                        return nan_matches
                    return test(max(min(actual, _DBL_MAX), -_DBL_MAX))
            return False

        return metric_test
    if c.entity_type == "attribute":  # run_name: MLflow reads the mlflow.runName tag
        return lambda r: test(r.tags.get(RUN_NAME_TAG))
    if c.entity_type == "parameter":
        key = c.key
        return lambda r: test(r.params.get(key))
    key = c.key
    return lambda r: test(r.tags.get(key))


# A sort level: (rank of the row: 0 a value, >0 NaN or missing; the value; descending).
_Level = tuple[Callable[[SearchableRun], tuple[int, Any]], bool]


def _order_level(ob: OrderBy) -> _Level:
    key = ob.key
    if ob.entity_type == "attribute":

        def attribute(r: SearchableRun) -> tuple[int, Any]:
            v = r.info.get(key)
            return (1, None) if v is None else (0, v)

        return attribute, not ob.ascending
    if ob.entity_type == "metric":

        def metric(r: SearchableRun) -> tuple[int, Any]:
            _found, v = _metric(r, key)
            if v is None:
                return 2, None
            if v != v:
                return 1, None
            return 0, _clamp(v)

        return metric, not ob.ascending
    mapping = "params" if ob.entity_type == "parameter" else "tags"

    def keyed(r: SearchableRun) -> tuple[int, Any]:
        v = getattr(r, mapping).get(key)
        return (1, None) if v is None else (0, v)

    return keyed, not ob.ascending


def _sort(runs: list[SearchableRun], levels: list[_Level]) -> list[SearchableRun]:
    """Stable sorts from the least significant level up: each level orders by value
    (descending if asked; rows of equal value keep the previous levels' order), then by
    rank ascending, so NaN and missing values come last in either direction."""
    for get, descending in reversed(levels):
        keyed = [(get(r), r) for r in runs]
        present = [(k[1], r) for k, r in keyed if k[0] == 0]
        present.sort(key=lambda kr: kr[0], reverse=descending)
        ranks: dict[int, list[SearchableRun]] = {}
        for k, r in keyed:
            if k[0]:
                ranks.setdefault(k[0], []).append(r)
        runs = [r for _, r in present] + [r for rank in sorted(ranks) for r in ranks[rank]]
    return runs


def evaluate_search_runs(query: SearchQuery, runs: Iterable[SearchableRun]) -> list[str]:
    """The run ids the query's SQL would return (``OFFSET``, ``LIMIT max_results + 1``):
    pass them to :meth:`SearchQuery.page` for the page and its next token."""
    experiments, stages = set(query.experiment_ids), set(query.stages)
    tests = [_predicate(c) for c in query.comparisons]
    found = [
        r
        for r in runs
        if r.info.get("experiment_id") in experiments
        and r.info.get("lifecycle_stage") in stages
        and all(t(r) for t in tests)
    ]
    levels = [_order_level(ob) for ob in query.order]
    if not any(ob.entity_type == "attribute" and ob.key == "start_time" for ob in query.order):
        levels.append(_order_level(OrderBy("attribute", "start_time", ascending=False)))
    levels.append(_order_level(OrderBy("attribute", "run_id", ascending=True)))
    ordered = _sort(found, levels)
    end = None if query.max_results is None else query.offset + query.max_results + 1
    return [r.info["run_id"] for r in ordered[query.offset : end]]
