"""Comparing runs: overlaid charts, a params/metrics table, parallel coordinates."""

from __future__ import annotations

import math
from typing import Any

from flask import request

from evtrack.errors import InvalidParameterValue, RunNotFound
from evtrack.web.formatting import fmt_value
from evtrack.web.views.base import arg_list, blueprint, page, state
from evtrack.web.views.run import chart_settings, run_data, run_info

MAX_RUNS = 100
#: Tableau 10: distinct, and readable on light and dark backgrounds.
PALETTE = (
    "#4e79a7",
    "#f28e2b",
    "#e15759",
    "#76b7b2",
    "#59a14f",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#bab0ac",
)


def _number(text: Any) -> float | None:
    if isinstance(text, (int, float)):
        return float(text) if math.isfinite(text) else None
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _diff_rows(runs: list[dict], field: str) -> list[dict[str, Any]]:
    keys = sorted({k for r in runs for k in r[field]})
    rows = []
    for key in keys:
        values = [r[field].get(key) for r in runs]
        shown = [fmt_value(v) for v in values]
        rows.append({"key": key, "values": values, "differs": len(set(shown)) > 1})
    return rows


def parallel_coordinates(
    runs: list[dict], param_rows: list[dict], metric: str | None, width: int = 1120
) -> dict[str, Any] | None:
    """Geometry of a parallel coordinates plot: params that differ, then ``metric``.

    Numeric axes are linear from min (bottom) to max (top); other axes spread their
    distinct values evenly. A run without a value sits on the axis' "n/a" mark below.
    """
    axes_src = [(r["key"], "param", r["values"]) for r in param_rows if r["differs"]]
    if metric:
        axes_src.append((metric, "metric", [r["metrics"].get(metric) for r in runs]))
    if len(axes_src) < 2 or len(runs) < 2:
        return None
    top, bottom, height = 34, 280, 330
    left, right = 70, width - 90
    step = (right - left) / (len(axes_src) - 1)
    axes = []
    lines: list[list[tuple[float, float]]] = [[] for _ in runs]
    for i, (key, kind, values) in enumerate(axes_src):
        x = left + i * step
        nums = [_number(v) for v in values]
        present = [v for v in values if v is not None]
        numeric = bool(present) and all(
            n is not None for v, n in zip(values, nums, strict=True) if v is not None
        )
        ticks = []
        if numeric:
            lo = min(n for n in nums if n is not None)
            hi = max(n for n in nums if n is not None)
            span = (hi - lo) or 1.0

            def y_of(n: float, lo: float = lo, span: float = span) -> float:
                return bottom - (n - lo) / span * (bottom - top)

            ys = [None if n is None else y_of(n) for n in nums]
            for t in range(5):
                value = lo + span * t / 4 if hi != lo else lo
                ticks.append({"y": y_of(value), "label": fmt_value(float(f"{value:.4g}"))})
                if hi == lo:
                    break
        else:
            cats = sorted({fmt_value(v) for v in present})
            pos = {c: bottom - (j + 0.5) / len(cats) * (bottom - top) for j, c in enumerate(cats)}
            ys = [None if v is None else pos[fmt_value(v)] for v in values]
            ticks = [{"y": y, "label": c[:18]} for c, y in pos.items()]
        for line, y in zip(lines, ys, strict=True):
            line.append((x, bottom + 22 if y is None else y))
        axes.append({"key": key, "kind": kind, "x": x, "ticks": ticks, "numeric": numeric})
    return {
        "width": width,
        "height": height,
        "top": top,
        "bottom": bottom,
        "axes": axes,
        "lines": [
            {
                "run_id": r["run"]["run_id"],
                "color": r["color"],
                "points": " ".join(f"{x:.1f},{y:.1f}" for x, y in line),
            }
            for r, line in zip(runs, lines, strict=True)
        ],
    }


@blueprint.get("/compare")
def compare():
    ids = list(dict.fromkeys(arg_list("runs")))
    if len(ids) > MAX_RUNS:
        raise InvalidParameterValue(f"Compare at most {MAX_RUNS} runs at once.")
    runs: list[dict[str, Any]] = []
    missing: list[str] = []
    snapshots = state().snapshots
    for run_id in ids:
        try:
            snap, row = snapshots.run(run_id)
        except (RunNotFound, InvalidParameterValue):
            missing.append(run_id)
            continue
        data = run_data(snap, run_id)
        runs.append(
            {
                "run": run_info(row),
                "experiment_name": snap.experiment["name"] if snap.experiment else None,
                "color": PALETTE[len(runs) % len(PALETTE)],
                "params": {p["key"]: p["value"] for p in data["params"]},
                "metrics": {m["key"]: m["value"] for m in data["metrics"]},
            }
        )
    param_rows = _diff_rows(runs, "params")
    metric_rows = _diff_rows(runs, "metrics")
    metric_keys = [r["key"] for r in metric_rows]
    chosen = [k for k in arg_list("charts") if k in metric_keys]
    # Default: the metric most of the runs have (the first such, alphabetically).
    common = max(metric_rows, key=lambda r: sum(v is not None for v in r["values"]), default=None)
    pc_metric = request.args.get("pc_metric")
    if pc_metric not in metric_keys:
        pc_metric = common["key"] if common else None
    data = {
        "runs": runs,
        "missing": missing,
        "params": param_rows,
        "metrics": metric_rows,
        "charts": {"keys": chosen or metric_keys, **chart_settings()},
        "only_diff": request.args.get("only_diff") == "1",
        "parallel": {
            "metric": pc_metric,
            "plot": parallel_coordinates(runs, param_rows, pc_metric),
        },
    }
    return page("compare.html", data)
