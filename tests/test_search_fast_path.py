"""A fresh process's search from the saved run summary (store/log/run_summary.py, answered
by search/evaluate.py in plain Python) must answer exactly what the run index's DuckDB
SQL answers, must never be used once the store changed, and must import neither pyarrow
nor DuckDB.

Each differential case runs one search through both paths on the same store: a
``LogStore`` whose fast path is switched off (the index and its SQL), and one that has
not folded anything (the summary; the test checks it stayed on that path)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import run_python, subprocess_env

import evtrack
from evtrack.entities import Dataset, DatasetInput, InputTag, Metric, Param, RunTag
from evtrack.errors import EvtrackError
from evtrack.store.log import index_cache, run_summary
from evtrack.store.log.compaction import compact_experiment
from evtrack.store.log.maintenance import gc

sys.path.insert(0, str(Path(__file__).parent))
import test_search_compiler  # noqa: E402
from test_search_vs_mlflow import (  # noqa: E402
    FILTER_CORPUS,
    ORDER_CORPUS,
    RUN_QUERIES,
    build_spec,
    render,
)

NAN, INF = float("nan"), float("inf")


def _norm(x: Any) -> Any:
    """Floats by repr (NaN equals NaN), so runs compare exactly."""
    if isinstance(x, float):
        return repr(x)
    if isinstance(x, dict):
        return {k: _norm(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_norm(v) for v in x]
    return x


def _answer(client: evtrack.MlflowClient, args: dict) -> dict:
    """Every page of one search: run ids, runs' info and data, tokens (or the error)."""
    pages, token = [], None
    try:
        while True:
            res = client.search_runs(
                args["experiments"],
                args.get("filter") or "",
                args.get("view", 1),
                args.get("max_results", 1000),
                args.get("order_by"),
                token,
            )
            runs = [
                [
                    r.info.to_dictionary(),
                    r.data.params,
                    r.data.tags,
                    sorted((m.key, m.value, m.timestamp, m.step) for m in r.data._metric_objs),
                    r.data.metrics,
                ]
                for r in res
            ]
            token = res.token
            pages.append({"runs": _norm(runs), "token": token})
            if not token:
                return {"pages": pages}
    except EvtrackError as exc:
        return {"error": exc.error_code, "message": str(exc)}


class BothPaths:
    """Two clients over one store: the index path (fast path off) and the summary path."""

    def __init__(self, uri: str) -> None:
        from evtrack.store.log.store import LogStore

        self.uri = uri
        index_store, summary_store = LogStore(uri), LogStore(uri)  # two indexes of their own
        index_store._current_summaries = lambda ids: None  # type: ignore[method-assign]
        self.index = evtrack.MlflowClient(store=index_store)
        self.summary = evtrack.MlflowClient(store=summary_store)

    def check(self, args: dict) -> dict:
        expected = _answer(self.index, args)
        got = _answer(self.summary, args)
        # Still on the summary path: nothing folded, every experiment's summary in use.
        # (an empty key: no known experiment, answered by the index path on both sides)
        assert all(not key for key in self.summary.store._index._entries), "index path taken"
        assert got == expected, json.dumps({"args": args, "summary": got, "index": expected})[:4000]
        return got


@pytest.fixture(scope="module")
def spec_store(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The 60-run corpus of test_search_vs_mlflow, logged through the client, plus two
    dataset inputs; the writer's own search saves the index and the summary."""
    root = tmp_path_factory.mktemp("fast")
    mp = pytest.MonkeyPatch()
    mp.setenv("EVTRACK_INDEX_CACHE_DIR", str(root / "cache"))
    mp.setenv("EVTRACK_AUTO_COMPACT", "false")
    uri = str(root / "store")
    client = evtrack.MlflowClient(uri)
    spec = build_spec()
    exp_ids = [client.create_experiment(e["name"], tags=e["tags"]) for e in spec["experiments"]]
    run_ids = []
    for i, r in enumerate(spec["runs"]):
        rid = client.create_run(
            exp_ids[r["experiment"]],
            start_time=r["start_time"],
            tags={"mlflow.user": r["user"]},
            run_name=r["name"],
        ).info.run_id
        run_ids.append(rid)
        client.log_batch(
            rid,
            metrics=[Metric(k, v, ts, s) for k, v, ts, s in r["metrics"]],
            params=[Param(k, v) for k, v in r["params"].items()],
            tags=[RunTag(k, v) for k, v in r["tags"].items()],
        )
        if i % 9 == 2:
            context = [InputTag("mlflow.data.context", "train")] if i % 2 else []
            ds = Dataset(f"ds_{i % 3}", f"d{i % 4}", "local", "x")
            client.log_inputs(rid, [DatasetInput(ds, context)])
        if r["status"] != "RUNNING":
            client.set_terminated(rid, r["status"], end_time=r["end_time"])
        if r["deleted"]:
            client.delete_run(rid)
    for e in exp_ids[:2]:
        client.search_runs([e], max_results=1)  # folds and saves index + summary
    client.store.close()
    yield uri, exp_ids, run_ids, str(root / "cache")
    mp.undo()


def _parametrized(test: Any) -> list[tuple[Any, ...]]:
    """The argument tuples of a test's ``pytest.mark.parametrize``."""
    marks = [m for m in getattr(test, "pytestmark", []) if m.name == "parametrize"]
    return [tuple(v) for m in marks for v in m.args[1]]


def _cases(exp_ids: list[str], run_ids: list[str]) -> list[dict]:
    cases = []
    for query in RUN_QUERIES.values():
        if "experiments" not in query:
            continue
        cases.append(
            {
                "experiments": [exp_ids[i] for i in query["experiments"]],
                "filter": render(query["filter"], run_ids, exp_ids, {}),
                "view": query["view"],
                "max_results": query["page_size"] or query["max_results"],
                "order_by": query["order_by"],
            }
        )
    both = exp_ids[:2]
    for text in FILTER_CORPUS:
        for view in (1, 2, 3):
            cases.append({"experiments": both, "filter": text, "view": view})
    for text in ORDER_CORPUS:
        cases.append({"experiments": both, "order_by": [text], "view": 3})
        cases.append({"experiments": both, "order_by": [text], "max_results": 7})
    extra_filters = [
        "metrics.acc != 0.5", "metrics.acc > 1e308", "metrics.acc < -1e308",
        "metrics.acc = -1.7976931348623157e308", "metrics.acc >= 1e400", "metrics.acc != 1e400",
        "metrics.missing != 1", "params.missing != 'x'", "tags.missing IS NULL",
        "tags.note LIKE '%\\_%'", "tags.note LIKE '100\\%%'", "tags.note LIKE '%!%%'",
        "tags.note ILIKE 'a%B'", "tags.note LIKE '_%_'", "tags.note LIKE '%'",
        "tags.note NOT IN ('a_b', 'A%B')", "params.optimizer IN ('adam', 'SGD_momentum')",
        "params.optimizer NOT IN ('adam')", "end_time IS NULL", "end_time > 0",
        "end_time != 0", "end_time <= 1700000059450", "start_time = 1700000010000",
        "start_time < 1700000030000.5", "run_name ILIKE 'RUN-0%'", "run_name != 'run-01'",
        "run_name LIKE '%Alpha'", "status IN ('FINISHED', 'KILLED')",
        "user_id NOT IN ('bob')", "artifact_uri LIKE '%artifacts%'",
        "datasets.name = 'ds_1'", "datasets.context = 'train'", "datasets.context != 'x'",
        "datasets.digest IN ('d0', 'd3')", "datasets.digest NOT IN ('d0')",
        "datasets.name LIKE 'ds%'", "datasets.name ILIKE 'DS_2'",
        "params.`my param` = 'it''s'", "params.`my param` LIKE 'it_s'",
        "metrics.`val loss` <= -20 and params.alpha = '0.2'",
        f"run_id = '{run_ids[3]}'", f"run_id IN ('{run_ids[5]}', '{run_ids[8]}')",
        f"run_id NOT IN ('{run_ids[5]}')",
    ]  # fmt: skip
    extra_orders = [
        ["metrics.acc"], ["metrics.acc DESC"], ["metrics.`val loss`", "params.lr DESC"],
        ["params.optimizer", "metrics.rmse DESC"], ["tags.note DESC"], ["end_time"],
        ["end_time DESC"], ["start_time"], ["run_name"], ["run_id DESC"], ["status", "user_id"],
        ["artifact_uri DESC"], ["tags.mlflow.runName DESC"],
    ]  # fmt: skip
    for text in extra_filters:
        for view in (1, 2, 3):
            cases.append({"experiments": both, "filter": text, "view": view})
        cases.append({"experiments": [exp_ids[1]], "filter": text, "max_results": 2})
    for order in extra_orders:
        for view in (1, 3):
            cases.append({"experiments": both, "order_by": order, "view": view})
        cases.append({"experiments": both, "order_by": order, "max_results": 9, "view": 3})
    # test_search_compiler's filters and orders (written for its own small data set).
    compiler_filters = _parametrized(test_search_compiler.test_filters)
    compiler_orders = _parametrized(test_search_compiler.test_order_by)
    assert compiler_filters and compiler_orders
    for text, _expected_names in compiler_filters:
        cases.append({"experiments": both, "filter": text, "view": 3})
    for order, _expected_names in compiler_orders:
        cases.append({"experiments": both, "order_by": order, "view": 3, "max_results": 11})
    cases.append({"experiments": [], "view": 3})
    cases.append({"experiments": [*both, "404"], "view": 3, "max_results": 13})
    cases.append({"experiments": [exp_ids[1], exp_ids[0]], "filter": "metrics.acc > 0"})
    return cases


def test_both_paths_agree_on_the_whole_corpus(
    spec_store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri, exp_ids, run_ids, cache = spec_store
    monkeypatch.setenv("EVTRACK_INDEX_CACHE_DIR", cache)  # the writer's saved summaries
    paths = BothPaths(uri)
    cases = _cases(exp_ids, run_ids)
    answered = [paths.check(args) for args in cases]
    # The corpus exercises both answers and errors, and paging.
    assert sum("pages" in a for a in answered) > 300
    assert any(len(a.get("pages", [])) > 3 for a in answered)
    assert any("error" in a for a in answered)


# Values chosen where Python and DuckDB could differ: case mapping beyond ASCII, LIKE
# metacharacters in values, -0.0, subnormals, ties, huge numbers.
EDGE_VALUES = [
    ("İstanbul", 0.0), ("istanbul", -0.0), ("STRASSE", 5e-324), ("straße", -5e-324),
    ("ǅemal", 1.0), ("ǆemal", 1.0), ("Ω", NAN), ("ω", INF), ("K-kelvin", -INF),
    ("k-kelvin", 1.7976931348623157e308), ("a_b", -1.7976931348623157e308), ("a%b", 2.5),
    ("a\\b", 2.5), ("a\nb", 3.0), ("", 4.0), ("ÀÉÎ", 1e-300), ("àéî", 9e15),
    ("tab\tx", 12.0), ("😀", -1.5),
]  # fmt: skip


def test_edge_values_agree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVTRACK_AUTO_COMPACT", "false")
    uri = str(tmp_path / "edge")
    client = evtrack.MlflowClient(uri)
    exp = client.create_experiment("edge")
    for i, (text, value) in enumerate(EDGE_VALUES):
        run = client.create_run(exp, start_time=1_000 + i % 4, run_name=text or None)
        rid = run.info.run_id
        client.log_batch(
            rid,
            metrics=[Metric("m", value, 5, 0)] + ([Metric("n", float(i), 5, 0)] if i % 3 else []),
            params=[Param("p", text)] if i % 4 else [],
            tags=[RunTag("t", text)],
        )
        if i % 5 == 0:
            client.set_terminated(rid, end_time=2_000 + i)
    client.search_runs([exp])
    client.store.close()
    paths = BothPaths(uri)
    patterns = [
        "i%", "I%", "İ%", "%ISTANBUL", "strasse", "STRAßE", "ǅ%", "ǆEMAL", "ω", "Ω", "k%", "K%",
        "a_b", "a\\_b", "a%b", "a\\%b", "a\\b", "a_b%", "_", "__", "a%", "%", "", "%\n%",
        "a_\nb", "àÉ%", "😀", "_%x", "%x",
    ]  # fmt: skip
    filters = []
    for pat in patterns:
        quoted = f'"{pat}"' if "'" not in pat else f"'{pat}'"
        for entity in ("tags.t", "params.p", "run_name"):
            for op in ("LIKE", "ILIKE", "=", "!="):
                filters.append(f"{entity} {op} {quoted}")
    for number in ("0", "-0.0", "5e-324", "1e308", "1.7976931348623157e308", "1e309", "-1e309"):
        for op in ("=", "!=", "<", "<=", ">", ">="):
            filters.append(f"metrics.m {op} {number}")
    filters += ["end_time IS NULL", "end_time >= 2000", "params.p IS NULL", "metrics.n > 3"]
    for text in filters:
        for view in (1, 3):
            paths.check({"experiments": [exp], "filter": text, "view": view})
    for order in (["metrics.m"], ["metrics.m DESC"], ["params.p"], ["tags.t DESC"],
                  ["run_name"], ["run_name DESC"], ["metrics.n DESC", "metrics.m"],
                  ["end_time"], ["end_time DESC"], ["start_time"]):  # fmt: skip
        for size in (1000, 3, 1):
            paths.check({"experiments": [exp], "order_by": order, "max_results": size})


def test_like_matches_duckdb_on_strings() -> None:
    """evaluate.like against DuckDB's LIKE/ILIKE directly, on more pairs than a store holds."""
    duckdb = pytest.importorskip("duckdb")
    from evtrack.search.evaluate import like

    values = [v for v, _ in EDGE_VALUES] + ["100%_done", "A%B", "x_y_z", "ﬁ", "FI", "Ǳ", "ǳ"]
    patterns = values + ["%", "_", "%_%", "__%", "%\\%", "ﬁ", "fi", "%ǳ%", "%b", "A%"]
    con = duckdb.connect()
    for v in values:
        for p in patterns:
            got = con.execute("select ? like ?, ? ilike ?", [v, p, v, p]).fetchone()
            assert (like(v, p), like(v, p, case_insensitive=True)) == got, (v, p)
    con.close()


# -- never stale ----------------------------------------------------------------------

FRESH = """
import json, sys
import evtrack
client = evtrack.MlflowClient(sys.argv[1])
runs = client.search_runs([sys.argv[2]], sys.argv[3], run_view_type=3, max_results=10000)
out = sorted([r.info.run_id, r.info.status, r.info.lifecycle_stage, r.data.params,
              r.data.tags, r.data.metrics] for r in runs)
heavy = sorted(m for m in ("pyarrow", "duckdb", "pandas") if m in sys.modules)
print("RESULT " + json.dumps({"runs": out, "heavy": heavy,
                              "fast": not client.store._index._entries}))
"""


def _fresh(uri: str, exp: str, cache: str, flt: str = "") -> dict:
    env = subprocess_env(EVTRACK_INDEX_CACHE_DIR=cache, EVTRACK_AUTO_COMPACT="false")
    out = run_python(FRESH, uri, exp, flt, env=env, timeout=120).stdout
    return json.loads(out.split("RESULT ", 1)[1])


@pytest.mark.parametrize("where", ["local", "s3"])
def test_a_fresh_search_imports_neither_pyarrow_nor_duckdb(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest, where: str
) -> None:
    cache = str(tmp_path / "cache")
    monkeypatch.setenv("EVTRACK_INDEX_CACHE_DIR", cache)
    if where == "s3":
        from s3_server import new_s3_uri

        uri = new_s3_uri(request)  # sets the credentials the child processes inherit
    else:
        uri = str(tmp_path / "s")
    env = subprocess_env(EVTRACK_INDEX_CACHE_DIR=cache, EVTRACK_AUTO_COMPACT="false")
    writer = """
import sys, evtrack
c = evtrack.MlflowClient(sys.argv[1])
e = c.create_experiment("x")
for i in range(30):
    r = c.create_run(e)
    c.log_batch(r.info.run_id, metrics=[evtrack.entities.Metric("rmse", i / 30, 1, 0)],
                params=[evtrack.entities.Param("alpha", str(i % 3))])
    c.set_terminated(r.info.run_id)
c.search_runs([e])
print(e)
"""
    exp = run_python(writer, uri, env=env).stdout.strip().splitlines()[-1]
    res = _fresh(uri, exp, cache, "metrics.rmse < 0.5 and params.alpha = '1'")
    assert res["fast"] and res["heavy"] == []
    assert len(res["runs"]) == 5
    # The same search without the summary: same answer, through the index.
    run_summary.save(evtrack.MlflowClient(uri).store.layout, exp, None)
    slow = _fresh(uri, exp, cache, "metrics.rmse < 0.5 and params.alpha = '1'")
    assert not slow["fast"] and "duckdb" in slow["heavy"]
    assert slow["runs"] == res["runs"]


def _expected(uri: str, exp: str) -> list:
    """The answer with no saved index or summary at all."""
    return _fresh(uri, exp, "off")["runs"]


def test_a_stale_summary_is_never_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVTRACK_AUTO_COMPACT", "false")
    cache = str(tmp_path / "cache")
    monkeypatch.setenv("EVTRACK_INDEX_CACHE_DIR", cache)
    uri = str(tmp_path / "s")
    client = evtrack.MlflowClient(uri)
    exp = client.create_experiment("x")
    ids = []
    for i in range(6):
        rid = client.create_run(exp).info.run_id
        client.log_batch(rid, params=[Param("a", str(i))], tags=[RunTag("t", "v")])
        client.set_terminated(rid)
        ids.append(rid)
    client.search_runs([exp])
    client.store.close()
    first = _fresh(uri, exp, cache)
    assert first["fast"] and first["runs"] == _expected(uri, exp)
    path = run_summary.summary_path(client.store.layout, exp)
    assert path is not None

    def change_then_check(change: Any) -> None:
        before = Path(path).read_bytes()
        c = evtrack.MlflowClient(uri)
        change(c)
        c.store.close()
        assert Path(path).read_bytes() == before  # the summary on disk is now stale
        res = _fresh(uri, exp, cache)
        assert not res["fast"] and res["runs"] == _expected(uri, exp)
        # Once the index path saves again (after a full re-read), the summary is used.
        again = _fresh(uri, exp, cache)
        assert again["runs"] == res["runs"]

    change_then_check(lambda c: c.create_run(exp))
    change_then_check(lambda c: c.set_tag(ids[0], "t", "changed"))
    change_then_check(lambda c: c.delete_tag(ids[1], "t"))
    change_then_check(lambda c: c.delete_run(ids[2]))
    change_then_check(lambda c: c.set_terminated(ids[3], "FAILED"))
    change_then_check(lambda c: compact_experiment(c.store.layout, exp))
    change_then_check(lambda c: (c.set_tag(ids[4], "t", "x"), c.log_param(ids[5], "b", "1")))

    def compact_and_collect(c: evtrack.MlflowClient) -> None:
        c.set_tag(ids[0], "after", "gc")
        compact_experiment(c.store.layout, exp)
        gc(c.store.layout, grace_seconds=0, delete_runs=False)

    change_then_check(compact_and_collect)


@pytest.mark.parametrize("damage", ["cut", "garbage", "other-format", "other-experiment"])
def test_a_damaged_summary_is_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: str
) -> None:
    import marshal

    cache = str(tmp_path / "cache")
    uri = str(tmp_path / "s")
    monkeypatch.setenv("EVTRACK_INDEX_CACHE_DIR", cache)
    monkeypatch.setenv("EVTRACK_AUTO_COMPACT", "false")
    if True:
        client = evtrack.MlflowClient(uri)
        exp = client.create_experiment("x")
        other = client.create_experiment("y")
        for _ in range(3):
            client.set_terminated(client.create_run(exp).info.run_id)
        client.search_runs([exp])
        client.search_runs([other])
        path = Path(run_summary.summary_path(client.store.layout, exp) or "")
        data = path.read_bytes()
        if damage == "cut":
            path.write_bytes(data[: len(data) // 2])
        elif damage == "garbage":
            path.write_bytes(b"\x00" * 100)
        else:
            magic = run_summary._MAGIC
            body = marshal.loads(data[len(magic) :])
            if damage == "other-format":
                body[0][0] += 1
            else:
                body[0][4] = other
            path.write_bytes(magic + marshal.dumps(body))
        assert run_summary.load(client.store.layout, exp) is None
        res = _fresh(uri, exp, cache)
        assert not res["fast"] and res["runs"] == _expected(uri, exp)


def test_memory_stores_have_no_summary() -> None:
    client = evtrack.MlflowClient("memory://fast-path-none")
    exp = client.create_experiment("x")
    client.create_run(exp)
    assert len(client.search_runs([exp])) == 1
    assert run_summary.summary_path(client.store.layout, exp) is None
    assert client.store._index._entries  # the index path answered


def test_summary_only_up_to_max_runs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(run_summary, "MAX_RUNS", 4)
    client = evtrack.MlflowClient(str(tmp_path / "s"))
    exp = client.create_experiment("x")
    for _ in range(4):
        client.create_run(exp)
    client.search_runs([exp])
    summary = run_summary.load(client.store.layout, exp)
    assert summary is not None and len(summary.runs) == 4
    client.store.close()
    client = evtrack.MlflowClient(str(tmp_path / "s"))
    client.create_run(exp)
    compact_experiment(client.store.layout, exp)
    client.search_runs([exp])  # re-read, 5 runs: the old summary is removed, none written
    assert run_summary.load(client.store.layout, exp) is None
    assert index_cache.load(client.store.layout, exp) is not None  # the index still is


def test_no_known_experiment_finds_nothing(tmp_path: Path) -> None:
    """Used to raise IndexError from the index (no experiment's tables to concatenate)."""
    client = evtrack.MlflowClient(str(tmp_path / "s"))
    client.create_run(client.create_experiment("x"))
    for ids in ([], ["404"], ["404", "405"]):
        res = client.search_runs(ids, run_view_type=3)
        assert list(res) == [] and res.token is None
