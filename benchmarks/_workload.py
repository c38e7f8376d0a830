"""The data every benchmark logs, the same on the evtrack side and the MLflow side.

Standard library only: the MLflow side imports this module from its own virtualenv,
where evtrack is not installed. Everything is derived from fixed seeds, so both
tracking systems store identical runs and a search must return the same number of
runs on both (the benchmarks print that count as a cross-check).
"""

from __future__ import annotations

import random

#: The filter of the search benchmark (MLflow's grammar).
SEARCH_FILTER = "metrics.rmse < 0.5 and params.alpha = '0.3'"
ALPHAS = ("0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7", "0.8", "0.9", "1.0")
#: Fixed so that both sides log identical points; any millisecond timestamp would do.
BASE_TIMESTAMP_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def run_spec(i: int) -> dict:
    """Run number ``i`` of the search benchmark: 3 params, 3 metrics, 2 tags."""
    rng = random.Random(1_000_003 * i + 17)
    return {
        "params": {
            "alpha": ALPHAS[rng.randrange(len(ALPHAS))],
            "l1_ratio": f"{rng.choice((0.1, 0.5, 0.9))}",
            "seed": str(i),
        },
        "metrics": {
            "rmse": rng.random(),
            "r2": rng.random(),
            "mae": rng.random(),
        },
        "tags": {"team": rng.choice(("vision", "nlp", "tabular")), "stage": "sweep"},
    }


def expected_matches(n_runs: int) -> int:
    """How many of the first ``n_runs`` runs :data:`SEARCH_FILTER` selects."""
    n = 0
    for i in range(n_runs):
        spec = run_spec(i)
        n += spec["metrics"]["rmse"] < 0.5 and spec["params"]["alpha"] == "0.3"
    return n


def batch_keys(size: int = 1000, distinct: int = 10) -> list[str]:
    """Metric keys of one ``log_batch`` call: ``distinct`` keys, repeated."""
    return [f"m{j % distinct}" for j in range(size)]


def history_value(step: int) -> float:
    """The value at ``step`` of the 1 M-point history (cheap, deterministic, not constant)."""
    return ((step * 2654435761) % 1_000_003) / 1_000_003.0
