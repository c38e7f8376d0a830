"""``evtrack.sql``: DuckDB over the documented views (docs/sql.md is the contract)."""

from __future__ import annotations

import math
import re
import threading
from pathlib import Path

import pytest

import evtrack
from evtrack import MlflowClient
from evtrack.store.log.views import VIEW_NAMES, VIEWS_VERSION

DOC = Path(__file__).resolve().parent.parent / "docs" / "sql.md"

TYPES = {
    "events": {
        "writer": "VARCHAR",
        "seq": "BIGINT",
        "time": "BIGINT",
        "kind": "VARCHAR",
        "experiment_id": "VARCHAR",
        "run_id": "VARCHAR",
        "key": "VARCHAR",
        "value": "DOUBLE",
        "step": "BIGINT",
        "timestamp": "BIGINT",
        "text": "VARCHAR",
    },
    "runs": {"start_time": "BIGINT", "end_time": "BIGINT", "status": "VARCHAR"},
    "experiments": {"creation_time": "BIGINT", "last_update_time": "BIGINT"},
    "metrics": {"value": "DOUBLE", "step": "BIGINT", "timestamp": "BIGINT"},
    "latest_metrics": {"value": "DOUBLE", "step": "BIGINT", "timestamp": "BIGINT"},
    "params": {"key": "VARCHAR", "value": "VARCHAR"},
    "tags": {"key": "VARCHAR", "value": "VARCHAR"},
    "artifacts": {"size": "BIGINT", "sha256": "VARCHAR", "time": "BIGINT"},
}


@pytest.fixture
def store(tmp_path) -> MlflowClient:
    """Two experiments, three runs: params, metric histories, tags, an artifact."""
    uri = str(tmp_path / "store")
    evtrack.set_tracking_uri(uri)
    client = MlflowClient(uri)
    exp_id = client.create_experiment("wine")
    for name, alpha, losses in [("a", "0.1", [3.0, 2.0, 1.0]), ("b", "0.5", [4.0, math.nan])]:
        run_id = client.create_run(exp_id, run_name=name).info.run_id
        client.log_param(run_id, "alpha", alpha)
        for step, loss in enumerate(losses):
            client.log_metric(run_id, "loss", loss, timestamp=1000 + step, step=step)
        client.set_tag(run_id, "stage", "dev")
        client.set_terminated(run_id)
    other = client.create_run("0", run_name="c").info.run_id
    client.log_text(other, "x", "x.txt")
    client.set_tag(other, "gone", "1")
    client.delete_tag(other, "gone")
    return client


def documented_views() -> dict[str, list[str]]:
    views = {}
    for line in DOC.read_text().splitlines():
        m = re.match(r"\|\s*`(\w+)`\s*\|\s*`([^`]+)`\s*\|", line)
        if m:
            views[m[1]] = [c.strip() for c in m[2].split(",")]
    return views


def test_docs_describe_every_view_exactly(store):
    documented = documented_views()
    assert set(documented) == set(VIEW_NAMES)
    for view, columns in documented.items():
        assert evtrack.sql(f"select * from {view}").columns == columns, view
    assert (
        f"version {VIEWS_VERSION}" in DOC.read_text() or f"**{VIEWS_VERSION}**" in DOC.read_text()
    )


def test_column_types(store):
    for view, types in TYPES.items():
        rel = evtrack.sql(f"select * from {view}")
        actual = {c: str(t) for c, t in zip(rel.columns, rel.types, strict=True)}
        for column, expected in types.items():
            assert actual[column] == expected, (view, column)


def test_relation_outputs(store):
    import pandas as pd

    rel = evtrack.sql("select run_name, status from runs order by run_name")
    assert rel.fetchall() == [("a", "FINISHED"), ("b", "FINISHED"), ("c", "RUNNING")]
    arrow = rel.arrow()  # a Table, or on DuckDB 1.4+ a RecordBatchReader
    table = arrow.read_all() if hasattr(arrow, "read_all") else arrow
    assert table.column_names == ["run_name", "status"] and table.num_rows == 3
    df = evtrack.sql("select run_name from runs order by run_name").df()
    assert isinstance(df, pd.DataFrame) and list(df["run_name"]) == ["a", "b", "c"]


def test_parameters_are_bound_not_pasted(store):
    hostile = "0.1' or '1'='1"
    assert evtrack.sql("select * from params where value = ?", [hostile]).fetchall() == []
    rows = evtrack.sql("select count(*) from params where value = ?", ["0.1"]).fetchall()
    assert rows == [(1,)]
    named = evtrack.sql("select count(*) from params where value = $v", {"v": "0.5"}).fetchall()
    assert named == [(1,)]


def test_metrics_is_full_history_and_latest_is_one_per_key(store):
    history = evtrack.sql(
        "select r.run_name, m.step, m.value from metrics m join runs r using (run_id) "
        "order by r.run_name, m.step"
    ).fetchall()
    assert [(n, s) for n, s, _ in history] == [("a", 0), ("a", 1), ("a", 2), ("b", 0), ("b", 1)]
    assert math.isnan(history[-1][2])
    latest = evtrack.sql(
        "select r.run_name, m.value from latest_metrics m join runs r using (run_id) "
        "order by r.run_name"
    ).fetchall()
    assert latest[0] == ("a", 1.0)
    assert latest[1][0] == "b" and math.isnan(latest[1][1])


def test_joins_across_views_and_experiments(store):
    rows = evtrack.sql(
        """
        select e.name, r.run_name, p.value as alpha, m.value as loss
        from runs r
        join experiments e using (experiment_id)
        join params p on p.run_id = r.run_id and p.key = 'alpha'
        join latest_metrics m on m.run_id = r.run_id and m.key = 'loss'
        where not isnan(m.value)
        """
    ).fetchall()
    assert rows == [("wine", "a", "0.1", 1.0)]
    per_experiment = dict(
        evtrack.sql("select experiment_id, count(*) from runs group by all").fetchall()
    )
    assert sorted(per_experiment.values()) == [1, 2]


def test_events_keep_history_that_views_fold_away(store):
    tags = evtrack.sql("select key, value from tags where key = 'gone'").fetchall()
    assert tags == []
    history = evtrack.sql(
        "select text from events where kind = 'tag' and key = 'gone' order by time, seq"
    ).fetchall()
    assert history == [("1",), (None,)]
    kinds = {k for (k,) in evtrack.sql("select distinct kind from events").fetchall()}
    assert {"run", "param", "metric", "tag", "experiment", "artifact"} <= kinds


def test_sql_sees_this_process_buffered_writes(store):
    with evtrack.start_run() as run:
        evtrack.log_metric("fresh", 1.0)
        rows = evtrack.sql(
            "select count(*) from metrics where run_id = ? and key = 'fresh'", [run.info.run_id]
        ).fetchall()
    assert rows == [(1,)]


def test_concurrent_readers_see_their_own_events(tmp_path):
    stores = []
    for i in range(3):
        client = MlflowClient(str(tmp_path / f"s{i}"))
        run_id = client.create_run("0").info.run_id
        for step in range(i + 1):
            client.log_metric(run_id, "m", 1.0, step=step)
        stores.append(client)
    results: dict[int, list] = {}
    errors = []

    def read(i: int) -> None:
        try:
            for _ in range(5):
                results[i] = stores[i].sql("select count(*) from metrics").fetchall()
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=read, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert results == {0: [(1,)], 1: [(2,)], 2: [(3,)]}


def test_user_sql_cannot_break_later_reads(tmp_path):
    """Issue 8, bug 4: user SQL runs in a catalog of its own."""
    evtrack.set_tracking_uri(str(tmp_path / "s"))
    with evtrack.start_run() as run:
        evtrack.log_metric("m", 1.0)
        evtrack.log_param("p", "x")
    evtrack.sql("drop view runs")
    evtrack.sql("drop view latest_metrics")
    evtrack.sql("create or replace view params as select 1 as nonsense")
    assert evtrack.get_run(run.info.run_id).data.params == {"p": "x"}
    found = evtrack.search_runs(filter_string="metrics.m = 1", output_format="list")
    assert [r.info.run_id for r in found] == [run.info.run_id]
    assert evtrack.sql("select count(*) from runs").fetchall() == [(1,)]
    assert evtrack.sql("select key from params").fetchall() == [("p",)]


def test_bad_sql_is_an_invalid_parameter(tmp_path):
    evtrack.set_tracking_uri(str(tmp_path / "s"))
    with pytest.raises(evtrack.exceptions.MlflowException) as info:
        evtrack.sql("select * from no_such_view")
    assert info.value.error_code == "INVALID_PARAMETER_VALUE"
    assert "no_such_view" in info.value.message
