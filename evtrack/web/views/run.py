"""The run page: status, times, params, tags, latest metrics, family, logged models,
and charts."""

from __future__ import annotations

import hashlib
import posixpath
import time
from typing import Any

from flask import request

from evtrack.errors import InvalidParameterValue
from evtrack.web.views.base import arg_list, blueprint, page, state, wants_json

NOTE_TAG = "mlflow.note.content"
PARENT_TAG = "mlflow.parentRunId"
MAX_CHILDREN = 500
MAX_PREFETCH = 8


def chart_settings() -> dict[str, Any]:
    """Chart settings shared by the run and compare pages, from the URL."""
    from evtrack.web.series import X_AXES

    x = request.args.get("x", "step")
    if x not in X_AXES:
        raise InvalidParameterValue(f"Invalid x axis {x!r}: use one of {', '.join(X_AXES)}.")
    try:
        smooth = float(request.args.get("smooth", "0") or 0)
    except ValueError:
        raise InvalidParameterValue("smooth must be a number between 0 and 0.99.") from None
    if not 0 <= smooth < 1:
        raise InvalidParameterValue("smooth must be a number between 0 and 0.99.")
    return {"x": x, "log": request.args.get("log") == "1", "smooth": smooth}


def run_version(snap: Any, run_id: str) -> str:
    """Changes whenever the run gets an event: a digest of its segment names."""
    prefix = run_id + "."
    names = sorted(
        name for name in (posixpath.basename(p) for p in snap.paths) if name.startswith(prefix)
    )
    return f"{len(names)}-{hashlib.sha1(chr(10).join(names).encode()).hexdigest()[:12]}"


def run_info(row: dict[str, Any], now_ms: int | None = None) -> dict[str, Any]:
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    start, end = row.get("start_time"), row.get("end_time")
    if start is None:
        duration = None
    elif end is not None:
        duration = end - start
    else:
        duration = now_ms - start if row.get("status") == "RUNNING" else None
    return {
        "run_id": row["run_id"],
        "run_name": row["run_name"],
        "experiment_id": row["experiment_id"],
        "status": row["status"],
        "user_id": row["user_id"],
        "start_time": start,
        "end_time": end,
        "duration_ms": duration,
        "lifecycle_stage": row["lifecycle_stage"],
        "artifact_uri": row["artifact_uri"],
        "parent_id": row.get("parent_id"),
    }


def run_data(snap: Any, run_id: str) -> dict[str, Any]:
    params = snap.query("SELECT key, value FROM params WHERE run_id = ? ORDER BY key", [run_id])
    metrics = snap.query(
        "SELECT key, value, step, timestamp FROM latest_metrics WHERE run_id = ? ORDER BY key",
        [run_id],
    )
    tags = snap.query("SELECT key, value FROM tags WHERE run_id = ? ORDER BY key", [run_id])
    return {"params": params, "metrics": metrics, "tags": tags}


def logged_models(snap: Any, run_id: str, artifact_uri: str | None) -> list[dict[str, Any]]:
    """The run's logged models (MLflow 3's ``log_model``), each with where its files are
    browsed: ``path`` inside the run's artifacts when the model was saved there (evtrack's
    ``log_model`` on a store), else the model's own folder (``model``: the stock client
    through a server puts it under ``<experiment>/models/<model_id>/artifacts``)."""
    rows = snap.query(
        "SELECT model_id, name, status, model_type, artifact_location, creation_timestamp "
        "FROM logged_models WHERE source_run_id = ? AND lifecycle_stage = 'active' "
        "ORDER BY creation_timestamp, model_id",
        [run_id],
    )
    base = (artifact_uri or "").rstrip("/") + "/"
    for r in rows:
        location = (r["artifact_location"] or "").rstrip("/")
        inside = artifact_uri and location.startswith(base)
        r["files"] = (
            {"path": location[len(base) :], "model": None}
            if inside
            else {"path": None, "model": r["model_id"]}
        )
    return rows


@blueprint.get("/runs/<run_id>")
def run(run_id: str):
    snap, row = state().snapshots.run(run_id)
    info = run_info(row)
    data = run_data(snap, run_id)
    tags = {t["key"]: t["value"] for t in data["tags"]}
    parent = None
    if info["parent_id"]:
        found = snap.query(
            "SELECT run_id, run_name, status FROM runs WHERE run_id = ?", [info["parent_id"]]
        )
        parent = found[0] if found else {"run_id": info["parent_id"], "run_name": None}
    children = snap.query(
        "SELECT run_id, run_name, status, start_time FROM runs WHERE parent_id = ? "
        "ORDER BY start_time, run_id LIMIT ?",
        [run_id, MAX_CHILDREN + 1],
    )
    inputs = snap.query(
        "SELECT name, digest, context FROM inputs WHERE run_id = ? ORDER BY name", [run_id]
    )
    models = logged_models(snap, run_id, info["artifact_uri"])
    metric_keys = [m["key"] for m in data["metrics"]]
    chosen = arg_list("charts")
    charts = [k for k in chosen if k in metric_keys] if chosen else metric_keys
    if not wants_json():
        state().series.prefetch(snap.experiment_id, run_id, charts[:MAX_PREFETCH])
    out = {
        "run": info,
        "experiment": {
            "experiment_id": snap.experiment_id,
            "name": snap.experiment["name"] if snap.experiment else None,
        },
        "description": tags.get(NOTE_TAG),
        "params": data["params"],
        "metrics": data["metrics"],
        "tags": [t for t in data["tags"] if not t["key"].startswith("mlflow.")],
        "system_tags": [t for t in data["tags"] if t["key"].startswith("mlflow.")],
        "parent": parent,
        "children": children[:MAX_CHILDREN],
        "more_children": len(children) > MAX_CHILDREN,
        "inputs": inputs,
        "logged_models": models,
        "charts": {"keys": charts, **chart_settings()},
        "version": run_version(snap, run_id),
    }
    return page("run.html", out)
