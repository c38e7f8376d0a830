"""evtrack's own API under ``/api/evtrack/`` (described by ``/api/evtrack/openapi.json``).

``PUT  /api/evtrack/segments/<experiment_id>/<name>``
    A segment built by a remote client's writer (see :mod:`evtrack.store.rest.store`), stored
    as-is under the same name with a create-only put: a retry of a segment that already
    landed answers 200 ``{"created": false}`` and stores nothing twice. The body is
    decoded and checked before anything is written: every event must belong to the
    named run and experiment and carry the writer id of the name; kinds are limited to
    what a run's own writer produces; keys and values follow MLflow's rules.
``POST /api/evtrack/ingest``
    Bulk ingest as JSON columns: ``{"run_id", "metrics": [{"key", "values", "steps",
    "timestamps"}], "params": {}, "tags": {}}``; unknown fields are refused here.
``POST /api/evtrack/sql``
    Read-only DuckDB SQL over the documented views. The connection sees only the
    store's events: external access (files, COPY, ATTACH, extensions, Python
    replacement scans) is disabled and the configuration locked before the query runs.
    Memory, concurrency and answer size are capped (:mod:`evtrack.server.sql_budget`).
``GET  /api/evtrack/metrics/series``
    One metric's history downsampled to ``max_points`` with min/max per step bucket,
    so spikes survive (the shape a chart needs).
"""

from __future__ import annotations

import threading
import zlib
from typing import Any

from flask import Flask, Response, current_app, request

from evtrack.errors import InvalidParameterValue, RunNotFound
from evtrack.server.incoming import backend, body_bytes, config, json_body
from evtrack.server.mlflow_api import ok
from evtrack.server.protocol import dumps
from evtrack.server.sql_budget import SqlBudget
from evtrack.tracking import validation

__all__ = ["register"]

SQL_MAX_ROWS = 100_000
SQL_TIMEOUT_S = 30.0

#: What a run's own writer produces (evtrack.tracking.client); experiment-level changes and run
#: creation go through the REST API, which claims names and ids.
_SEGMENT_KINDS = {"metric", "param", "tag", "run", "artifact", "input"}
_RUN_KEYS = {"status", "end_time", "run_name", "lifecycle_stage", "deleted_time"}


def _gunzip(data: bytes, limit: int) -> bytes:
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    out = d.decompress(data, limit + 1)
    if len(out) > limit or d.unconsumed_tail:
        raise InvalidParameterValue(f"Decompressed body exceeds {limit} bytes.")
    return out


def _check_segment(table: Any, experiment_id: str, seg: Any) -> None:
    import pyarrow.compute as pc

    def distinct(column: str) -> list[Any]:
        return pc.unique(table[column]).to_pylist()

    if distinct("experiment_id") != [experiment_id]:
        raise InvalidParameterValue("Every event of the segment must belong to its experiment.")
    if distinct("run_id") != [seg.scope]:
        raise InvalidParameterValue("Every event of the segment must belong to its run.")
    if distinct("writer") != [seg.writer]:
        raise InvalidParameterValue("Every event must carry the writer id of the segment's name.")
    kinds = set(distinct("kind"))
    if not kinds <= _SEGMENT_KINDS:
        raise InvalidParameterValue(
            f"Segments sent to a server may hold only {sorted(_SEGMENT_KINDS)} events, "
            f"not {sorted(kinds - _SEGMENT_KINDS)}."
        )
    # A writer numbers its events in order, so within a segment seq strictly increases.
    seqs = table["seq"].combine_chunks()
    n = len(seqs)
    if (
        seqs.null_count
        or (n and pc.min(seqs).as_py() < 0)
        or (n > 1 and not pc.all(pc.greater(seqs.slice(1), seqs.slice(0, n - 1))).as_py())
    ):
        raise InvalidParameterValue("Event sequence numbers must increase and be non-negative.")
    if table["time"].null_count:
        raise InvalidParameterValue("Every event needs a time.")
    for kind in kinds:
        part = table if len(kinds) == 1 else table.filter(pc.equal(table["kind"], kind))
        keys = pc.unique(part["key"]).to_pylist()
        if kind == "metric":
            for key in keys:
                validation.check_metric_key(key)
            if part["step"].null_count or part["timestamp"].null_count:
                raise InvalidParameterValue("Metric events need a step and a timestamp.")
            if len(part) and pc.min(part["timestamp"]).as_py() < 0:
                raise InvalidParameterValue("Metric timestamps must be non-negative.")
        elif kind in ("param", "tag"):
            for key, text in zip(part["key"].to_pylist(), part["text"].to_pylist(), strict=True):
                if kind == "param":
                    validation.check_param(key, text, truncate=False)
                elif text is not None:
                    validation.check_tag(key, text, truncate=False)
                else:
                    validation.check_tag_key(key)
        elif kind == "run":
            if not set(keys) <= _RUN_KEYS:
                raise InvalidParameterValue(
                    f"Run attributes a segment may set: {sorted(_RUN_KEYS)}."
                )
        elif kind == "artifact":
            for key in keys:
                validation.check_artifact_path(key, allow_root=False)


def put_segment(experiment_id: str, name: str) -> Response:
    from evtrack.store.log.segments import decode, parse_name

    seg = parse_name(name)
    if seg is None or seg.scope == "_":
        raise InvalidParameterValue(
            f"Invalid segment name {name!r}: expected <run_id>.<writer>-<sequence>.<jsonl|parquet>."
        )
    validation.check_experiment_id(experiment_id)
    limit = config("EVTRACK_MAX_INGEST_BYTES")
    data = body_bytes(limit)
    if request.headers.get("Content-Encoding", "").lower() == "gzip":
        data = _gunzip(data, limit)
    store = backend().store
    if store.layout.experiment_of_run(seg.scope) != experiment_id:
        raise RunNotFound(f"Run with id={seg.scope} not found in experiment {experiment_id}")
    try:
        table = decode(data, seg.ext, where=name)
        # Parquet strings are not checked for UTF-8 when read; one invalid string stored
        # would make every later read of the experiment fail inside DuckDB.
        table.validate(full=True)
    except Exception as exc:  # noqa: BLE001 - a damaged body is the client's error
        raise InvalidParameterValue(f"Cannot decode segment {name}: {exc}") from None
    _check_segment(table, experiment_id, seg)
    created = store.accept_segment(experiment_id, name, data)
    store.forget_run(seg.scope)
    return ok({"segment": name, "events": table.num_rows, "created": created})


_INGEST_FIELDS = {"run_id", "metrics", "params", "tags"}
_SERIES_FIELDS = {"key", "values", "steps", "timestamps"}


def ingest() -> Response:
    body = json_body()
    if not isinstance(body, dict):
        raise InvalidParameterValue("The body must be a JSON object.")
    unknown = set(body) - _INGEST_FIELDS
    if unknown:
        raise InvalidParameterValue(f"Unknown fields: {sorted(unknown)}.")
    run_id = body.get("run_id")
    if not isinstance(run_id, str) or not run_id:
        raise InvalidParameterValue("Missing value for required parameter 'run_id'.")
    series = body.get("metrics", [])
    params = body.get("params", {})
    tags = body.get("tags", {})
    if not isinstance(series, list) or not isinstance(params, dict) or not isinstance(tags, dict):
        raise InvalidParameterValue("metrics must be a list; params and tags JSON objects.")
    from evtrack.entities import Param, RunTag

    store = backend().store
    store.check_run_active(run_id)
    tables = []
    n = 0
    for i, s in enumerate(series):
        if (
            not isinstance(s, dict)
            or set(s) - _SERIES_FIELDS
            or "key" not in s
            or "values" not in s
        ):
            raise InvalidParameterValue(
                f"metrics[{i}] must be an object with key, values and optional steps, timestamps."
            )
        key = validation.check_metric_key(s["key"])
        vals, steps, stamps = validation.check_metric_arrays(
            _values(s["values"], f"metrics[{i}].values"), s.get("steps"), s.get("timestamps")
        )
        n += len(vals)
        tables.append((key, vals, steps, stamps))
    p = [Param(str(k), v if isinstance(v, str) else str(v)) for k, v in params.items()]
    t = [RunTag(str(k), v if isinstance(v, str) else str(v)) for k, v in tags.items()]
    if p or t:
        validation.check_batch_limits(0, len(p), len(t))
        store.log_batch(run_id, params=p, tags=t, synchronous=False)
    for key, vals, steps, stamps in tables:
        store.log_metric_series(run_id, key, vals, steps, stamps)
    store.flush()
    return ok({"metrics": n, "params": len(p), "tags": len(t)})


def _values(values: Any, name: str) -> Any:
    from evtrack.server.protocol import to_double

    if not isinstance(values, list):
        raise InvalidParameterValue(f"{name} must be a list of numbers.")
    if any(isinstance(v, str) for v in values):  # "NaN", "Infinity", "-Infinity"
        values = [to_double(v, name) if isinstance(v, str) else v for v in values]
    return values


def _private_connection() -> Any:
    """A DuckDB database of its own over the store's events (see LogStore.sql)."""
    return backend().store.private_connection()


def _locked_connection(con: Any, budget: SqlBudget | None = None) -> Any:
    for statement in (
        *(budget.settings() if budget is not None else ()),
        "SET python_enable_replacements = false",
        "SET autoload_known_extensions = false",
        "SET autoinstall_known_extensions = false",
        "SET enable_external_access = false",
        "SET lock_configuration = true",
    ):
        con.execute(statement)
    return con


def sql() -> Response:
    body = json_body()
    if not isinstance(body, dict) or set(body) - {"query", "params", "max_rows"}:
        raise InvalidParameterValue(
            'The body must be {"query": ..., "params"?: [...], "max_rows"?: n}.'
        )
    query = body.get("query")
    if not isinstance(query, str) or not query.strip():
        raise InvalidParameterValue("Missing value for required parameter 'query'.")
    params = body.get("params")
    if params is not None and not isinstance(params, (list, dict)):
        raise InvalidParameterValue("params must be a list or an object.")
    max_rows = body.get("max_rows", SQL_MAX_ROWS)
    if (
        not isinstance(max_rows, int)
        or isinstance(max_rows, bool)
        or not 0 < max_rows <= SQL_MAX_ROWS
    ):
        raise InvalidParameterValue(f"max_rows must be an integer in 1..{SQL_MAX_ROWS}.")
    import duckdb

    budget: SqlBudget = current_app.extensions["evtrack_sql"]
    if not budget.acquire():
        resp = Response(
            dumps(
                {
                    "error_code": "RESOURCE_EXHAUSTED",
                    "message": f"{budget.concurrency} SQL queries are already running on this "
                    "server; try again shortly.",
                }
            ),
            status=429,
            mimetype="application/json",
        )
        resp.headers["Retry-After"] = "5"
        return resp
    try:
        con = _locked_connection(_private_connection(), budget)
        timer = threading.Timer(SQL_TIMEOUT_S, con.interrupt)
        timer.start()
        try:
            cur = con.execute(query, params) if params else con.execute(query)
            if cur.description is None:
                return ok({"columns": [], "rows": [], "truncated": False})
            columns = [d[0] for d in cur.description]
            rows, truncated = _answer_rows(cur, max_rows, budget.max_answer_bytes)
        except duckdb.Error as exc:
            raise InvalidParameterValue(f"SQL failed: {exc}") from None
        finally:
            timer.cancel()
            con.close()
    finally:
        budget.release()
    body = (
        f'{{"columns":{dumps(columns)},"rows":[{",".join(rows)}],"truncated":{dumps(truncated)}}}'
    )
    return Response(body, mimetype="application/json")


def _answer_rows(cur: Any, max_rows: int, max_bytes: int) -> tuple[list[str], bool]:
    """The rows as JSON texts, fetched in chunks so that neither the row cap nor the byte
    cap is passed by more than one chunk in memory."""
    out: list[str] = []
    size = 0
    while len(out) <= max_rows:
        chunk = cur.fetchmany(min(1000, max_rows + 1 - len(out)))
        if not chunk:
            break
        for r in chunk:
            text = dumps([_jsonable(v) for v in r])
            size += len(text) + 1
            if size > max_bytes:
                raise InvalidParameterValue(
                    f"The answer is larger than {max_bytes} bytes, this server's limit "
                    "(--sql-max-answer-bytes). Select fewer columns or rows (LIMIT), or "
                    "aggregate in SQL."
                )
            out.append(text)
    truncated = len(out) > max_rows
    return out[:max_rows], truncated


def _jsonable(v: Any) -> Any:
    import datetime
    import decimal

    if isinstance(v, float):
        from evtrack.jsonfloat import float_to_json

        return float_to_json(v)
    if v is None or isinstance(v, (str, int, bool)):
        return v
    if isinstance(v, decimal.Decimal):
        return float(v)
    if isinstance(v, (datetime.date, datetime.datetime, datetime.time)):
        return v.isoformat()
    if isinstance(v, bytes):
        return v.hex()
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    return str(v)


def series() -> Response:
    args = request.args
    run_id, key = args.get("run_id"), args.get("key")
    if not run_id or not key:
        raise InvalidParameterValue("run_id and key are required.")
    try:
        max_points = int(args.get("max_points", "1000"))
    except ValueError:
        raise InvalidParameterValue("max_points must be an integer.") from None
    if not 2 <= max_points <= 100_000:
        raise InvalidParameterValue("max_points must be in 2..100000.")
    table = backend().client.get_metric_history_arrow(run_id, key)
    steps = table["step"].to_numpy()
    values = table["value"].to_numpy(zero_copy_only=False)
    stamps = table["timestamp"].to_numpy()
    n = len(steps)
    if n > max_points:
        idx = _minmax_indices(steps, values, max_points // 2)
        steps, values, stamps = steps[idx], values[idx], stamps[idx]
    out_values = [_jsonable(float(v)) for v in values]
    return ok(
        {
            "run_id": run_id,
            "key": key,
            "total": n,
            "method": "minmax",
            "step": [int(s) for s in steps],
            "timestamp": [int(t) for t in stamps],
            "value": out_values,
        }
    )


def _minmax_indices(steps: Any, values: Any, buckets: int) -> Any:
    """Indices of the min and max point (plus first and last) of each step bucket."""
    import numpy as np

    lo, hi = steps[0], steps[-1]
    width = max((hi - lo) / buckets, 1e-12)
    bucket = np.minimum(((steps - lo) / width).astype(np.int64), buckets - 1)
    finite = np.where(np.isnan(values), np.inf, values)
    order = np.lexsort((finite, bucket))
    b_sorted = bucket[order]
    starts = np.flatnonzero(np.r_[True, b_sorted[1:] != b_sorted[:-1]])
    ends = np.r_[starts[1:], len(order)] - 1
    finite_max = np.where(np.isnan(values), -np.inf, values)
    order_max = np.lexsort((finite_max, bucket))
    keep = np.unique(np.r_[order[starts], order_max[ends], 0, len(steps) - 1])
    return keep


def openapi() -> Response:
    from evtrack.server.openapi import document

    return Response(dumps(document()), mimetype="application/json")


def register(app: Flask) -> None:
    app.add_url_rule(
        "/api/evtrack/segments/<experiment_id>/<name>",
        "evtrack-segment",
        put_segment,
        methods=["PUT"],
    )
    app.add_url_rule("/api/evtrack/ingest", "evtrack-ingest", ingest, methods=["POST"])
    app.add_url_rule("/api/evtrack/sql", "evtrack-sql", sql, methods=["POST"])
    app.add_url_rule("/api/evtrack/metrics/series", "evtrack-series", series, methods=["GET"])
    app.add_url_rule("/api/evtrack/openapi.json", "evtrack-openapi", openapi, methods=["GET"])
