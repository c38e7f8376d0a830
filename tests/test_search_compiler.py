"""Compiler tests on the real evtrack views (:func:`evtrack.store.log.views.connect`),
folded from events made here, so a change of a view's schema reaches these tests."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evtrack.errors import InvalidFilter, InvalidParameterValue
from evtrack.search import (
    compile_search_experiments,
    compile_search_runs,
    decode_page_token,
    next_page_token,
    search_experiment_ids,
    search_run_ids,
)

NAN, INF = float("nan"), float("inf")

# name, experiment, status, start, end, user, stage, params, metrics, tags
RUNS: list[tuple[Any, ...]] = [
    (
        "alpha",
        "1",
        "FINISHED",
        100,
        150,
        "u1",
        "active",
        {"lr": "0.1", "opt": "adam"},
        {"rmse": 0.5, "acc": 0.1},
        {"team": "core"},
    ),
    (
        "beta",
        "1",
        "RUNNING",
        200,
        None,
        "u2",
        "active",
        {"lr": "0.01"},
        {"rmse": NAN},
        {"team": "Core"},
    ),
    (
        "gamma",
        "1",
        "FAILED",
        300,
        390,
        "u1",
        "active",
        {"lr": "1", "opt": "sgd"},
        {"rmse": 0.2, "acc": INF},
        {},
    ),
    ("delta", "2", "FINISHED", 400, 410, "u2", "deleted", {"lr": "0.1"}, {"rmse": 0.9}, {}),
    ("eps", "1", "KILLED", 150, 160, "u1", "active", {"opt": "it's"}, {}, {"team": "x%_y"}),
    ("zeta", "2", "FINISHED", 50, 70, "u3", "active", {"lr": "10"}, {"rmse": -INF}, {}),
]
EXPERIMENTS = [  # id, name, stage, creation_time, tags
    ("1", "main", "active", 10, {"team": "core"}),
    ("2", "other", "active", 20, {}),
    ("3", "gone", "deleted", 30, {"team": "core"}),
    ("10", "ten", "active", 20, {"team": "ml"}),
]


class ViewEvents:
    """Events in the stored schema, made by hand, for the real views to fold.

    Tests of the search compiler need exact ids and values (NaN, ±inf, ``it's``) that
    the client would generate or refuse; building the events keeps the views real.
    """

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def add(self, kind: str, exp: str, run: str | None, key: str, text=None, value=None, **kw):
        time_ms = kw.get("timestamp", 1 + len(self.rows))
        row = {"writer": "w", "seq": len(self.rows), "time": time_ms, "kind": kind}
        row.update(experiment_id=exp, run_id=run, key=key, value=value, text=text)
        row.update(step=kw.get("step"), timestamp=kw.get("timestamp"))
        self.rows.append(row)

    def experiment(self, eid: str, attrs: dict[str, Any], tags: dict[str, str]) -> None:
        for k, v in attrs.items():
            if v is not None:
                self.add("experiment", eid, None, k, str(v))
        for k, v in tags.items():
            self.add("experiment_tag", eid, None, k, v)

    def run(self, rid: str, exp: str, attrs: dict[str, Any], params, tags) -> None:
        for k, v in {"experiment_id": exp, **attrs}.items():
            if v is not None:
                self.add("run", exp, rid, k, str(v))
        for k, v in params.items():
            self.add("param", exp, rid, k, v)
        for k, v in tags.items():
            self.add("tag", exp, rid, k, v)

    def metric(self, rid: str, exp: str, key: str, value: float, step: int, ts: int) -> None:
        self.add("metric", exp, rid, key, value=value, step=step, timestamp=ts)

    def connect(self) -> Any:
        """A DuckDB connection with these events behind every view of evtrack."""
        import pyarrow as pa

        from evtrack.store.log.events import COLUMNS, event_schema
        from evtrack.store.log.views import connect

        columns = {name: [r[name] for r in self.rows] for name, _ in COLUMNS}
        return connect(pa.table(columns).cast(event_schema()))


@pytest.fixture(scope="module")
def con() -> Any:
    log = ViewEvents()
    for eid, name, stage, ctime, tags in EXPERIMENTS:
        attrs = {"name": name, "artifact_location": f"file:///e/{eid}", "lifecycle_stage": stage}
        log.experiment(eid, {**attrs, "creation_time": ctime, "last_update_time": ctime + 1}, tags)
    for name, exp, status, start, end, user, stage, params, metrics, tags in RUNS:
        rid = f"id-{name}"
        attrs = {"run_name": name, "user_id": user, "status": status, "start_time": start}
        attrs.update(end_time=end, lifecycle_stage=stage, artifact_uri=f"file:///a/{name}")
        log.run(rid, exp, attrs, params, {**tags, "mlflow.runName": name})
        for k, v in metrics.items():
            log.metric(rid, exp, k, v, 0, 0)
    for rid, dataset, digest, context in [
        ("id-alpha", "train", "abc", "training"),
        ("id-gamma", "eval", "def", None),
    ]:
        body = {"dataset": {"name": dataset, "digest": digest}, "tags": {}, "context": context}
        log.add("input", "1", rid, digest, json.dumps(body))
    c = log.connect()
    yield c
    c.close()


def names(
    con: Any,
    filter_string: str | None = None,
    order_by: list[str] | None = None,
    view: int = 1,
    experiments: tuple[str, ...] = ("1", "2"),
) -> list[str]:
    ids, token = search_run_ids(con, list(experiments), filter_string, view, 1000, order_by)
    assert token is None
    return [i.removeprefix("id-") for i in ids]


@pytest.mark.parametrize(
    ("filter_string", "expected"),
    [
        (None, ["gamma", "beta", "eps", "alpha", "zeta"]),  # start_time DESC
        ("metrics.rmse < 0.6", ["gamma", "alpha", "zeta"]),
        ("metrics.rmse != 0.5", ["gamma", "beta", "zeta"]),  # NaN matches only !=
        ("metrics.rmse = 0.5", ["alpha"]),
        ("metrics.rmse > 0", ["gamma", "alpha"]),
        ("metrics.acc > 1e308", ["gamma"]),
        ("metrics.acc = 1.7976931348623157e308", ["gamma"]),  # MLflow stores inf as DBL_MAX
        ("metrics.rmse <= -1e308", ["zeta"]),
        ("metrics.missing != 1", []),
        ("params.lr = '0.1'", ["alpha"]),
        ("params.lr != '0.1'", ["gamma", "beta", "zeta"]),  # eps has no lr: no match
        ("params.opt LIKE '%a%'", ["alpha"]),
        ("params.opt LIKE 'it_s'", ["eps"]),
        ('params.opt = "it\'s"', ["eps"]),
        ("params.opt IS NULL", ["beta", "zeta"]),
        ("params.opt IS NOT NULL", ["gamma", "eps", "alpha"]),
        ("tags.team = 'core'", ["alpha"]),
        ("tags.team ILIKE 'CORE'", ["beta", "alpha"]),
        ("tags.team LIKE 'x%'", ["eps"]),
        ("tags.team IS NULL", ["gamma", "zeta"]),
        ("attributes.status = 'FINISHED'", ["alpha", "zeta"]),
        ("status != 'FINISHED'", ["gamma", "beta", "eps"]),
        ("user_id = 'u1' and status LIKE 'F%'", ["gamma", "alpha"]),
        ("start_time >= 150", ["gamma", "beta", "eps"]),
        ("created < 150", ["alpha", "zeta"]),
        ("end_time > 100", ["gamma", "eps", "alpha"]),  # running beta has no end_time
        ("end_time != 0", ["gamma", "eps", "alpha", "zeta"]),
        ("run_name = 'beta'", ["beta"]),
        ("`Run Name` ILIKE 'A%'", ["alpha"]),
        ("run_id IN ('id-alpha', 'id-zeta', 'id-delta')", ["alpha", "zeta"]),
        ("run_id NOT IN ('id-alpha')", ["gamma", "beta", "eps", "zeta"]),
        ("artifact_uri LIKE '%/e%'", ["eps"]),
        ("datasets.name = 'train'", ["alpha"]),
        ("datasets.context = 'training'", ["alpha"]),
        ("datasets.context != 'x'", ["alpha"]),  # gamma's input has no context
        ("datasets.digest IN ('abc', 'def')", ["gamma", "alpha"]),
        ("metrics.rmse > 0 and params.opt = 'sgd' and tags.team IS NULL", ["gamma"]),
    ],
)
def test_filters(con: Any, filter_string: str, expected: list[str]) -> None:
    assert names(con, filter_string) == expected


@pytest.mark.parametrize(
    ("order_by", "expected"),
    [
        (["metrics.rmse"], ["zeta", "gamma", "alpha", "beta", "eps"]),  # NaN, then missing
        (["metrics.rmse DESC"], ["alpha", "gamma", "zeta", "beta", "eps"]),
        (["metrics.acc DESC"], ["gamma", "alpha", "beta", "eps", "zeta"]),
        (["params.lr"], ["beta", "alpha", "gamma", "zeta", "eps"]),  # as strings: "1" < "10"
        (["params.lr DESC"], ["zeta", "gamma", "alpha", "beta", "eps"]),
        (["tags.team", "start_time ASC"], ["beta", "alpha", "eps", "zeta", "gamma"]),
        (["end_time"], ["zeta", "alpha", "eps", "gamma", "beta"]),
        (["end_time DESC"], ["gamma", "eps", "alpha", "zeta", "beta"]),
        (["run_name DESC"], ["zeta", "gamma", "eps", "beta", "alpha"]),
        (["created"], ["zeta", "alpha", "eps", "beta", "gamma"]),
        (["user_id", "status DESC"], ["eps", "alpha", "gamma", "beta", "zeta"]),
    ],
)
def test_order_by(con: Any, order_by: list[str], expected: list[str]) -> None:
    assert names(con, order_by=order_by) == expected


def test_view_types_and_experiments(con: Any) -> None:
    assert names(con, view=2) == ["delta"]
    assert names(con, view=3, order_by=["run_name"]) == [
        "alpha",
        "beta",
        "delta",
        "eps",
        "gamma",
        "zeta",
    ]
    assert names(con, experiments=("2",), view=3) == ["delta", "zeta"]
    assert names(con, experiments=()) == []
    with pytest.raises(InvalidParameterValue, match="view type"):
        names(con, view=7)


def test_pages_walk_every_run_once(con: Any) -> None:
    pages, token = [], None
    while True:
        ids, token = search_run_ids(con, ["1", "2"], None, 3, 2, ["metrics.rmse"], token)
        pages.append([i.removeprefix("id-") for i in ids])
        if token is None:
            break
    assert pages == [["zeta", "gamma"], ["alpha", "delta"], ["beta", "eps"]]
    sql, params, offset = compile_search_runs(["1"], None, 1, 2, None, next_page_token(4))
    assert offset == 4 and params[-2:] == [3, 4]  # LIMIT max_results + 1 OFFSET 4
    sql, params, offset = compile_search_runs(["1"], None, 1, None, None, None)
    assert "LIMIT" not in sql and offset == 0  # None: no limit, as in MLflow's SQL store


def test_page_tokens() -> None:
    token = next_page_token(25)
    assert json.loads(base64.b64decode(token)) == {"offset": 25}
    assert decode_page_token(token) == 25
    assert decode_page_token(token.encode()) == 25  # MLflow's create_page_token gives bytes
    assert decode_page_token(None) == decode_page_token("") == 0
    bad = [
        "%%%",
        base64.b64encode(b"not json").decode(),
        base64.b64encode(b'{"offset": 0}').decode(),
        base64.b64encode(b'{"offset": "x"}').decode(),
        base64.b64encode(b'{"offset": -5}').decode(),
        base64.b64encode(b"[1]").decode(),
    ]
    for token in bad:
        with pytest.raises(InvalidParameterValue, match="Invalid page token"):
            decode_page_token(token)


@pytest.mark.parametrize("max_results", [0, -1, 50001, "10", 1.5, True])
def test_max_results_limits(max_results: Any) -> None:
    with pytest.raises(InvalidParameterValue, match="max_results"):
        compile_search_runs(["1"], None, 1, max_results, None, None)
    with pytest.raises(InvalidParameterValue, match="max_results"):
        compile_search_experiments(1, None, max_results, None, None)
    compile_search_runs(["1"], None, 1, 50000, None, None)  # the threshold itself is fine


def test_experiments(con: Any) -> None:
    def exps(
        filter_string: str | None = None, order_by: list[str] | None = None, view: int = 1
    ) -> list[str]:
        return search_experiment_ids(con, view, filter_string, 1000, order_by)[0]

    # creation_time DESC, experiment_id ASC (numerically: 2 before 10)
    assert exps() == ["2", "10", "1"]
    assert exps(view=3) == ["3", "2", "10", "1"]
    assert exps(view=2) == ["3"]
    assert exps(order_by=["creation_time"]) == ["1", "10", "2"]  # tie-break: experiment_id DESC
    assert exps(order_by=["name DESC"]) == ["10", "2", "1"]
    assert exps("name LIKE '%e%'", ["name"]) == ["2", "10"]
    assert exps("tags.team = 'core'", view=3) == ["3", "1"]
    assert exps("tags.team IS NULL") == ["2"]
    assert exps("experiment_id IN ('1', '10')") == ["10", "1"]
    assert exps("creation_time > 15 and last_update_time <= 21") == ["2", "10"]
    ids, token = search_experiment_ids(con, 1, None, 2, None, None)
    assert ids == ["2", "10"] and decode_page_token(token) == 2


INJECTIONS = [
    "'; DROP TABLE runs; --",
    "x' OR '1'='1",
    '" OR 1=1 --',
    "%' UNION SELECT run_id FROM runs --",
    "\\'; DELETE FROM params; --",
]


@pytest.mark.parametrize("payload", INJECTIONS)
def test_injection_in_values_and_keys_is_inert(con: Any, payload: str) -> None:
    attempts = [
        f'params.lr = "{payload}"' if '"' not in payload else f"params.lr = '{payload}'",
        f"tags.`{payload}` = 'x'",
        f"run_id IN ('{payload}')" if "'" not in payload else f'run_id IN ("{payload}")',
        f"metrics.`{payload}` > 0",
        payload,
        f"params.lr = '0.1' {payload}",
    ]
    for attempt in attempts:
        try:
            sql, params, _ = compile_search_runs(
                ["1", "2"], attempt, 3, 100, [f"tags.`{payload}`"], None
            )
        except InvalidFilter:
            continue
        assert payload not in sql  # values and keys travel as parameters only
        assert con.execute(sql, params).fetchall() == []
    assert len(names(con, view=3)) == 6  # nothing was dropped or deleted
    assert con.execute("SELECT count(*) FROM params").fetchone()[0] == 8


_texts = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=20).filter(
    # no quote of the kind used below; no backslash or control character, which break
    # the Python string literals that IN lists are read as (as in MLflow)
    lambda t: not set(t) & set("`'\\")
)


@settings(max_examples=200)
@given(key=_texts, value=_texts)
def test_sql_text_does_not_depend_on_keys_or_values(key: str, value: str) -> None:
    def compiled(k: str, v: str) -> tuple[str, list[Any]]:
        filt = f"params.`{k}` = '{v}' and tags.`{k}` LIKE '{v}' and run_id IN ('{v}')"
        sql, params, _ = compile_search_runs(["1"], filt, 1, 10, [f"metrics.`{k}` DESC"], None)
        return sql, params

    sql, params = compiled(key, value)
    assert sql == compiled("k", "v")[0]
    assert key in params and value in params
