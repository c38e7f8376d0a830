"""Reading: events from the store into DuckDB, folded into the documented views.

The views (a public, versioned contract, see ``docs/sql.md``)::

    events          every event, raw (see evtrack.store.log.events)
    experiments     experiment_id, name, artifact_location, lifecycle_stage,
                    creation_time, last_update_time
    experiment_tags experiment_id, key, value
    runs            run_id, experiment_id, run_name, user_id, status, start_time,
                    end_time, lifecycle_stage, artifact_uri, deleted_time
    params          experiment_id, run_id, key, value
    tags            experiment_id, run_id, key, value        (current tags)
    metrics         experiment_id, run_id, key, value, step, timestamp  (full history)
    latest_metrics  experiment_id, run_id, key, value, step, timestamp
                    (per key: max step, then max timestamp, then max value with NaN
                    counted as 0, then the first logged - MLflow's rule, see fold.py)
    artifacts       experiment_id, run_id, path, size, sha256, time   (current files)
    inputs          experiment_id, run_id, name, digest, context, dataset (JSON)
    logged_models, logged_model_tags, logged_model_params, registered_models,
    registered_model_tags, registered_model_aliases, model_versions,
    model_version_tags      see evtrack.store.log.model_views

Which event decides each fact is :mod:`evtrack.store.log.fold`'s rule: of two events for
the same thing the later by ``(time, seq, writer)`` wins, except params, where the first
wins.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any

from evtrack.store.log.fold import EVENT_ORDER, METRIC_RANK

if TYPE_CHECKING:  # pragma: no cover
    import duckdb
    import pyarrow as pa

    from evtrack.store.log.layout import Store

__all__ = [
    "VIEW_NAMES",
    "VIEWS_VERSION",
    "connect",
    "load_events",
    "private_connection",
    "view_sql",
]

#: Version of the view schemas below; bumped on any incompatible change.
VIEWS_VERSION = 1

_ORDER = EVENT_ORDER

_VIEWS = {
    "events": "select * from ev",
    "experiments": f"""
        with a as (
            select experiment_id, key, arg_max_null(text, {_ORDER}) as text
            from ev where kind = 'experiment' group by all
        )
        select experiment_id,
               any_value(text) filter (where key = 'name') as name,
               any_value(text) filter (where key = 'artifact_location') as artifact_location,
               coalesce(any_value(text) filter (where key = 'lifecycle_stage'), 'active')
                   as lifecycle_stage,
               cast(any_value(text) filter (where key = 'creation_time') as bigint)
                   as creation_time,
               cast(any_value(text) filter (where key = 'last_update_time') as bigint)
                   as last_update_time
        from a group by experiment_id
        having any_value(text) filter (where key = 'name') is not null
    """,
    "experiment_tags": f"""
        select * from (
            select experiment_id, key, arg_max_null(text, {_ORDER}) as value
            from ev where kind = 'experiment_tag' group by all
        ) where value is not null
    """,
    "runs": f"""
        with a as (
            select run_id, key, arg_max_null(text, {_ORDER}) as text
            from ev where kind = 'run' group by all
        )
        select run_id,
               any_value(text) filter (where key = 'experiment_id') as experiment_id,
               any_value(text) filter (where key = 'run_name') as run_name,
               any_value(text) filter (where key = 'user_id') as user_id,
               any_value(text) filter (where key = 'status') as status,
               cast(any_value(text) filter (where key = 'start_time') as bigint) as start_time,
               cast(any_value(text) filter (where key = 'end_time') as bigint) as end_time,
               coalesce(any_value(text) filter (where key = 'lifecycle_stage'), 'active')
                   as lifecycle_stage,
               any_value(text) filter (where key = 'artifact_uri') as artifact_uri,
               cast(any_value(text) filter (where key = 'deleted_time') as bigint)
                   as deleted_time
        from a group by run_id
        having any_value(text) filter (where key = 'experiment_id') is not null
    """,
    "params": f"""
        select experiment_id, run_id, key, arg_min_null(text, {_ORDER}) as value
        from ev where kind = 'param' group by all
    """,
    "tags": f"""
        select * from (
            select experiment_id, run_id, key, arg_max_null(text, {_ORDER}) as value
            from ev where kind = 'tag' group by all
        ) where value is not null
    """,
    "metrics": """
        select experiment_id, run_id, key, value, step, timestamp
        from ev where kind = 'metric'
    """,
    "latest_metrics": f"""
        select experiment_id, run_id, key, m.value as value, m.step as step,
               m.timestamp as timestamp
        from (
            select experiment_id, run_id, key,
                   arg_max({{'value': value, 'step': step, 'timestamp': timestamp}},
                           {METRIC_RANK}) as m
            from ev where kind = 'metric' group by all
        )
    """,
    "artifacts": f"""
        select experiment_id, run_id, path, size, sha256, time from (
            select experiment_id, run_id, key as path,
                   arg_max_null(value, {_ORDER}) as written,
                   cast(json_extract(arg_max_null(text, {_ORDER}), '$.size') as bigint) as size,
                   json_extract_string(arg_max_null(text, {_ORDER}), '$.sha256') as sha256,
                   max(time) as time
            from ev where kind = 'artifact' group by all
        ) where written is not null
    """,
    "inputs": """
        select experiment_id, run_id,
               json_extract_string(text, '$.dataset.name') as name, key as digest,
               json_extract_string(text, '$.context') as context, text as dataset
        from ev where kind = 'input'
    """,
}

from evtrack.store.log.model_views import MODEL_VIEWS  # noqa: E402 - logged models, registry

_VIEWS.update(MODEL_VIEWS)

VIEW_NAMES = tuple(_VIEWS)


def view_sql(name: str) -> str:
    """The ``select`` that defines a view over the events table ``ev``."""
    return _VIEWS[name]


def load_events(
    store: Store,
    experiment_ids: list[str] | None = None,
    run_id: str | None = None,
    history: bool = True,
) -> pa.Table:
    """Events of some experiments (default: all) or of one run, as one Arrow table.

    Each experiment is read as its newest compaction manifest plus every segment that
    manifest does not cover (see :mod:`evtrack.store.log.snapshot`). With ``history=False`` the
    reduced compacted files are read instead of the full ones: every view then gives
    the same answer except ``metrics`` and ``events``, which hold only the winning
    events of compacted data (the search / ``get_run`` path).

    A file collected away between listing and reading makes the read start again from
    a fresh listing; a damaged segment is logged, counted and skipped.
    """
    from evtrack.store.log.snapshot import read_events

    return read_events(store, experiment_ids, run_id, history)


_BASE: duckdb.DuckDBPyConnection | None = None
_BASE_PID = 0
_BASE_LOCK = threading.Lock()
# connections made by a parent process, see connect()
_INHERITED: list[duckdb.DuckDBPyConnection] = []


def connect(events: pa.Table) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with ``events`` registered as ``ev`` and every view defined.

    Opening a DuckDB connection and defining the views costs 30-50 ms, more than most
    queries, so the views live in one in-memory database per process, made once; each
    call gets its own cursor, where ``ev`` is registered privately, so concurrent
    readers never see each other's events. A forked child makes its own database.
    """
    import duckdb

    from evtrack.store.log.events import empty_table

    global _BASE, _BASE_PID
    with _BASE_LOCK:
        if _BASE is None or _BASE_PID != os.getpid():
            if _BASE is not None:
                # A forked child must never destroy its parent's connection: DuckDB then
                # hangs or crashes (its threads are not in the child). Keep it unused.
                _INHERITED.append(_BASE)
            base = duckdb.connect()
            base.register("ev", empty_table(events.schema))
            for name, sql in _VIEWS.items():
                base.execute(f"create view {name} as {sql}")
            base.unregister("ev")
            _BASE, _BASE_PID = base, os.getpid()
        con = _BASE.cursor()
    con.register("ev", events)
    return con


def private_connection(events: pa.Table) -> duckdb.DuckDBPyConnection:
    """A DuckDB database of its own with ``events`` as ``ev`` and every view defined.

    For user SQL: it may create, replace or drop anything (``drop view runs``) without
    touching the shared catalog of :func:`connect` that every other read goes through.
    Costs the 30-50 ms of defining the views, which :func:`connect` saves.
    """
    import duckdb

    con = duckdb.connect()
    con.register("ev", events)
    for name, sql in _VIEWS.items():
        con.execute(f"create view {name} as {sql}")
    return con


def rows(
    con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None
) -> list[dict[str, Any]]:
    cur = con.execute(sql, params or [])
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]
