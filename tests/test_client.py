"""``MlflowClient``: the run-id-explicit API, with MLflow's names, arguments and errors."""

from __future__ import annotations

import inspect
import threading

import pytest

import evtrack
from evtrack import MlflowClient, ViewType
from evtrack.entities import Metric, Param, RunTag
from evtrack.errors import InvalidParameterValue, ResourceAlreadyExists


@pytest.fixture
def client(tmp_path) -> MlflowClient:
    return MlflowClient(str(tmp_path / "store"))


def test_client_uses_fluent_tracking_uri_by_default(evtrack_isolation):
    assert MlflowClient().tracking_uri == "file://" + str(evtrack_isolation)
    from evtrack.tracking import MlflowClient as FromTracking

    assert FromTracking is MlflowClient


@pytest.mark.parametrize(
    ("method", "arguments"),
    [
        ("create_experiment", ["name", "artifact_location", "tags"]),
        ("create_run", ["experiment_id", "start_time", "tags", "run_name"]),
        ("log_metric", ["run_id", "key", "value", "timestamp", "step", "synchronous"]),
        ("log_param", ["run_id", "key", "value", "synchronous"]),
        ("set_tag", ["run_id", "key", "value", "synchronous"]),
        ("log_batch", ["run_id", "metrics", "params", "tags", "synchronous"]),
        ("set_terminated", ["run_id", "status", "end_time"]),
        ("get_metric_history", ["run_id", "key"]),
        (
            "search_runs",
            ["experiment_ids", "filter_string", "run_view_type", "max_results", "order_by"],
        ),
        (
            "search_experiments",
            ["view_type", "max_results", "filter_string", "order_by", "page_token"],
        ),
        ("list_artifacts", ["run_id", "path"]),
        ("download_artifacts", ["run_id", "path", "dst_path"]),
        ("log_artifact", ["run_id", "local_path", "artifact_path"]),
        ("log_text", ["run_id", "text", "artifact_file"]),
        ("log_dict", ["run_id", "dictionary", "artifact_file"]),
    ],
)
def test_signatures_follow_mlflow(method, arguments):
    params = list(inspect.signature(getattr(MlflowClient, method)).parameters)[1:]
    assert params[: len(arguments)] == arguments


def test_create_run_with_start_time_tags_and_name(client):
    run = client.create_run("0", start_time=1234, tags={"a": 1}, run_name="named")
    assert (run.info.start_time, run.info.run_name, run.info.status) == (1234, "named", "RUNNING")
    assert run.data.tags["a"] == "1"
    assert run.data.tags["mlflow.runName"] == "named"
    by_tag = client.create_run("0", tags={"mlflow.runName": "from-tag"})
    assert client.get_run(by_tag.info.run_id).info.run_name == "from-tag"
    with pytest.raises(InvalidParameterValue, match="different values"):
        client.create_run("0", tags={"mlflow.runName": "x"}, run_name="y")


def test_create_run_in_unknown_experiment(client):
    with pytest.raises(evtrack.errors.ExperimentNotFound):
        client.create_run("4242")


def test_update_run_name_and_status(client):
    run_id = client.create_run("0").info.run_id
    client.update_run(run_id, name="renamed")
    got = client.get_run(run_id)
    assert got.info.run_name == "renamed" and got.data.tags["mlflow.runName"] == "renamed"
    client.update_run(run_id, status="KILLED")
    got = client.get_run(run_id)
    assert got.info.status == "KILLED" and got.info.end_time is not None
    with pytest.raises(InvalidParameterValue, match="status"):
        client.update_run(run_id, status="SLEEPING")


def test_set_terminated_defaults_to_finished_now(client):
    run_id = client.create_run("0").info.run_id
    client.set_terminated(run_id)
    info = client.get_run(run_id).info
    assert info.status == "FINISHED"
    assert info.end_time >= info.start_time
    with pytest.raises(InvalidParameterValue, match="status"):
        client.set_terminated(run_id, "DONE")


def test_log_metric_and_synchronous_flag(client):
    run_id = client.create_run("0").info.run_id
    client.log_metric(run_id, "m", 1.5, timestamp=10, step=2, synchronous=True)
    assert not client.writer.has_pending()
    client.log_metric(run_id, "m", 2.5, timestamp=11, step=3)
    history = client.get_metric_history(run_id, "m")
    assert [(m.key, m.value, m.timestamp, m.step) for m in history] == [
        ("m", 1.5, 10, 2),
        ("m", 2.5, 11, 3),
    ]
    assert all(m.run_id == run_id for m in history)


def test_log_batch_mixes_all_kinds(client):
    run_id = client.create_run("0").info.run_id
    client.log_batch(
        run_id,
        metrics=[Metric("a", 1.0, 5, 0), Metric("a", 2.0, 6, 1), Metric("b", 3.0, 7, 0)],
        params=[Param("p", "1")],
        tags=[RunTag("t", "x"), RunTag("mlflow.runName", "batch-name")],
    )
    got = client.get_run(run_id)
    assert got.data.metrics == {"a": 2.0, "b": 3.0}
    assert got.data.params == {"p": "1"}
    assert got.data.tags["t"] == "x"
    assert got.info.run_name == "batch-name"  # the tag renames the run, as in MLflow
    client.log_batch(run_id)  # an empty batch is fine


def test_get_metric_history_arrow(client):
    run_id = client.create_run("0").info.run_id
    client.log_batch(run_id, metrics=[Metric("m", float(i), 100 + i, 9 - i) for i in range(10)])
    table = client.get_metric_history_arrow(run_id, "m")
    assert table.column_names == ["step", "timestamp", "value"]
    assert table["step"].to_pylist() == list(range(10))
    assert table["value"].to_pylist() == [float(9 - s) for s in range(10)]


def test_search_runs_page_tokens_cover_every_run_once(client):
    exp_id = client.create_experiment("paged")
    made = {client.create_run(exp_id).info.run_id for _ in range(7)}
    seen: list[str] = []
    token = None
    pages = 0
    while True:
        page = client.search_runs(exp_id, max_results=3, page_token=token)
        pages += 1
        seen += [r.info.run_id for r in page]
        token = page.token
        if token is None:
            break
    assert pages == 3
    assert sorted(seen) == sorted(made)
    # experiment_ids may be one id or a list
    assert len(client.search_runs([exp_id, "0"])) == 7


def test_search_runs_default_order_is_newest_first(client):
    exp_id = client.create_experiment("ordered")
    ids = [client.create_run(exp_id, start_time=t).info.run_id for t in (100, 300, 200)]
    got = [r.info.run_id for r in client.search_runs([exp_id])]
    assert got == [ids[1], ids[2], ids[0]]


def test_search_experiments_views_filter_and_pages(client):
    ids = [client.create_experiment(f"e{i}") for i in range(4)]
    client.delete_experiment(ids[0])
    active = client.search_experiments()
    assert {e.name for e in active} == {"Default", "e1", "e2", "e3"}
    assert [e.name for e in client.search_experiments(ViewType.DELETED_ONLY)] == ["e0"]
    assert len(client.search_experiments(ViewType.ALL)) == 5
    assert [e.name for e in client.search_experiments(filter_string="name = 'e2'")] == ["e2"]
    first = client.search_experiments(max_results=2)
    assert len(first) == 2 and first.token
    rest = client.search_experiments(max_results=2, page_token=first.token)
    assert {e.name for e in first} | {e.name for e in rest} == {"Default", "e1", "e2", "e3"}


def test_experiment_tag_delete_unknown(client):
    exp_id = client.create_experiment("t")
    with pytest.raises(InvalidParameterValue, match="nope"):
        client.delete_experiment_tag(exp_id, "nope")


def test_rename_to_a_taken_name_and_deleted_experiment(client):
    a = client.create_experiment("a")
    client.create_experiment("b")
    with pytest.raises(ResourceAlreadyExists):
        client.rename_experiment(a, "b")
    assert client.get_experiment(a).name == "a"
    client.rename_experiment(a, "a")  # no-op
    client.delete_experiment(a)
    with pytest.raises(evtrack.errors.InvalidState):
        client.rename_experiment(a, "c")


def test_delete_and_restore_twice(client):
    exp_id = client.create_experiment("twice")
    client.delete_experiment(exp_id)
    with pytest.raises(InvalidParameterValue, match="already deleted"):
        client.delete_experiment(exp_id)
    client.restore_experiment(exp_id)
    with pytest.raises(InvalidParameterValue, match="already active"):
        client.restore_experiment(exp_id)


def test_two_clients_in_one_process_share_one_writer(tmp_path):
    uri = str(tmp_path / "shared")
    a, b = MlflowClient(uri), MlflowClient(uri)
    assert a.writer is b.writer
    run_id = a.create_run("0").info.run_id
    b.log_metric(run_id, "m", 1.0)
    assert a.get_run(run_id).data.metrics == {"m": 1.0}


def test_clients_from_threads(client):
    run_id = client.create_run("0").info.run_id
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            client.set_tag(run_id, f"t{i}", str(i))
            client.log_param(run_id, f"p{i}", i)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    got = client.get_run(run_id)
    assert got.data.params == {f"p{i}": str(i) for i in range(4)}
    assert {f"t{i}": str(i) for i in range(4)}.items() <= got.data.tags.items()
