"""``POST /ajax-api/2.0/mlflow/experiments/search-datasets``: same summaries as mlflow."""

from __future__ import annotations

import pytest
from conftest import error_of

pytestmark = pytest.mark.mlflow

PATH = "/ajax-api/2.0/mlflow/experiments/search-datasets"


def dataset(name: str, digest: str, context: str | None) -> dict:
    tags = [{"key": "mlflow.data.context", "value": context}] if context else []
    return {
        "tags": tags,
        "dataset": {
            "name": name,
            "digest": digest,
            "source_type": "local",
            "source": '{"uri": "/data"}',
            "schema": "{}",
            "profile": '{"num_rows": 3}',
        },
    }


@pytest.fixture(scope="module")
def pair(servers):
    servers.seed("datasets-a", {"ds-1": {}, "ds-2": {}})
    servers.seed("datasets-b", {"ds-3": {}})
    logged = {
        "ds-1": [dataset("train", "d1", "training"), dataset("eval", "d2", "eval")],
        "ds-2": [dataset("train", "d1", "training"), dataset("raw", "d3", None)],
        "ds-3": [dataset("train", "d1", "testing")],
    }
    for server in (servers.mlflow, servers.evtrack):
        for run, items in logged.items():
            server.json(
                "POST",
                "/api/2.0/mlflow/runs/log-inputs",
                {"run_id": server.runs[run], "datasets": items},
            )
    return servers


def summaries(pair, server, answer) -> list:
    names = {v: k for k, v in server.runs.items() if k[0] == "@"}
    out = [
        {**s, "experiment_id": names[s["experiment_id"]]}
        for s in answer.body.get("dataset_summaries", [])
    ]
    return sorted(out, key=lambda s: sorted(s.items()))


@pytest.mark.parametrize("experiments", [["datasets-a"], ["datasets-a", "datasets-b"]])
def test_same_summaries(pair, experiments):
    bodies = [
        {"experiment_ids": [server.runs["@" + e] for e in experiments]}
        for server in (pair.mlflow, pair.evtrack)
    ]
    ml = pair.mlflow.call("POST", PATH, bodies[0])
    ev = pair.evtrack.call("POST", PATH, bodies[1])
    assert ml.status == ev.status == 200
    assert summaries(pair, pair.evtrack, ev) == summaries(pair, pair.mlflow, ml)
    assert summaries(pair, pair.evtrack, ev)  # not vacuous


@pytest.mark.parametrize(
    "body", [{"experiment_ids": []}, {}, {"experiment_ids": [str(i) for i in range(21)]}]
)
def test_same_errors(pair, body):
    ml, ev = pair.both("POST", PATH, body)
    assert ev.status == 400
    assert error_of(ev) == error_of(ml)


def test_unknown_experiment_is_empty(pair):
    ml, ev = pair.both("POST", PATH, {"experiment_ids": ["987654"]})
    assert ml.status == ev.status == 200
    assert ml.body == ev.body == {}
