"""Bad input through the public API: the right exception, MLflow's error code, a message
that says what to fix, and a store left exactly as it was (same events before and after).

The rules themselves are unit-tested in ``test_validation.py``; here each one is driven
end to end, through the fluent API, the client and the artifact paths, to prove that
nothing reaches the log before the check fails.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from helpers import events_snapshot

import evtrack
from evtrack import MlflowClient
from evtrack.entities import Metric, Param, RunTag
from evtrack.errors import EvtrackError, InvalidParameterValue, RunNotFound


@pytest.fixture
def client(tmp_path) -> MlflowClient:
    uri = str(tmp_path / "store")
    evtrack.set_tracking_uri(uri)
    return MlflowClient(uri)


@pytest.fixture
def run_id(client) -> str:
    """A run with a param, a metric and a tag, active in the fluent API."""
    run_id = evtrack.start_run().info.run_id
    client.log_batch(
        run_id,
        metrics=[Metric("m", 1.0, 1, 0)],
        params=[Param("alpha", "0.5")],
        tags=[RunTag("t", "x")],
    )
    return run_id


@pytest.fixture
def unchanged(client, run_id) -> Iterator[None]:
    """The test must leave every event of the store exactly as it found it."""
    before = events_snapshot(client)
    yield
    assert events_snapshot(client) == before, "a refused call changed the store"


@contextmanager
def refused(
    exc_type: type[EvtrackError] = InvalidParameterValue,
    match: str | None = None,
    code: str = "INVALID_PARAMETER_VALUE",
    status: int = 400,
) -> Iterator[pytest.ExceptionInfo]:
    with pytest.raises(exc_type, match=match) as info:
        yield info
    assert info.value.error_code == code
    assert info.value.get_http_status_code() == status


def files_under(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def long(n: int) -> str:
    return "x" * n


KEY_CASES = {
    "bad-character": ("bad$key", "Names may only contain"),
    "empty": ("", "A key name must be provided"),
    "dot-dot": ("../up", "must not resolve to other names"),
    "double-slash": ("a//b", "must not resolve to other names"),
    "absolute": ("/abs", "must not resolve to other names"),
    "trailing-slash": ("a/", "must not resolve to other names"),
    "too-long": (long(251), "maximum length of 250"),
    "not-a-string": (5, "Keys must be strings"),
}


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize(("key", "fix"), KEY_CASES.values(), ids=KEY_CASES.keys())
def test_invalid_keys(client, run_id, key, fix):
    calls = [
        lambda: client.log_metric(run_id, key, 1.0),
        lambda: client.log_param(run_id, key, 1),
        lambda: client.set_tag(run_id, key, "v"),
        lambda: client.log_batch(run_id, metrics=[Metric("ok", 1.0, 1, 0), Metric(key, 2.0, 1, 0)]),
        lambda: client.log_batch(run_id, params=[Param("ok", "1"), Param(key, "2")]),
        lambda: client.log_batch(run_id, tags=[RunTag(key, "2")]),
        lambda: client.log_metric_series(run_id, key, [1.0, 2.0]),
        lambda: evtrack.log_metric(key, 1.0),
        lambda: evtrack.log_metrics({"ok": 1.0, key: 2.0}),
        lambda: evtrack.log_param(key, 1),
        lambda: evtrack.log_params({"ok": 1, key: 2}),
        lambda: evtrack.set_tag(key, 1),
        lambda: evtrack.set_tags({"ok": 1, key: 2}),
    ]
    for call in calls:
        with refused(match=fix):
            call()


@pytest.mark.usefixtures("unchanged")
def test_missing_keys(client, run_id):
    with refused(match="cannot be None"):
        client.log_metric(run_id, None, 1.0)
    with refused(match="key name must be provided"):
        client.log_param(run_id, None, 1)
    with refused(match="Missing value for required parameter 'key'"):
        client.set_tag(run_id, None, "v")


VALUE_CASES = {
    "bool": (True, "bool is not a metric value"),
    "numpy-bool": (np.bool_(False), "bool is not a metric value"),
    "str": ("1.0", "convert with float"),
    "bytes": (b"1", "convert with float"),
    "none": (None, "Missing value for required parameter 'value'"),
    "list": ([1.0, 2.0], "valid double"),
    "complex": (1j, "valid double"),
    "object": (object(), "valid double"),
    "too-big-int": (10**400, "too large for a 64-bit float"),
    "two-element-array": (np.array([1.0, 2.0]), "exactly one"),
}


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize(("value", "fix"), VALUE_CASES.values(), ids=VALUE_CASES.keys())
def test_invalid_metric_values(client, run_id, value, fix):
    calls = [
        lambda: client.log_metric(run_id, "m", value),
        lambda: client.log_batch(
            run_id, metrics=[Metric("ok", 1.0, 1, 0), Metric("m", value, 1, 0)]
        ),
        lambda: evtrack.log_metric("m", value),
        lambda: evtrack.log_metrics({"fine": 1.0, "m": value}),
        lambda: evtrack.log_metrics({"fine": 1.0, "m": value}, run_id=run_id),
    ]
    for call in calls:
        with refused(match=fix):
            call()


STEP_CASES = [1.5, 2**63, -(2**63) - 1, True, "3", math.nan]
TIMESTAMP_CASES = [-1, 2**63, math.nan, math.inf, "now", True]


@pytest.mark.usefixtures("unchanged")
def test_invalid_steps_and_timestamps(client, run_id):
    def with_step(step):
        return [
            lambda: client.log_metric(run_id, "m", 1.0, step=step),
            lambda: client.log_batch(run_id, metrics=[Metric("m", 1.0, 1, step)]),
            lambda: evtrack.log_metric("m", 1.0, step=step),
            lambda: evtrack.log_metrics({"m": 1.0}, step=step),
        ]

    def with_timestamp(ts):
        return [
            lambda: client.log_metric(run_id, "m", 1.0, timestamp=ts),
            lambda: client.log_batch(run_id, metrics=[Metric("m", 1.0, ts, 0)]),
            lambda: evtrack.log_metric("m", 1.0, timestamp=ts),
            lambda: evtrack.log_metrics({"m": 1.0}, timestamp=ts),
        ]

    for step in STEP_CASES:
        for call in with_step(step):
            with refused(match="Step must be a valid long"):
                call()
    for ts in TIMESTAMP_CASES:
        for call in with_timestamp(ts):
            with refused(match="nonnegative"):
                call()


@pytest.mark.usefixtures("unchanged")
def test_negative_run_times(client, run_id):
    with refused(match="nonnegative"):
        client.create_run("0", start_time=-5)
    with refused(match="nonnegative"):
        client.set_terminated(run_id, end_time=-1)


@pytest.mark.usefixtures("unchanged")
def test_too_long_values(client, run_id):
    with refused(match="maximum length of 6000") as info:
        client.log_param(run_id, "long", long(6001))
    assert "log_text" in info.value.message  # says where long text belongs
    with refused(match="maximum length of 6000"):
        evtrack.log_params({"ok": 1, "long": long(6001)})
    with refused(match="maximum length of 8000"):
        client.set_tag(run_id, "long", long(8001))
    with refused(match="maximum length of 8000"):
        evtrack.set_tags({"ok": 1, "long": long(8001)})
    with refused(match="maximum length of 500"):
        client.create_experiment(long(501))
    with refused(match="maximum length of 250"):
        client.create_run("0", run_name=long(251))
    with refused(match="maximum length of 20000"):
        client.set_experiment_tag("0", "k", long(20001))


def test_values_at_the_limits_are_accepted(client, run_id):
    client.log_param(run_id, "long", long(6000))
    client.set_tag(run_id, "long", long(8000))
    client.set_experiment_tag("0", "k", long(20000))
    client.create_experiment(long(500))
    run = client.get_run(run_id)
    assert run.data.params["long"] == long(6000)
    assert run.data.tags["long"] == long(8000)


@pytest.mark.usefixtures("unchanged")
def test_changed_param_and_duplicate_keys(client, run_id):
    with refused(match="Changing param values is not allowed") as info:
        client.log_param(run_id, "alpha", "0.6")
    assert "alpha" in info.value.message and "0.5" in info.value.message
    with refused(match="Changing param values is not allowed"):
        client.log_batch(run_id, params=[Param("new", "1"), Param("alpha", "0.7")])
    with refused(match="Changing param values is not allowed"):
        evtrack.log_params({"fresh": 1, "alpha": 2})
    with refused(match="Duplicate parameter keys"):
        client.log_batch(run_id, params=[Param("dup", "1"), Param("dup", "1")])
    assert client.get_run(run_id).data.params == {"alpha": "0.5"}


def test_oversized_batches_are_accepted_whole(client, run_id):
    """MLflow's Python client splits a big log_batch into requests that fit, so a
    caller never sees the per-request limits (1000 metrics, 100 params, 100 tags);
    those are enforced on the REST API. evtrack's client accepts the whole batch."""
    client.log_batch(
        run_id,
        metrics=[Metric("big", float(i), 1, i) for i in range(2500)],
        params=[Param(f"bp{i}", "1") for i in range(150)],
        tags=[RunTag(f"bt{i}", "1") for i in range(150)],
    )
    run = client.get_run(run_id)
    assert len(client.get_metric_history(run_id, "big")) == 2500
    assert len(run.data.params) == 151
    assert sum(k.startswith("bt") for k in run.data.tags) == 150


@pytest.mark.usefixtures("unchanged")
def test_batch_with_one_bad_item_writes_nothing(client, run_id):
    good = [Metric("good", float(i), 1, i) for i in range(10)]
    with refused(match="valid double"):
        client.log_batch(run_id, metrics=[*good, Metric("bad", "x", 1, 0)])
    with refused(match="Names may only contain"):
        client.log_batch(run_id, metrics=good, tags=[RunTag("b@d", "1")])
    with refused(match="maximum length of 6000"):
        client.log_batch(run_id, metrics=good, params=[Param("p", long(6001))])


SERIES_CASES = {
    "bool-values": (np.array([True, False]), None, None, "values"),
    "null-value": ([1.0, None], None, None, "values"),
    "string-values": (np.array(["a", "b"]), None, None, "values"),
    "length-mismatch": ([1.0, 2.0], [1, 2, 3], None, "steps"),
    "fractional-steps": ([1.0, 2.0], [0.5, 1], None, "fractional"),
    "negative-timestamp": ([1.0, 2.0], None, [-1, 5], "range"),
}


@pytest.mark.usefixtures("unchanged")
def test_invalid_metric_series(client, run_id):
    for values, steps, timestamps, fix in SERIES_CASES.values():
        with refused(match=fix):
            client.log_metric_series(run_id, "series", values, steps, timestamps)
        with refused(match=fix):
            evtrack.log_metric_series("series", values, steps, timestamps)


BAD_ARTIFACT_PATHS = [
    "../escape.txt",
    "a/../../escape.txt",
    "/etc/passwd",
    "//server/share.txt",
    "C:/windows.txt",
    "s3://bucket/x.txt",
    "file:/tmp/x.txt",
    "a\\..\\..\\b.txt",
    "%2e%2e/encoded.txt",
    "%252e%252e/double-encoded.txt",
    "nul\x00byte.txt",
    "....",
    "a/. ./b.txt",
]


@pytest.mark.usefixtures("unchanged")
def test_artifact_path_traversal(client, run_id, tmp_path):
    src = tmp_path / "payload.txt"
    src.write_text("payload")
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "t.txt").write_text("t")
    files = files_under(tmp_path)
    fix = "relative paths inside the run's artifact root"

    def calls_with(path, every_entry_point):
        calls = [
            lambda: client.log_text(run_id, "payload", path),
            lambda: client.download_artifacts(run_id, path, str(tmp_path / "dl")),
        ]
        if every_entry_point:
            calls += [
                lambda: client.log_dict(run_id, {"a": 1}, path),
                lambda: client.log_artifact(run_id, str(src), path),
                lambda: client.log_artifacts(run_id, str(tree), path),
                lambda: client.list_artifacts(run_id, path),
                lambda: client.delete_artifact(run_id, path),
                lambda: evtrack.log_text("payload", path),
                lambda: evtrack.log_artifact(str(src), path),
            ]
        return calls

    for i, path in enumerate(BAD_ARTIFACT_PATHS):
        # every entry point with a few of the paths (each call reads the run: slow)
        for call in calls_with(path, every_entry_point=i < 3):
            with refused(match=fix):
                call()
    assert files_under(tmp_path) == files
    assert client.list_artifacts(run_id) == []


def test_odd_but_safe_artifact_names_are_accepted(client, run_id, tmp_path):
    for name in ("..hidden.txt", "a/...b.txt", "dots..in..name.txt", "x/./y.txt"):
        client.log_text(run_id, name, name)
    paths = [p for (p,) in client.sql("select path from artifacts order by path").fetchall()]
    assert paths == ["..hidden.txt", "a/...b.txt", "dots..in..name.txt", "x/y.txt"]


@pytest.mark.usefixtures("unchanged")
def test_artifact_needs_a_file_name(client, run_id):
    for name in ("", "./", "."):
        with refused(match="file name"):
            client.log_text(run_id, "x", name)


@pytest.mark.usefixtures("unchanged")
def test_invalid_run_ids(client, run_id):
    fix = "Run IDs are 1 to 256 characters"

    def calls_with(bad_id):
        return [
            lambda: client.get_run(bad_id),
            lambda: client.log_metric(bad_id, "m", 1.0),
            lambda: client.log_param(bad_id, "p", 1),
            lambda: client.log_batch(bad_id, metrics=[Metric("m", 1.0, 1, 0)]),
            lambda: client.delete_run(bad_id),
            lambda: client.set_terminated(bad_id),
            lambda: client.log_text(bad_id, "x", "x.txt"),
            lambda: evtrack.log_metric("m", 1.0, run_id=bad_id or ""),
        ]

    for bad_id in ["../etc", "a/b", "x" * 300, "-leading-dash", "spa ce", "", None, 42]:
        for call in calls_with(bad_id):
            with refused(match=fix):
                call()
        if bad_id:  # start_run(run_id="") or None starts a new run, as in MLflow
            with refused(match=fix):
                evtrack.start_run(run_id=bad_id, nested=True)
    assert evtrack.active_run().info.run_id == run_id


@pytest.mark.usefixtures("unchanged")
def test_unknown_run_id(client, run_id):
    missing = "0123456789abcdef0123456789abcdef"
    not_found = {"exc_type": RunNotFound, "code": "RESOURCE_DOES_NOT_EXIST", "status": 404}
    with refused(**not_found) as info:
        client.get_run(missing)
    assert missing in info.value.message
    assert isinstance(info.value, LookupError)
    for call in (
        lambda: client.log_metric(missing, "m", 1.0),
        lambda: client.log_param(missing, "p", 1),
        lambda: evtrack.log_metric("m", 1.0, run_id=missing),
        lambda: client.set_terminated(missing),
        lambda: client.delete_run(missing),
    ):
        with refused(**not_found):
            call()
    with refused(**not_found):
        evtrack.start_run(run_id=missing, nested=True)
    assert evtrack.active_run().info.run_id == run_id


@pytest.mark.usefixtures("unchanged")
def test_invalid_experiment_ids_and_names(client):
    for bad_id in ["../0", "", "a b", "x" * 65, 1.5]:
        with refused(match="[Ee]xperiment"):
            client.get_experiment(bad_id)
        with refused(match="[Ee]xperiment"):
            client.create_run(bad_id)
        with refused(match="[Ee]xperiment"):
            evtrack.set_experiment(experiment_id=bad_id)
    for name in ["", "   ", None, 3]:
        with refused(match="experiment name"):
            client.create_experiment(name)
    for name in ["", "   ", 3]:
        with refused(match="experiment name"):
            evtrack.set_experiment(name)


def test_logging_to_a_deleted_run(client, run_id):
    evtrack.end_run()
    client.delete_run(run_id)
    before = events_snapshot(client)
    for call in (
        lambda: client.log_param(run_id, "p", 1),
        lambda: client.set_tag(run_id, "t2", "v"),
        lambda: client.delete_tag(run_id, "t"),
        lambda: client.log_batch(run_id, params=[Param("p", "1")]),
    ):
        with refused(match="must be in the 'active' state"):
            call()
    assert events_snapshot(client) == before


@pytest.mark.usefixtures("unchanged")
def test_invalid_search_arguments(client):
    with refused(exc_type=evtrack.errors.InvalidFilter):
        client.search_runs(["0"], "metrics.m >>> 1")
    with refused(match="max_results"):
        client.search_runs(["0"], max_results=0)
    with refused(match="max_results"):
        client.search_runs(["0"], max_results=50_001)
    with refused(exc_type=evtrack.errors.InvalidFilter):
        client.search_experiments(filter_string="nonsense ===")
