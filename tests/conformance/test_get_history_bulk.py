"""``GET /ajax-api/2.0/mlflow/metrics/get-history-bulk``: same answers as mlflow server."""

from __future__ import annotations

import pytest
from conftest import error_of, q

pytestmark = pytest.mark.mlflow

PATH = "/ajax-api/2.0/mlflow/metrics/get-history-bulk?"


@pytest.fixture(scope="module")
def pair(servers):
    servers.seed(
        "history-bulk",
        {
            "hb-a": {"loss": [(s, 1000 + (7 * s) % 5, 1.0 / (s + 1)) for s in range(40)]},
            "hb-b": {"loss": [(s, 2000 - s, float(s)) for s in range(25)], "acc": [(0, 5, 0.5)]},
        },
    )
    return servers


@pytest.mark.parametrize(
    "runs, key, max_results",
    [
        (["hb-a", "hb-b"], "loss", None),
        (["hb-b", "hb-a"], "loss", 30),
        (["hb-a"], "loss", 7),
        (["hb-a", "hb-b", "hb-a"], "acc", None),
        (["hb-a", "f" * 32], "loss", 3),
        (["hb-a"], "nothing", None),
    ],
)
def test_same_points_same_order(pair, runs, key, max_results):
    """MLflow orders by run id (random on each server), then timestamp, step, value, and
    applies one limit overall: so evtrack's answer must equal MLflow's full answer put in
    evtrack's run-id order and cut at the limit."""
    ids = [r if len(r) == 32 else "{run:" + r + "}" for r in runs]
    full, _ = pair.both("GET", PATH + q(run_id=ids, metric_key=key))
    params = {"run_id": ids, "metric_key": key}
    if max_results is not None:
        params["max_results"] = max_results
    ml, ev = pair.both("GET", PATH + q(**params))
    assert ml.status == ev.status == full.status == 200
    ev_ids = {"<" + n + ">": rid for n, rid in pair.evtrack.runs.items()}
    expected = sorted(
        pair.unmap(pair.mlflow, full.body)["metrics"],
        key=lambda m: (ev_ids[m["run_id"]], m["timestamp"], m["step"], m["value"]),
    )[: max_results or 25_000]
    assert pair.unmap(pair.evtrack, ev.body) == {"metrics": expected}
    if max_results is not None:
        assert len(ml.body["metrics"]) == len(expected)


@pytest.mark.parametrize(
    "params",
    [
        {"metric_key": "loss"},
        {"run_id": ["{run:hb-a}"]},
        {"run_id": [f"r{i}" for i in range(101)], "metric_key": "loss"},
    ],
)
def test_same_errors(pair, params):
    ml, ev = pair.both("GET", PATH + q(**params))
    assert error_of(ev) == error_of(ml)
    assert ev.status == 400
