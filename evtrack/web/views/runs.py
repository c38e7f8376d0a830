"""An experiment's runs table (``/experiments/<id>``) and its CSV download."""

from __future__ import annotations

import csv
import io
from typing import Any

from flask import Response, request

from evtrack.errors import InvalidParameterValue
from evtrack.web.table import (
    Column,
    TableQuery,
    available_columns,
    csv_rows,
    default_columns,
    runs_page,
)
from evtrack.web.views.base import arg_int, arg_list, blueprint, page, state

PER_PAGE = 100


def table_query() -> tuple[TableQuery, bool]:
    """The table's state from the URL, and whether the columns were chosen explicitly."""
    chosen = "cols" in request.args or "col" in request.args
    columns = []
    for text in arg_list("col"):
        col = Column.parse(text)
        if col not in columns:
            columns.append(col)
    q = TableQuery(
        filter=request.args.get("filter", "").strip(),
        view=request.args.get("view", "active"),
        sort=request.args.get("sort", "-start_time") or "-start_time",
        columns=columns,
        page=arg_int("page", 1, 1),
        per_page=arg_int("per_page", PER_PAGE, 1, 1000),
        parent=request.args.get("parent") or None,
    )
    return q, chosen


@blueprint.get("/experiments/<experiment_id>")
def runs(experiment_id: str):
    snap = state().snapshots.experiment(experiment_id)
    q, chosen = table_query()
    available = available_columns(snap)
    if not chosen:
        q.columns = default_columns(available)
    error = None
    try:
        result = runs_page(snap, q)
    except InvalidParameterValue as exc:  # InvalidFilter included: shown next to the box
        error = exc.message
        result = {"total": 0, "page": 1, "pages": 1, "rows": []}
    exp = snap.experiment_row
    data: dict[str, Any] = {
        "experiment": {
            "experiment_id": exp["experiment_id"],
            "name": exp["name"],
            "lifecycle_stage": exp["lifecycle_stage"],
            "artifact_location": exp["artifact_location"],
        },
        "query": {
            "filter": q.filter,
            "view": q.view,
            "sort": q.sort,
            "columns": [c.id for c in q.columns],
            "page": q.page,
            "per_page": q.per_page,
            "parent": q.parent,
            "selected": arg_list("sel"),
        },
        "available": available,
        "error": error,
        "version": snap.version,
        **result,
    }
    return page("runs.html", data, 400 if error else 200, columns=q.columns)


@blueprint.get("/experiments/<experiment_id>/runs.csv")
def runs_csv(experiment_id: str):
    snap = state().snapshots.experiment(experiment_id)
    q, chosen = table_query()
    if not chosen:
        available = available_columns(snap)
        q.columns = [Column("params", k) for k in available["params"]] + [
            Column("metrics", k) for k in available["metrics"]
        ]
    rows = csv_rows(snap, q)
    first = next(rows)  # raises a bad filter now, while a clean error can still be sent

    def generate():
        buf = io.StringIO()
        # Every text cell quoted, numbers bare: a spreadsheet keeps -0.5 a number and
        # reads quoted text as text (see table._csv_cell for the formula guard).
        writer = csv.writer(buf, lineterminator="\n", quoting=csv.QUOTE_NONNUMERIC)
        writer.writerow(first)
        for row in rows:
            writer.writerow(row)
            if buf.tell() > 64_000:
                yield buf.getvalue()
                buf.seek(0)
                buf.truncate()
        yield buf.getvalue()

    from evtrack.web.headers import content_disposition

    name = f"runs-{snap.experiment_id}.csv"
    resp = Response(generate(), mimetype="text/csv")
    resp.headers["Content-Disposition"] = content_disposition(name)
    return resp
