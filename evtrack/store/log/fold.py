"""The fold rules: which event decides each fact. One place, used by every reader.

The DuckDB views (:mod:`evtrack.store.log.views`), compaction's reduced files
(:mod:`evtrack.store.log.compaction`) and the web view's summaries
(:mod:`evtrack.web.summary`) all pick winners with the expressions below, so the API,
SQL, compacted stores and the web view never disagree.

**Event order.** Events are ordered by ``(time, seq, writer)``: the wall-clock time the
event was made, then its writer's sequence number, then the writer id (two writers may
share a millisecond and a sequence number; the id makes the order total).

* *current value* (tags, run and experiment attributes, experiment tags, artifacts): the
  **last** event wins; a deletion is an event whose value is null, and wins like any other;
* *params*: the **first** event wins (a different value is refused at write time; if two
  processes race, every reader still agrees on one value).

**Latest metric point** (MLflow's rule, ``SqlAlchemyStore._update_latest_metrics_if_necessary``):
per (run, key) the point with the largest ``(step, timestamp, value)``, where NaN
counts as 0 (MLflow stores NaN as 0 with an ``is_nan`` flag and compares the 0). A
later point replaces the latest only if *strictly* larger, so among equal points the
**first logged** wins: NaN and 0.0 at the same step and timestamp keep whichever came
first; NaN beats -1.0 and loses to 1.0. ±inf compare as the largest/smallest values.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

__all__ = [
    "EVENT_ORDER",
    "FIRST_EVENT_FIRST",
    "LAST_EVENT_FIRST",
    "METRIC_RANK",
    "METRIC_WINNER_FIRST",
    "latest_metric_positions",
    "metric_value_rank",
]

#: The total order of events, as a DuckDB row: ``arg_max(x, EVENT_ORDER)`` is the last.
EVENT_ORDER = "(time, seq, writer)"

#: Window ordering whose first row is the last event (current-value facts).
LAST_EVENT_FIRST = "time desc, seq desc, writer desc"

#: Window ordering whose first row is the first event (params).
FIRST_EVENT_FIRST = "time, seq, writer"

#: ``arg_max`` key of the latest metric point: larger wins, ties go to the first logged.
#: (``-time, -seq`` make earlier events rank higher; ``writer`` is a string and cannot be
#: negated, so points equal in step, timestamp, value, time and seq from two writers tie
#: arbitrarily: their values are equal as MLflow compares them.)
METRIC_RANK = "(step, timestamp, if(isnan(value), 0, value), -time, -seq)"

#: Window ordering whose first row is the latest metric point (same rule, total order).
METRIC_WINNER_FIRST = (
    "step desc, timestamp desc, if(isnan(value), 0, value) desc, time, seq, writer"
)


def metric_value_rank(value: np.ndarray) -> np.ndarray:
    """Metric values as MLflow compares them: NaN counts as 0."""
    import numpy as np

    return np.where(np.isnan(value), 0.0, value)


def latest_metric_positions(
    group: np.ndarray,
    step: np.ndarray,
    stamp: np.ndarray,
    value: np.ndarray,
    time: np.ndarray,
    seq: np.ndarray,
) -> np.ndarray:
    """Positions of the latest point of each group (NumPy twin of :data:`METRIC_RANK`).

    ``group`` holds an integer per (run, key); the other arrays are the points' columns.
    Only points at their group's largest step are sorted, so a million-point history
    costs one pass plus a sort of a handful of candidates.
    """
    import numpy as np

    if group.size == 0:
        return group
    lo, hi = int(group.min()), int(group.max())
    if lo == hi:  # one run and key: the common shape of a big metric segment
        cand = np.flatnonzero(step == step.max())
    else:
        best = np.full(hi - lo + 1, np.iinfo(np.int64).min, dtype=np.int64)
        np.maximum.at(best, group - lo, step)
        cand = np.flatnonzero(step == best[group - lo])
    if cand.size > 1:
        # lexsort: last key is primary. Within a group, ascending by the rank, so the
        # winner is the last row: larger (step, timestamp, value) first, then earlier
        # (time, seq) ranks higher, hence their negations.
        order = np.lexsort(
            (
                -seq[cand],
                -time[cand],
                metric_value_rank(value[cand]),
                stamp[cand],
                step[cand],
                group[cand],
            )
        )
        cand = cand[order]
        last = np.append(group[cand][1:] != group[cand][:-1], True)
        cand = cand[last]
    return cand
