"""``get-history-bulk-interval``: each run sampled on its own, keeping its last step, runs
in request order — as mlflow server 3.17 (its SQL store) answers."""

from __future__ import annotations

import pytest
from conftest import error_of, q

pytestmark = pytest.mark.mlflow

PATH = "/ajax-api/2.0/mlflow/metrics/get-history-bulk-interval?"


@pytest.fixture(scope="module")
def pair(servers):
    servers.seed(
        "bulk-interval",
        {
            "bi-long": {"m": [(s, 100 + s, s * 0.5) for s in range(0, 3000, 3)]},
            "bi-short": {"m": [(s, 50 + s, -s) for s in range(17)]},
            "bi-odd": {"m": [(s * s, 10, 1.0) for s in range(60)] + [(5, 11, 2.0), (5, 12, 3.0)]},
        },
    )
    return servers


def ids(*names):
    return ["{run:" + n + "}" for n in names]


@pytest.mark.parametrize(
    "params",
    [
        {"run_ids": ids("bi-long", "bi-short", "bi-odd"), "metric_key": "m"},
        {"run_ids": ids("bi-short", "bi-long"), "metric_key": "m", "max_results": 10},
        {"run_ids": ids("bi-odd"), "metric_key": "m", "max_results": 7},
        {"run_ids": ids("bi-long"), "metric_key": "m", "max_results": 1},
        {
            "run_ids": ids("bi-long", "bi-odd"),
            "metric_key": "m",
            "max_results": 13,
            "start_step": 100,
            "end_step": 2000,
        },
        {"run_ids": ids("bi-short"), "metric_key": "m", "start_step": 3, "end_step": 3},
    ],
)
def test_same_samples(pair, params):
    ml, ev = pair.both("GET", PATH + q(**params))
    assert ml.status == ev.status == 200, (ml.raw[:300], ev.raw[:300])
    assert pair.unmap(pair.evtrack, ev.body) == pair.unmap(pair.mlflow, ml.body)


@pytest.mark.parametrize(
    "params",
    [
        {"run_ids": ids("bi-long"), "metric_key": "m", "max_results": 0},
        {"run_ids": ids("bi-long"), "metric_key": "m", "start_step": 5},
        {"run_ids": ids("bi-long"), "metric_key": "m", "start_step": 9, "end_step": 3},
    ],
)
def test_same_errors(pair, params):
    ml, ev = pair.both("GET", PATH + q(**params))
    assert ev.status == ml.status == 400
    assert error_of(ev) == error_of(ml)
