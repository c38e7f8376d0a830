"""The experiments page: every experiment with its run counts and last activity."""

from __future__ import annotations

import re
from typing import Any

from flask import request

from evtrack.errors import InvalidParameterValue
from evtrack.web.views.base import blueprint, page, state

_GRAMMAR = re.compile(r"(=|<|>|\bi?like\b|\bis\b|\bin\b)", re.IGNORECASE)
_SORTS = {
    "name": lambda e: (e["name"] or "").lower(),
    "runs": lambda e: e["runs"],
    "last_activity": lambda e: e["last_activity"] or 0,
    "created": lambda e: e["creation_time"] or 0,
    "id": lambda e: (len(e["experiment_id"]), e["experiment_id"]),
}
_VIEWS = {"active": ("active",), "deleted": ("deleted",), "all": ("active", "deleted")}


def _matches(snap: Any, query: str) -> bool:
    """MLflow's experiment filter grammar if the text uses it, else a name/id substring."""
    if not query:
        return True
    if _GRAMMAR.search(query):
        from evtrack.search import compiler

        built = compiler.build_search_experiments(3, query, 1000, None, None)
        return bool(snap.query(built.sql, list(built.params)))
    needle = query.lower()
    exp = snap.experiment_row
    return needle in (exp["name"] or "").lower() or needle == exp["experiment_id"]


def _row(snap: Any) -> dict[str, Any]:
    exp = snap.experiment_row
    counts = snap.query(
        "SELECT count(*) FILTER (WHERE lifecycle_stage = 'active') AS active, "
        "count(*) FILTER (WHERE lifecycle_stage = 'deleted') AS deleted, "
        "count(*) FILTER (WHERE lifecycle_stage = 'active' AND status = 'RUNNING') AS running "
        "FROM runs"
    )[0]
    tags = {r["key"]: r["value"] for r in snap.query("SELECT key, value FROM experiment_tags")}
    return {
        "experiment_id": exp["experiment_id"],
        "name": exp["name"],
        "lifecycle_stage": exp["lifecycle_stage"],
        "artifact_location": exp["artifact_location"],
        "creation_time": exp["creation_time"],
        "last_update_time": exp["last_update_time"],
        "last_activity": snap.max_time,
        "runs": counts["active"],
        "deleted_runs": counts["deleted"],
        "running": counts["running"],
        "description": tags.get("mlflow.note.content"),
        "tags": tags,
        "version": snap.version,
    }


@blueprint.get("/")
def experiments():
    query = request.args.get("q", "").strip()
    view = request.args.get("view", "active")
    sort = request.args.get("sort", "-last_activity")
    if view not in _VIEWS:
        raise InvalidParameterValue(f"Invalid view {view!r}: use active, deleted or all.")
    key = sort.lstrip("-")
    if key not in _SORTS:
        raise InvalidParameterValue(f"Invalid sort {sort!r}: use one of {', '.join(_SORTS)}.")
    error = None
    rows: list[dict[str, Any]] = []
    for snap in state().snapshots.experiments():
        if snap.experiment_row["lifecycle_stage"] not in _VIEWS[view]:
            continue
        try:
            if not _matches(snap, query):
                continue
        except InvalidParameterValue as exc:
            error = exc.message
            rows = []
            break
        rows.append(_row(snap))
    rows.sort(key=_SORTS[key], reverse=sort.startswith("-"))
    data = {
        "experiments": rows,
        "query": {"q": query, "view": view, "sort": sort},
        "error": error,
        "tracking_uri": state().tracking_uri,
    }
    return page("experiments.html", data, 400 if error else 200)
