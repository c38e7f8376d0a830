"""The runs table as SQL: filter, fold nested runs, sort by any column, page.

One page of the table is one query over a snapshot's tables, so the cost depends on
the page size, not on the number of runs (no ``Run`` objects are built):

* the filter is MLflow's grammar, compiled by :mod:`evtrack.search` into a
  parameterised subquery, so the box accepts exactly what ``search_runs`` accepts;
* nested runs are folded: a page lists the runs whose parent is not among the
  matches, each with the number of its matching children; a parent's children are
  fetched as a page of their own (``parent=<run id>``) when it is unfolded;
* any column sorts: attributes; params and tags numerically when they parse as
  numbers, then as text; metrics by latest value; missing values always last.

Every value from the request reaches the SQL as a ``?`` parameter; the only text
spliced in comes from the fixed tables below.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from evtrack.errors import InvalidParameterValue

if TYPE_CHECKING:  # pragma: no cover
    from evtrack.web.snapshots import ExperimentSnapshot

__all__ = [
    "ATTRIBUTES",
    "Column",
    "TableQuery",
    "available_columns",
    "csv_rows",
    "default_columns",
    "runs_page",
]

#: Sortable attribute columns: id -> SQL over ``b`` (a row of the runs table).
ATTRIBUTES = {
    "name": "b.run_name",
    "status": "b.status",
    "user": "b.user_id",
    "start_time": "b.start_time",
    "end_time": "b.end_time",
    "duration": "(coalesce(b.end_time, ?) - b.start_time)",
}
_KINDS = {"params": "params", "metrics": "latest_metrics", "tags": "tags"}
_KIND_ALIASES = {"param": "params", "metric": "metrics", "tag": "tags"}
_VIEWS = {"active": 1, "deleted": 2, "all": 3}
MAX_PER_PAGE = 1000


@dataclass(frozen=True)
class Column:
    """A user-chosen column: a param, a metric (latest value) or a tag."""

    kind: str  # params | metrics | tags
    key: str

    @property
    def id(self) -> str:
        return f"{self.kind}.{self.key}"

    @classmethod
    def parse(cls, text: str) -> Column:
        kind, _, key = text.partition(".")
        kind = _KIND_ALIASES.get(kind, kind)
        if kind not in _KINDS or not key:
            raise InvalidParameterValue(
                f"Invalid column {text!r}: use params.<key>, metrics.<key> or tags.<key>."
            )
        return cls(kind, key)


@dataclass
class TableQuery:
    """What the table shows; every field round-trips through the URL."""

    filter: str = ""
    view: str = "active"
    sort: str = "-start_time"  # a column id; "-" in front sorts descending
    columns: list[Column] = field(default_factory=list)
    page: int = 1
    per_page: int = 100
    parent: str | None = None

    def __post_init__(self) -> None:
        if self.view not in _VIEWS:
            raise InvalidParameterValue(f"Invalid view {self.view!r}: use active, deleted or all.")
        if not 1 <= self.per_page <= MAX_PER_PAGE:
            raise InvalidParameterValue(f"per_page must be between 1 and {MAX_PER_PAGE}.")
        if self.page < 1:
            raise InvalidParameterValue("page must be 1 or more.")
        _ = self.sort_column  # validates

    @property
    def descending(self) -> bool:
        return self.sort.startswith("-")

    @property
    def sort_column(self) -> str:
        name = self.sort.lstrip("-+") or "start_time"
        if name not in ATTRIBUTES:
            Column.parse(name)
        return name


def _filter_sql(experiment_id: str, q: TableQuery) -> tuple[str, list[Any]]:
    """``SELECT run_id ...`` of every run the filter matches (MLflow semantics)."""
    from evtrack.search import compiler

    built = compiler.build_search_runs(
        [experiment_id], q.filter or None, _VIEWS[q.view], None, None, None
    )
    return built.sql, list(built.params)


def _sort_sql(q: TableQuery, now_ms: int) -> tuple[str, list[Any], str, list[Any]]:
    """(join text, join params, order text, order params)."""
    direction = "DESC" if q.descending else "ASC"
    name = q.sort_column
    if name in ATTRIBUTES:
        expr = ATTRIBUTES[name]
        params = [now_ms] * (2 * expr.count("?"))  # the expression appears twice
        return "", [], f"({expr}) IS NULL, {expr} {direction}", params
    col = Column.parse(name)
    join = f"LEFT JOIN {_KINDS[col.kind]} s ON s.run_id = b.run_id AND s.key = ?"
    if col.kind == "metrics":
        order = f"s.value IS NULL, isnan(s.value), s.value {direction}"
    else:
        order = (
            f"s.value IS NULL, try_cast(s.value AS DOUBLE) {direction} NULLS LAST, "
            f"s.value {direction}"
        )
    return join, [col.key], order, []


def _base(experiment_id: str, q: TableQuery) -> tuple[str, list[Any]]:
    """``WITH base`` (the matching runs) ``, kids`` (matching children per parent)."""
    if q.filter:
        fsql, fparams = _filter_sql(experiment_id, q)
        match = f"r.run_id IN (SELECT run_id FROM ({fsql}))"
    else:  # no filter: the view type alone, without the compiler's full sort
        stages = {"active": ["active"], "deleted": ["deleted"], "all": ["active", "deleted"]}
        fparams = [experiment_id, *stages[q.view]]
        match = (
            f"r.experiment_id = ? AND r.lifecycle_stage IN ({', '.join('?' * (len(fparams) - 1))})"
        )
    text = (
        f"WITH base AS MATERIALIZED (SELECT r.* FROM runs r WHERE {match}),\n"
        "kids AS (SELECT parent_id, count(*) AS n FROM base "
        "WHERE parent_id IS NOT NULL GROUP BY parent_id)\n"
    )
    return text, fparams


def _values(
    snap: ExperimentSnapshot, run_ids: list[str], columns: list[Column]
) -> dict[str, dict[str, Any]]:
    """{run_id: {column id: value}} of some runs: one query per kind of column.

    Cheaper than joining each column to the page (a join per column costs a scan).
    """
    out: dict[str, dict[str, Any]] = {rid: {} for rid in run_ids}
    if not run_ids:
        return out
    for kind, table in _KINDS.items():
        keys = [c.key for c in columns if c.kind == kind]
        if not keys:
            continue
        rows = snap.query(
            f"SELECT run_id, key, value FROM {table} "
            "WHERE run_id IN (SELECT unnest(?::VARCHAR[])) "
            "AND key IN (SELECT unnest(?::VARCHAR[]))",
            [run_ids, keys],
        )
        for r in rows:
            out[r["run_id"]][f"{kind}.{r['key']}"] = r["value"]
    return out


def _select(
    snap: ExperimentSnapshot,
    q: TableQuery,
    now_ms: int,
    where: str,
    where_params: list[Any],
    limit: tuple[int, int] | None,
) -> tuple[str, list[Any]]:
    """The table's query: runs in order, with the chosen columns joined to them.

    With ``limit`` (count, offset) the page is cut first and only its rows get the
    columns joined, so a page costs the same at 50,000 runs as at 500.
    """
    head, params = _base(snap.experiment_id, q)
    join, join_params, order, order_params = _sort_sql(q, now_ms)
    columns = q.columns
    col_joins = "".join(
        f"LEFT JOIN {_KINDS[c.kind]} c{i} ON c{i}.run_id = p.run_id AND c{i}.key = ?\n"
        for i, c in enumerate(columns)
    )
    col_values = "".join(f", c{i}.value AS v{i}" for i in range(len(columns)))
    sql = (
        f"{head}, page AS (\n"
        "SELECT b.run_id, b.run_name, b.status, b.user_id, b.start_time, b.end_time, "
        "b.lifecycle_stage, b.parent_id, coalesce(k.n, 0) AS children,\n"
        f"row_number() OVER (ORDER BY {order}, b.start_time DESC, b.run_id) AS pos,\n"
        "count(*) OVER () AS total\n"
        f"FROM base b LEFT JOIN kids k ON k.parent_id = b.run_id {join}\n"
        f"WHERE {where}\n"
        f"ORDER BY pos {'LIMIT ? OFFSET ?' if limit else ''})\n"
        f"SELECT p.*{col_values} FROM page p\n{col_joins}ORDER BY p.pos"
    )
    # parameters in the order their "?" appear in the text
    values = [*params, *order_params, *join_params, *where_params, *(limit or ())]
    return sql, [*values, *(c.key for c in columns)]


def _finish(row: dict[str, Any], columns: list[Column], now_ms: int) -> dict[str, Any]:
    row.pop("pos")
    row.pop("total")
    row["duration_ms"] = _duration(row, now_ms)
    row["values"] = {
        c.id: value for i, c in enumerate(columns) if (value := row.pop(f"v{i}")) is not None
    }
    return row


def runs_page(snap: ExperimentSnapshot, q: TableQuery, now_ms: int | None = None) -> dict[str, Any]:
    """One page of the table: ``{"total", "page", "pages", "rows"}``.

    ``total`` counts the top-level rows (or the children of ``q.parent``). Each row has
    the run's attributes, ``children`` (matching child runs) and ``values`` of the
    chosen columns. Raises :class:`~evtrack.errors.InvalidFilter` for a bad filter.
    """
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    if q.parent is None:
        where = "(b.parent_id IS NULL OR b.parent_id NOT IN (SELECT run_id FROM base))"
        where_params: list[Any] = []
    else:
        where, where_params = "b.parent_id = ?", [q.parent]
    limit = (q.per_page, (q.page - 1) * q.per_page)
    bare = TableQuery(q.filter, q.view, q.sort, [], q.page, q.per_page, q.parent)
    rows = snap.query(*_select(snap, bare, now_ms, where, where_params, limit))
    values = _values(snap, [r["run_id"] for r in rows], q.columns)
    if rows:
        count = rows[0]["total"]
    else:  # past the last page: the window count came back with no row
        head, params = _base(snap.experiment_id, q)
        sql = f"{head}SELECT count(*) AS n FROM base b WHERE {where}"
        count = snap.query(sql, [*params, *where_params])[0]["n"]
    rows = [_finish(r, [], now_ms) for r in rows]
    for r in rows:
        r["values"] = values[r["run_id"]]
    pages = max(1, -(-count // q.per_page))
    return {"total": count, "page": q.page, "pages": pages, "rows": rows}


def _duration(row: dict[str, Any], now_ms: int) -> int | None:
    start = row.get("start_time")
    if start is None:
        return None
    end = row.get("end_time")
    if end is None:
        return now_ms - start if row.get("status") == "RUNNING" else None
    return end - start


def available_columns(snap: ExperimentSnapshot) -> dict[str, list[str]]:
    """Every param, metric and tag key of the experiment's runs, most common first."""
    return snap.memo("available_columns", lambda: _available_columns(snap))


def _available_columns(snap: ExperimentSnapshot) -> dict[str, list[str]]:
    out = {}
    for kind, table in _KINDS.items():
        rows = snap.query(
            f"SELECT key, count(*) AS n FROM {table} "
            "WHERE run_id IN (SELECT run_id FROM runs) GROUP BY key ORDER BY n DESC, key"
        )
        out[kind] = [r["key"] for r in rows]
    return out


def default_columns(available: dict[str, list[str]], per_kind: int = 5) -> list[Column]:
    """Without a choice in the URL: the most common metrics, then params."""
    cols = [Column("metrics", k) for k in available["metrics"][:per_kind]]
    cols += [Column("params", k) for k in available["params"][:per_kind]]
    return cols


CSV_ATTRIBUTES = (
    "run_id",
    "run_name",
    "status",
    "user_id",
    "start_time",
    "end_time",
    "duration_s",
    "parent_run_id",
)


_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _csv_cell(value: Any) -> Any:
    """Neutralise text a spreadsheet would run as a formula (OWASP "CSV injection").

    Text that starts with = + - @ tab or CR, or holds a CR (which some importers take
    as a line break, starting a new cell), gets a leading ``'``; the export quotes every
    text cell. Numbers stay numbers: floats and ints are never touched, and text that
    is just a number (a param "-0.5") is left as it is, since it cannot be a formula.
    """
    if isinstance(value, str) and (value[:1] in _FORMULA_STARTS or "\r" in value):
        try:
            float(value)
            return value
        except ValueError:
            return "'" + value
    return value


def csv_rows(snap: ExperimentSnapshot, q: TableQuery) -> Iterator[list[Any]]:
    """The header and every matching run (nested ones too), in the table's order."""
    import datetime as dt

    now_ms = int(time.time() * 1000)
    sql, params = _select(snap, q, now_ms, "TRUE", [], None)
    cur = snap.cursor()
    try:
        result = cur.execute(sql, params)  # a bad filter raises here, before the header
        names = [d[0] for d in result.description]
        yield [_csv_cell(h) for h in (*CSV_ATTRIBUTES, *(c.id for c in q.columns))]

        def iso(ms: int | None) -> str:
            if ms is None:
                return ""
            return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).isoformat(
                timespec="milliseconds"
            )

        while chunk := result.fetchmany(2000):
            for values in chunk:
                r = _finish(dict(zip(names, values, strict=True)), q.columns, now_ms)
                dur = r["duration_ms"]
                row = [
                    r["run_id"],
                    r["run_name"],
                    r["status"],
                    r["user_id"],
                    iso(r["start_time"]),
                    iso(r["end_time"]),
                    "" if dur is None else dur / 1000,
                    r["parent_id"] or "",
                ]
                row += [r["values"].get(c.id, "") for c in q.columns]
                yield [_csv_cell(v) for v in row]
    finally:
        cur.close()
