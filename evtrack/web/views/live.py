"""JSON endpoints the pages' scripts call: chart data and cheap version checks.

``/-/…/version`` answers from the segment listing alone (throttled, see
:mod:`evtrack.web.snapshots`), so pages can poll it every few seconds; they fetch
anything heavier only when the version changed.
"""

from __future__ import annotations

from flask import request

from evtrack.errors import InvalidParameterValue
from evtrack.web.views.base import arg_float, arg_int, blueprint, state, to_json
from evtrack.web.views.run import run_info, run_version


@blueprint.get("/-/experiments/<experiment_id>/version")
def api_experiment_version(experiment_id: str):
    snap = state().snapshots.experiment(experiment_id)
    return to_json(
        {
            "experiment_id": experiment_id,
            "version": snap.version,
            "last_activity": snap.max_time,
        }
    )


@blueprint.get("/-/runs/<run_id>/version")
def api_run_version(run_id: str):
    snap, row = state().snapshots.run(run_id)
    metrics = snap.query(
        "SELECT key, value, step, timestamp FROM latest_metrics WHERE run_id = ? ORDER BY key",
        [run_id],
    )
    return to_json(
        {
            "run_id": run_id,
            "version": run_version(snap, run_id),
            "run": run_info(row),
            "metrics": metrics,
        }
    )


@blueprint.get("/-/runs/<run_id>/metric")
def api_metric(run_id: str):
    """Points of one metric to draw: ``key``, ``x`` (step|relative|wall), ``lo``/``hi``
    (the visible x range, optional), ``width`` (pixels: about 4 points per pixel at most).
    """
    from evtrack.web.series import X_AXES

    key = request.args.get("key", "")
    if not key:
        raise InvalidParameterValue("key is required.")
    axis = request.args.get("x", "step")
    if axis not in X_AXES:
        raise InvalidParameterValue(f"Invalid x axis {axis!r}: use one of {', '.join(X_AXES)}.")
    width = arg_int("width", 1000, 16, 8192)
    lo, hi = arg_float("lo"), arg_float("hi")
    st = state()
    snap, row = st.snapshots.run(run_id)
    series = st.series.get(snap.experiment_id, run_id, key)
    window = series.window(axis, lo, hi, width, origin_ms=row.get("start_time"))
    return to_json({"run_id": run_id, "key": key, "axis": axis, "lo": lo, "hi": hi, **window})
