"""MLflow's tracking REST API (``/api/2.0/mlflow/…`` and ``/ajax-api/2.0/mlflow/…``).

Routes, field names, defaults, limits and error codes are those of ``mlflow server``
(``mlflow/server/handlers.py`` and ``service.proto``). Every write is acknowledged only
once durable (see :mod:`evtrack.server.commit`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from flask import Flask, Response

from evtrack.entities import Dataset, DatasetInput, InputTag, Metric, Param, RunTag, ViewType
from evtrack.errors import ExperimentNotFound, InvalidParameterValue, ResourceDoesNotExist
from evtrack.server.incoming import backend, message
from evtrack.server.protocol import (
    DATASET_INPUT,
    INT64_MAX,
    KEY_VALUES,
    METRIC,
    RUN_STATUSES,
    VIEW_TYPES,
    dumps,
    experiment_json,
    file_info_json,
    metric_json,
    missing,
    run_info_json,
    run_json,
    to_double,
    to_int64,
)
from evtrack.tracking import validation

__all__ = ["ROUTES", "register"]

SEARCH_MAX_RESULTS = 50_000
MAX_RUNS_GET_METRIC_HISTORY_BULK = 100
MAX_RESULTS_PER_RUN = 2500

ROUTES: list[tuple[str, list[str], Callable[[], Response]]] = []


def route(path: str, *methods: str) -> Callable:
    def decorate(fn: Callable) -> Callable:
        ROUTES.append((path, list(methods), fn))
        return fn

    return decorate


def ok(body: dict[str, Any] | None = None) -> Response:
    return Response(dumps(body or {}), mimetype="application/json")


def _view_type(name: str | None) -> int:
    return VIEW_TYPES[name] if name else ViewType.ACTIVE_ONLY


# -- experiments -----------------------------------------------------------------------


def _experiment(exp) -> dict[str, Any]:
    return experiment_json(exp, backend().public_uri(exp.artifact_location))


@route("/mlflow/experiments/create", "POST")
def create_experiment() -> Response:
    m = message({"name": "string", "artifact_location": "string", "tags": KEY_VALUES}, ("name",))
    b = backend()
    location = m.get("artifact_location") or None
    if location:
        from evtrack.server.mlflow_compat import absolute_artifact_location

        location = b.stored_uri(absolute_artifact_location(location))
    tags = {t["key"]: t.get("value", "") for t in m.get("tags", []) if "key" in t}
    experiment_id = b.client.create_experiment(m["name"], location, tags)
    return ok({"experiment_id": experiment_id})


@route("/mlflow/experiments/get", "GET")
def get_experiment() -> Response:
    m = message({"experiment_id": "string"}, ("experiment_id",))
    return ok({"experiment": _experiment(backend().client.get_experiment(m["experiment_id"]))})


@route("/mlflow/experiments/get-by-name", "GET")
def get_experiment_by_name() -> Response:
    m = message({"experiment_name": "string"}, ("experiment_name",))
    exp = backend().client.get_experiment_by_name(m["experiment_name"])
    if exp is None:
        raise ResourceDoesNotExist(f"Could not find experiment with name '{m['experiment_name']}'")
    return ok({"experiment": _experiment(exp)})


@route("/mlflow/experiments/search", "GET", "POST")
def search_experiments() -> Response:
    m = message(
        {
            "max_results": "int64",
            "page_token": "string",
            "filter": "string",
            "order_by": ("list", "string"),
            "view_type": ("enum", VIEW_TYPES),
        }
    )
    page = backend().client.search_experiments(
        view_type=_view_type(m.get("view_type")),
        max_results=m.get("max_results") or 1000,
        filter_string=m.get("filter") or None,
        order_by=m.get("order_by") or None,
        page_token=m.get("page_token") or None,
    )
    body: dict[str, Any] = {"experiments": [_experiment(e) for e in page]}
    if page.token:
        body["next_page_token"] = page.token
    return ok(body)


def _experiment_id_only() -> str:
    return message({"experiment_id": "string"}, ("experiment_id",))["experiment_id"]


@route("/mlflow/experiments/delete", "POST")
def delete_experiment() -> Response:
    backend().client.delete_experiment(_experiment_id_only())
    return ok()


@route("/mlflow/experiments/restore", "POST")
def restore_experiment() -> Response:
    backend().client.restore_experiment(_experiment_id_only())
    return ok()


@route("/mlflow/experiments/update", "POST")
def update_experiment() -> Response:
    m = message({"experiment_id": "string", "new_name": "string"}, ("experiment_id", "new_name"))
    backend().client.rename_experiment(m["experiment_id"], m["new_name"])
    return ok()


@route("/mlflow/experiments/set-experiment-tag", "POST")
def set_experiment_tag() -> Response:
    m = message(
        {"experiment_id": "string", "key": "string", "value": "string"}, ("experiment_id", "key")
    )
    backend().client.set_experiment_tag(m["experiment_id"], m["key"], m.get("value", ""))
    return ok()


@route("/mlflow/experiments/delete-experiment-tag", "POST")
def delete_experiment_tag() -> Response:
    m = message({"experiment_id": "string", "key": "string"}, ("experiment_id", "key"))
    backend().client.delete_experiment_tag(m["experiment_id"], m["key"])
    return ok()


# -- runs ------------------------------------------------------------------------------

_RUN_ID = {"run_id": "string", "run_uuid": "string"}


def _run_body(run, with_inputs: bool = False) -> dict[str, Any]:
    b = backend()
    inputs = _inputs(run.info.experiment_id, run.info.run_id) if with_inputs else None
    return run_json(run, b.public_uri(run.info.artifact_uri), inputs)


def _inputs(experiment_id: str, run_id: str) -> list[dict[str, Any]]:
    out = []
    for item in backend().store.get_run_inputs(run_id):
        ds = item.dataset
        fields = {
            "name": ds.name,
            "digest": ds.digest,
            "source_type": ds.source_type,
            "source": ds.source,
            "schema": ds.schema,
            "profile": ds.profile,
        }
        body: dict[str, Any] = {"dataset": {k: v for k, v in fields.items() if v is not None}}
        if item.tags:
            body["tags"] = [{"key": t.key, "value": t.value} for t in item.tags]
        out.append(body)
    return out


@route("/mlflow/runs/create", "POST")
def create_run() -> Response:
    m = message(
        {
            "experiment_id": "string",
            "user_id": "string",
            "run_name": "string",
            "start_time": "int64",
            "tags": KEY_VALUES,
        }
    )
    tags = {t["key"]: t.get("value", "") for t in m.get("tags", []) if "key" in t}
    user = m.get("user_id") or tags.get("mlflow.user") or "unknown"
    run = backend().client.create_run(
        m.get("experiment_id") or "0",
        start_time=m.get("start_time"),
        tags=tags,
        run_name=m.get("run_name") or None,
        user_id=user,
    )
    backend().store.flush()
    return ok({"run": _run_body(run)})


@route("/mlflow/runs/update", "POST")
def update_run() -> Response:
    m = message(
        {
            **_RUN_ID,
            "status": ("enum", RUN_STATUSES),
            "end_time": "int64",
            "run_name": "string",
        },
        ("run_id",),
    )
    info = backend().store.update_run_info(
        m["run_id"], m.get("status"), m.get("end_time"), m.get("run_name") or None
    )
    return ok({"run_info": run_info_json(info, backend().public_uri(info.artifact_uri))})


@route("/mlflow/runs/delete", "POST")
def delete_run() -> Response:
    m = message({"run_id": "string"}, ("run_id",))
    backend().client.delete_run(m["run_id"])
    return ok()


@route("/mlflow/runs/restore", "POST")
def restore_run() -> Response:
    m = message({"run_id": "string"}, ("run_id",))
    backend().client.restore_run(m["run_id"])
    return ok()


@route("/mlflow/runs/get", "GET")
def get_run() -> Response:
    m = message(_RUN_ID, ("run_id",))
    run = backend().client.get_run(m["run_id"])
    return ok({"run": _run_body(run, with_inputs=True)})


@route("/mlflow/runs/search", "POST", "GET")
def search_runs() -> Response:
    m = message(
        {
            "experiment_ids": ("list", "string"),
            "filter": "string",
            "run_view_type": ("enum", VIEW_TYPES),
            "max_results": "int32",
            "order_by": ("list", "string"),
            "page_token": "string",
        }
    )
    max_results = m.get("max_results", 1000)
    if max_results > SEARCH_MAX_RESULTS:
        raise InvalidParameterValue(
            f"Invalid value {max_results} for parameter 'max_results' supplied. "
            "See the API docs for more information about request parameters."
        )
    page = backend().client.search_runs(
        m.get("experiment_ids", []),
        m.get("filter", ""),
        _view_type(m.get("run_view_type")),
        max_results,
        m.get("order_by") or None,
        m.get("page_token") or None,
    )
    body: dict[str, Any] = {}
    if len(page):
        body["runs"] = [_run_body(r) for r in page]
    if page.token:
        body["next_page_token"] = page.token
    return ok(body)


# -- logging: the hot path -----------------------------------------------------------


def _points(metrics: list[dict[str, Any]], prefix: str) -> list[Any]:
    """Parse metric dicts (protobuf JSON types) into a flat [key, value, step, ts, ...] list.

    Only the wire format is checked here; MLflow's rules (key names, ranges) are the
    store's, applied once by ``log_batch`` whoever calls it.
    """
    flat: list[Any] = []
    for i, m in enumerate(metrics):
        key = m.get("key")
        if not key:
            raise missing(f"{prefix}[{i}].key")
        if "value" not in m or m["value"] is None:
            raise missing(f"{prefix}[{i}].value")
        ts = m.get("timestamp")
        if ts is None or ts == "":
            raise missing(f"{prefix}[{i}].timestamp")
        if not isinstance(key, str):
            raise InvalidParameterValue(
                f"Invalid value {json.dumps(key)} for parameter '{prefix}[{i}].key' supplied."
            )
        value = m["value"]
        step = m.get("step", 0)
        flat.extend(
            (
                key,
                value if type(value) is float else to_double(value, f"{prefix}[{i}].value"),
                step if type(step) is int and 0 <= step <= INT64_MAX else _step(step, i, prefix),
                ts if type(ts) is int and 0 <= ts <= INT64_MAX else _stamp(ts, i, prefix),
            )
        )
    return flat


def _step(step: Any, i: int, prefix: str) -> int:
    return to_int64(step, f"{prefix}[{i}].step")


def _stamp(ts: Any, i: int, prefix: str) -> int:
    return to_int64(ts, f"{prefix}[{i}].timestamp")


def _check_list(body: dict[str, Any], name: str) -> list[Any]:
    value = body.get(name)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise InvalidParameterValue(
            f"Invalid value {json.dumps(value, default=str)[:200]} for parameter '{name}' "
            "supplied. See the API docs for more information about request parameters."
        )
    return value


def _pairs(items: list[dict[str, Any]], name: str, cls: type) -> list[Any]:
    out = []
    for i, item in enumerate(items):
        key = item.get("key")
        if not key:
            raise missing(f"{name}[{i}].key")
        value = item.get("value", "")
        if not isinstance(key, str) or not isinstance(value, str):
            raise InvalidParameterValue(
                f"Invalid value for parameter '{name}[{i}]' supplied: key and value must be "
                "strings. See the API docs for more information about request parameters."
            )
        out.append(cls(key, value))
    return out


def _run_id_of(body: dict[str, Any]) -> str:
    if not isinstance(body, dict):
        raise InvalidParameterValue("Invalid request body: expected a JSON object.")
    run_id = body.get("run_id") or body.get("run_uuid")
    if not run_id:
        raise missing("run_id")
    if not isinstance(run_id, str):
        raise InvalidParameterValue(
            f"Invalid value {json.dumps(run_id, default=str)} for parameter 'run_id' supplied."
        )
    return run_id


def _linked(metrics: list[dict[str, Any]]) -> dict[int, tuple[str, Any, Any]]:
    """Which points name a logged model (MLflow 3's ``model_id``), by index."""
    return {
        i: (m["model_id"], m.get("dataset_name") or None, m.get("dataset_digest") or None)
        for i, m in enumerate(metrics)
        if m.get("model_id")
    }


def _log(run_id: str, points: list[Any], params=(), tags=(), linked=None) -> None:
    """Buffer a batch in this worker's writer and return once it is durable. Points
    ``linked`` to a logged model are logged to the run and to their model by the model
    store instead."""
    metrics = [
        Metric(points[i], points[i + 1], points[i + 3], points[i + 2])
        for i in range(0, len(points), 4)
    ]
    store = backend().store
    if linked:
        to_models = [
            Metric(m.key, m.value, m.timestamp, m.step, run_id, *linked[i])
            for i, m in enumerate(metrics)
            if i in linked
        ]
        backend().client._models.log_model_metrics(run_id, to_models)
        metrics = [m for i, m in enumerate(metrics) if i not in linked]
    store.log_batch(run_id, metrics, params, tags, synchronous=False)
    store.flush()


@route("/mlflow/runs/log-batch", "POST")
def log_batch() -> Response:
    from evtrack.server.incoming import json_body

    # MLflow documents a 1,000,000-byte limit for this request but checks len() of the
    # parsed dict (its number of fields), so the limit never fires there; evtrack checks
    # the body's bytes, with MLflow's message.
    body = json_body(validation.check_batch_request_size)
    run_id = _run_id_of(body)
    metrics = _check_list(body, "metrics")
    params = _pairs(_check_list(body, "params"), "params", Param)
    tags = _pairs(_check_list(body, "tags"), "tags", RunTag)
    validation.check_batch_limits(len(metrics), len(params), len(tags))
    points = _points(metrics, "metrics")
    _log(run_id, points, params, tags, _linked(metrics))
    return ok()


@route("/mlflow/runs/log-metric", "POST")
def log_metric() -> Response:
    m = message(
        {**_RUN_ID, **{k: v for k, v in METRIC.items() if k != "run_id"}},
        ("run_id", "key", "value", "timestamp"),
    )
    points = _points([m], "metric")
    _log(m["run_id"], points, linked=_linked([m]))
    return ok()


@route("/mlflow/runs/log-parameter", "POST")
def log_param() -> Response:
    m = message({**_RUN_ID, "key": "string", "value": "string"}, ("run_id", "key"))
    _log(m["run_id"], [], params=[Param(m["key"], m.get("value", ""))])
    return ok()


@route("/mlflow/runs/set-tag", "POST")
def set_tag() -> Response:
    m = message({**_RUN_ID, "key": "string", "value": "string"}, ("run_id", "key"))
    _log(m["run_id"], [], tags=[RunTag(m["key"], m.get("value", ""))])
    return ok()


@route("/mlflow/runs/delete-tag", "POST")
def delete_tag() -> Response:
    m = message({"run_id": "string", "key": "string"}, ("run_id", "key"))
    backend().client.delete_tag(m["run_id"], m["key"])
    return ok()


@route("/mlflow/runs/log-inputs", "POST")
def log_inputs() -> Response:
    m = message(
        {
            "run_id": "string",
            "datasets": ("list", ("message", DATASET_INPUT)),
            "models": ("list", ("message", {})),
        },
        ("run_id",),
    )
    datasets = []
    for i, item in enumerate(m.get("datasets", [])):
        ds = item.get("dataset")
        if not ds or not ds.get("name") or not ds.get("digest"):
            raise missing(f"datasets[{i}].dataset")
        datasets.append(
            DatasetInput(
                Dataset(
                    name=ds["name"],
                    digest=ds["digest"],
                    source_type=ds.get("source_type", ""),
                    source=ds.get("source", ""),
                    schema=ds.get("schema"),
                    profile=ds.get("profile"),
                ),
                [InputTag(t["key"], t.get("value", "")) for t in item.get("tags", [])],
            )
        )
    backend().store.log_inputs(m["run_id"], datasets)
    return ok()


# -- metric history ------------------------------------------------------------------


@route("/mlflow/metrics/get-history", "GET")
def get_metric_history() -> Response:
    m = message(
        {**_RUN_ID, "metric_key": "string", "page_token": "string", "max_results": "int32"},
        ("run_id", "metric_key"),
    )
    table = backend().client.get_metric_history_arrow(m["run_id"], m["metric_key"])
    max_results = m.get("max_results")
    token = None
    if max_results is not None or m.get("page_token"):
        from evtrack.search import decode_page_token, next_page_token

        if max_results is not None and max_results <= 0:
            raise InvalidParameterValue(
                f"Invalid value {max_results} for parameter 'max_results' supplied. "
                "It must be a positive integer."
            )
        # MLflow pages in (timestamp, step, value) order.
        table = table.sort_by(
            [("timestamp", "ascending"), ("step", "ascending"), ("value", "ascending")]
        )
        offset = decode_page_token(m.get("page_token"))
        limit = max_results if max_results is not None else table.num_rows
        if offset + limit < table.num_rows:
            token = next_page_token(offset + limit)
        table = table.slice(offset, limit)
    key = m["metric_key"]
    metrics = [
        metric_json(Metric(key, v, t, s))
        for s, t, v in zip(
            table["step"].to_pylist(),
            table["timestamp"].to_pylist(),
            table["value"].to_pylist(),
            strict=True,
        )
    ]
    body: dict[str, Any] = {"metrics": metrics} if metrics else {}
    if token:
        body["next_page_token"] = token
    return ok(body)


@route("/mlflow/metrics/get-history-bulk-interval", "GET")
def get_metric_history_bulk_interval() -> Response:
    m = message(
        {
            "run_ids": ("list", "string"),
            "metric_key": "string",
            "start_step": "int32",
            "end_step": "int32",
            "max_results": "int32",
        },
        ("run_ids", "metric_key"),
    )
    run_ids = m["run_ids"]
    if len(run_ids) > MAX_RUNS_GET_METRIC_HISTORY_BULK:
        raise InvalidParameterValue(
            "GetMetricHistoryBulkInterval request must specify at most "
            f"{MAX_RUNS_GET_METRIC_HISTORY_BULK} run_ids. Received {len(run_ids)} run_ids."
        )
    max_results = m.get("max_results", MAX_RESULTS_PER_RUN)
    if not 1 <= max_results <= MAX_RESULTS_PER_RUN:
        raise InvalidParameterValue(
            f"max_results must be between 1 and {MAX_RESULTS_PER_RUN}. "
            "See the API docs for more information about request parameters."
        )
    start, end = m.get("start_step"), m.get("end_step")
    if (start is None) != (end is None):
        raise InvalidParameterValue(
            "If either start step or end step are specified, both must be specified."
        )
    if start is not None and start > end:
        raise InvalidParameterValue(
            "end_step must be greater than start_step. "
            f"Found start_step={start} and end_step={end}."
        )
    from evtrack.server.mlflow_compat import sample_interval

    key = m["metric_key"]
    client = backend().client
    out = []
    for rid in run_ids:  # request order, each run sampled on its own (MLflow 3.17)
        points = sample_interval(client.get_metric_history(rid, key), max_results, start, end)
        out += [metric_json(p, rid) for p in points]
    return ok({"metrics": out} if out else {})


# -- artifacts/list ------------------------------------------------------------------


@route("/mlflow/artifacts/list", "GET")
def list_artifacts() -> Response:
    m = message({**_RUN_ID, "path": "string", "page_token": "string"}, ("run_id",))
    path = m.get("path")
    if path is not None:
        from evtrack.server.mlflow_compat import check_path

        path = check_path(path)
    b = backend()
    run = b.client.get_run(m["run_id"])
    # Only allowed locations are opened: never a URL a client chose (SSRF).
    b.locations.check_read(run.info.artifact_uri)
    repo = b.store.artifact_repository(run.info.artifact_uri)
    files = [file_info_json(f) for f in repo.list(path or None)]
    body: dict[str, Any] = {"root_uri": b.public_uri(run.info.artifact_uri)}
    if files:
        body["files"] = files
    return ok(body)


def register(app: Flask) -> None:
    for path, methods, fn in ROUTES:
        for prefix in ("/api/2.0", "/ajax-api/2.0"):
            app.add_url_rule(
                prefix + path, endpoint=f"{prefix}{path}", view_func=fn, methods=methods
            )


def experiment_not_found(experiment_id: str) -> ExperimentNotFound:
    return ExperimentNotFound(f"No Experiment with id={experiment_id} exists")
