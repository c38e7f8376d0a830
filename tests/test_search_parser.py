"""Parser tests: MLflow's grammar, its validity rules, and property tests.

``test_search_vs_mlflow.py`` checks the same parser against MLflow itself on a corpus;
these tests pin the behaviour without needing MLflow.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evtrack.errors import InvalidFilter, InvalidParameterValue
from evtrack.search.parser import (
    Comparison,
    OrderBy,
    parse_experiments_filter,
    parse_experiments_order_by,
    parse_filter,
    parse_order_by,
)


def one(text: str) -> Comparison:
    (comparison,) = parse_filter(text)
    return comparison


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("metrics.rmse < 0.8", Comparison("metric", "rmse", "<", 0.8)),
        ("metric.rmse >= -1", Comparison("metric", "rmse", ">=", -1.0)),
        ("metrics.x > 1e5", Comparison("metric", "x", ">", 100000.0)),
        ("metrics.x>-1.5E-3", Comparison("metric", "x", ">", -0.0015)),
        ("metrics.x != .5", Comparison("metric", "x", "!=", 0.5)),
        ("params.alpha = '0.5'", Comparison("parameter", "alpha", "=", "0.5")),
        ('param.alpha = "0.5"', Comparison("parameter", "alpha", "=", "0.5")),
        ("parameters.a LIKE 'x%'", Comparison("parameter", "a", "LIKE", "x%")),
        ("params.a ilike 'x%'", Comparison("parameter", "a", "ILIKE", "x%")),
        ("params.a IS NULL", Comparison("parameter", "a", "IS NULL", None)),
        ("tags.a is not null", Comparison("tag", "a", "IS NOT NULL", None)),
        ("tag.a != ''", Comparison("tag", "a", "!=", "")),
        (
            "tags.mlflow.source.type = 'LOCAL'",
            Comparison("tag", "mlflow.source.type", "=", "LOCAL"),
        ),
        ("tags.`my tag` = 'v'", Comparison("tag", "my tag", "=", "v")),
        ("tags.\"my tag\" = 'v'", Comparison("tag", "my tag", "=", "v")),
        ("tags.'my tag' = 'v'", Comparison("tag", "my tag", "=", "v")),
        ("`tags`.x = 'v'", Comparison("tag", "x", "=", "v")),
        ("metrics.`a.b` > 1", Comparison("metric", "a.b", ">", 1.0)),
        ("metrics.é > 1", Comparison("metric", "é", ">", 1.0)),
        ("params.status = 'a'", Comparison("parameter", "status", "=", "a")),
        ("status = 'FINISHED'", Comparison("attribute", "status", "=", "FINISHED")),
        ("attributes.status != 'X'", Comparison("attribute", "status", "!=", "X")),
        ("attr.user_id LIKE 'a%'", Comparison("attribute", "user_id", "LIKE", "a%")),
        ("run.artifact_uri ILIKE '%s3%'", Comparison("attribute", "artifact_uri", "ILIKE", "%s3%")),
        ("start_time > 5", Comparison("attribute", "start_time", ">", 5)),
        ("start_time > 5.5", Comparison("attribute", "start_time", ">", 5.5)),
        ("created <= 5", Comparison("attribute", "start_time", "<=", 5)),
        ("Created <= 5", Comparison("attribute", "start_time", "<=", 5)),
        ("end_time != 0", Comparison("attribute", "end_time", "!=", 0)),
        ("run_name = 'a'", Comparison("attribute", "run_name", "=", "a")),
        ("`run name` = 'a'", Comparison("attribute", "run_name", "=", "a")),
        ("\"Run Name\" = 'a'", Comparison("attribute", "run_name", "=", "a")),
        ("run_id IN ('a', \"b\",)", Comparison("attribute", "run_id", "IN", ("a", "b"))),
        ("run_id not in ('a')", Comparison("attribute", "run_id", "NOT IN", ("a",))),
        ("datasets.name = 'd'", Comparison("dataset", "name", "=", "d")),
        ("dataset.digest IN ('a', 'b')", Comparison("dataset", "digest", "IN", ("a", "b"))),
        ("datasets.context LIKE 'tr%'", Comparison("dataset", "context", "LIKE", "tr%")),
    ],
)
def test_valid_comparisons(text: str, expected: Comparison) -> None:
    assert one(text) == expected


def test_mlflow_quirks_are_kept() -> None:
    # Quoted text is kept verbatim: no SQL '' or \' unescaping (MLflow does none).
    assert one("params.x = 'it''s'").value == "it''s"
    assert one(r"params.x = 'a\'b'").value == r"a\'b"
    # Lists are Python literals, as MLflow's ast.literal_eval reads them.
    assert one("run_id IN ('a' 'b')").value == ("ab",)
    assert one(r"run_id IN ('a\x41')").value == ("aA",)
    # Stray ANDs and juxtaposed comparisons are accepted.
    assert len(parse_filter("AND params.a = '1' AND AND params.b = '2' AND")) == 2
    assert len(parse_filter("params.a = '1' params.b = '2'")) == 2
    # Only one layer of quoting is removed from a key.
    assert one("params.`x`.y = 'a'").key == "`x`.y"


@pytest.mark.parametrize("text", [None, ""])
def test_empty_filter(text: str | None) -> None:
    assert parse_filter(text) == []
    assert parse_experiments_filter(text) == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("   ", "Could not be parsed"),
        ("metrics.x > 1 OR metrics.y < 2", "'OR'"),
        ("NOT params.x = 'a'", "'NOT'"),
        ("(metrics.x > 1)", "Invalid clause"),
        ("metrics.x > 1; metrics.y < 2", "Invalid clause"),
        ("metrics.x = '1'", "Expected numeric value type for metric"),
        ("metrics.x > +1", "Invalid clause"),
        ("metrics.x > 0x10", "Expected numeric"),
        ("metrics.x LIKE 1", "Invalid comparator 'LIKE'"),
        ("metrics.x == 1", "Invalid comparator '=='"),
        ("metrics.x <> 1", "Invalid comparator '<>'"),
        ("metrics.x IS NULL", "only supported for tags and params"),
        ("start_time IS NULL", "only supported for tags and params"),
        ("params.x > 'a'", "Invalid comparator '>'"),
        ("params.x NOT LIKE 'a'", "Invalid comparator 'NOT LIKE'"),
        ("params.x = abc", "not quoted"),
        ("params.x = 1", "Expected a quoted string value for parameter"),
        ("params.x = `a`", "not quoted"),
        ("params.x IN ('a')", "Invalid comparator 'IN'"),
        ("tags.x IN ('a')", "Invalid comparator 'IN'"),
        ("params.learning-rate = '0.1'", "Invalid clause"),
        ("start_time = '5'", "Expected numeric value type for numeric attribute"),
        ("status IN ('a')", "Only ['run_id'] attributes"),
        ("status IN 'a'", "needs a parenthesised list"),
        ("run_id = ('a')", "needs IN or NOT IN"),
        ("run_id IN ()", "empty list"),
        ("run_id IN (1, 2)", "ill-formed list"),
        ("run_id IN ('a', ('b',))", "ill-formed list"),
        ("run_id IN ['a']", "Invalid clause"),
        ("lifecycle_stage = 'active'", "Invalid attribute key 'lifecycle_stage'"),
        ("experiment_id = '0'", "Invalid attribute key 'experiment_id'"),
        ("foo.x = 1", "Invalid entity type 'foo'"),
        ('"metrics.a" > 1', "Invalid attribute key 'metrics.a'"),
        ("datasets.foo = 'a'", "Invalid dataset key 'foo'"),
        ("metrics . x > 1", "Invalid clause"),
        ("metrics.x", "comparison operator"),
        ("metrics.x >", "a value"),
        ("1 > metrics.x", "a key"),
        ("params.x = 'a' = 'b'", "a key"),
        ("params.x IS 'a'", "NULL after IS"),
        ("metrics.x > 1 -- comment", "Invalid clause"),
        ("params.x = 'a", "Invalid clause"),
    ],
)
def test_invalid_filters(text: str, message: str) -> None:
    with pytest.raises(InvalidFilter, match=re.escape(message)) as info:
        parse_filter(text)
    assert info.value.error_code == "INVALID_PARAMETER_VALUE"
    assert isinstance(info.value, InvalidParameterValue)


@pytest.mark.parametrize(
    ("clause", "expected"),
    [
        ("metrics.rmse", OrderBy("metric", "rmse", True)),
        ("metrics.rmse DESC", OrderBy("metric", "rmse", False)),
        ("metrics.rmse desc", OrderBy("metric", "rmse", False)),
        ("params.x ASC", OrderBy("parameter", "x", True)),
        ("tags.`my tag` DESC", OrderBy("tag", "my tag", False)),
        ('metrics."my metric"', OrderBy("metric", "my metric", True)),
        ("tags.mlflow.runName", OrderBy("tag", "mlflow.runName", True)),
        ("attributes.start_time", OrderBy("attribute", "start_time", True)),
        ("created DESC", OrderBy("attribute", "start_time", False)),
        ("run_name", OrderBy("attribute", "run_name", True)),
        ("attr.status DESC", OrderBy("attribute", "status", False)),
        ("end_time", OrderBy("attribute", "end_time", True)),
        ("  metrics.x   desc  ", OrderBy("metric", "x", False)),  # MLflow rejects the blanks
    ],
)
def test_order_by(clause: str, expected: OrderBy) -> None:
    assert parse_order_by([clause]) == [expected]


@pytest.mark.parametrize(
    ("clause", "message"),
    [
        ("", "Could not be parsed"),
        ("metrics.x DESC NULLS LAST", "Could not be parsed"),
        ("metrics.x DESCENDING", "Invalid ordering key"),
        ("metrics.x,metrics.y", "Could not be parsed"),
        ("Run name", "Invalid ordering key"),
        ("`run name`", "Invalid attribute key 'run name'"),
        ("experiment_id", "Invalid attribute key"),
        ("timestamp", "Invalid attribute key"),
        ("datasets.name", "Invalid identifier type 'dataset'"),
        ("foo.x", "Invalid entity type 'foo'"),
    ],
)
def test_invalid_order_by(clause: str, message: str) -> None:
    with pytest.raises(InvalidFilter, match=message):
        parse_order_by([clause])


def test_order_by_duplicates_and_types() -> None:
    assert parse_order_by(None) == []
    with pytest.raises(InvalidFilter, match="duplicate fields"):
        parse_order_by(["metrics.x", "metrics.x DESC"])
    with pytest.raises(InvalidFilter, match="duplicate fields"):
        parse_order_by(["created", "start_time"])  # the same column under two names
    with pytest.raises(InvalidFilter, match="must be a list"):
        parse_order_by("metrics.x")  # type: ignore[arg-type]
    with pytest.raises(InvalidFilter, match="expected a string"):
        parse_order_by([3])  # type: ignore[list-item]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name = 'a'", Comparison("attribute", "name", "=", "a")),
        ("attribute.name LIKE 'a%'", Comparison("attribute", "name", "LIKE", "a%")),
        ("name ILIKE 'a%'", Comparison("attribute", "name", "ILIKE", "a%")),
        ("experiment_id = '1'", Comparison("attribute", "experiment_id", "=", "1")),
        ("experiment_id IN ('1','2')", Comparison("attribute", "experiment_id", "IN", ("1", "2"))),
        ("creation_time > 5", Comparison("attribute", "creation_time", ">", 5)),
        ("last_update_time <= 5", Comparison("attribute", "last_update_time", "<=", 5)),
        ("tags.x = 'a'", Comparison("tag", "x", "=", "a")),
        ("tag.`x y` ILIKE 'a'", Comparison("tag", "x y", "ILIKE", "a")),
        ("tags.x IS NULL", Comparison("tag", "x", "IS NULL", None)),
    ],
)
def test_experiment_filters(text: str, expected: Comparison) -> None:
    assert parse_experiments_filter(text) == [expected]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("attributes.name = 'a'", "Invalid entity type 'attributes'"),  # only 'attribute'
        ("`tags`.x = 'a'", "Invalid entity type"),
        ("params.x = 'a'", "Invalid entity type 'params'"),
        ("name IN ('a')", "Only ['experiment_id']"),
        ("name > 'a'", "Invalid comparator '>'"),
        ("experiment_id > '1'", "Invalid comparator '>'"),
        ("experiment_id = 1", "Expected a quoted string value"),
        ("creation_time > 5.5", "Invalid value for numeric attribute"),
        ("creation_time = '5'", "Expected numeric value type"),
        ("tags.x IN ('a')", "Expected a quoted string value for tag"),
        ("name IS NULL", "only supported for tags"),
        ("lifecycle_stage = 'active'", "Invalid attribute key"),
    ],
)
def test_invalid_experiment_filters(text: str, message: str) -> None:
    with pytest.raises(InvalidFilter, match=re.escape(message)):
        parse_experiments_filter(text)


def test_experiment_order_by() -> None:
    assert parse_experiments_order_by(["name DESC", "experiment_id"]) == [
        OrderBy("attribute", "name", False),
        OrderBy("attribute", "experiment_id", True),
    ]
    with pytest.raises(InvalidFilter, match="Invalid order_by entity: tag"):
        parse_experiments_order_by(["tags.x"])
    with pytest.raises(InvalidFilter, match="Invalid entity type 'attributes'"):
        parse_experiments_order_by(["attributes.name"])


# --- properties -----------------------------------------------------------------------

keys = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=20)
values = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)


def quote_key(key: str) -> str | None:
    """Spell ``key`` so the parser reads it back, or None if MLflow's grammar can't."""
    for quote in "`\"'":
        if quote not in key:
            return f"{quote}{key}{quote}"
    return None


def quote_value(value: str) -> str | None:
    for quote in "'\"":
        if quote not in value and not value.endswith("\\"):
            return f"{quote}{value}{quote}"
    return None


@settings(max_examples=300)
@given(
    entity=st.sampled_from(["params", "tags", "param", "tag"]),
    key=keys,
    value=values,
    comparator=st.sampled_from(["=", "!=", "LIKE", "ILIKE", "like"]),
)
def test_string_comparisons_round_trip(entity: str, key: str, value: str, comparator: str) -> None:
    quoted_key, quoted_value = quote_key(key), quote_value(value)
    if quoted_key is None or quoted_value is None:
        return
    parsed = one(f"{entity}.{quoted_key} {comparator} {quoted_value}")
    assert parsed.key == key
    assert parsed.value == value
    assert parsed.comparator == comparator.upper()


@settings(max_examples=300)
@given(
    key=keys,
    number=st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(10**20), 10**20),
    comparator=st.sampled_from(["=", "!=", "<", "<=", ">", ">="]),
)
def test_metric_comparisons_round_trip(key: str, number: float, comparator: str) -> None:
    quoted_key = quote_key(key)
    if quoted_key is None:
        return
    parsed = one(f"metrics.{quoted_key} {comparator} {number!r}")
    assert parsed == Comparison("metric", key, comparator, float(number))


@settings(max_examples=200)
@given(items=st.lists(st.text(alphabet="abcdef0123456789-", min_size=1), min_size=1, max_size=5))
def test_in_lists_round_trip(items: list[str]) -> None:
    text = "run_id IN (" + ", ".join(f"'{i}'" for i in items) + ")"
    assert one(text).value == tuple(items)


@settings(max_examples=200)
@given(key=keys, descending=st.booleans())
def test_order_by_round_trip(key: str, descending: bool) -> None:
    quoted = quote_key(key)
    if quoted is None:
        return
    clause = f"metrics.{quoted}" + (" DESC" if descending else "")
    assert parse_order_by([clause]) == [OrderBy("metric", key, not descending)]


_filter_alphabet = st.sampled_from(
    list("abcmetrisp.`'\"()=<>!,-+_ %0123456789\\é\n\t;*/#$?:[]")
    + ["metrics.", "params.", "tags.", " AND ", " OR ", " IN ", " NOT ", " IS ", " NULL", " LIKE "]
)


@settings(max_examples=1000)
@given(st.lists(_filter_alphabet, max_size=30).map("".join) | st.text(max_size=60))
def test_garbage_only_raises_invalid_filter(text: str) -> None:
    for parse in (parse_filter, parse_experiments_filter):
        try:
            result = parse(text)
        except InvalidFilter:
            continue
        assert all(isinstance(c, Comparison) for c in result)
    try:
        parse_order_by([text])
    except InvalidFilter:
        pass
