"""The corners of ``mlflow server``'s REST surface that MLflow's own clients and UI use
beyond the documented API, answered as MLflow 3.17 answers them:

* ``GET /ajax-api/2.0/mlflow/metrics/get-history-bulk`` — one metric of up to 100 runs;
* ``POST /ajax-api/2.0/mlflow/experiments/search-datasets`` — dataset summaries;
* ``POST /ajax-api/2.0/mlflow/upload-artifact`` — the UI's small-file upload (≤ 10 MB);
* ``GET /get-artifact`` — the legacy download route;
* :func:`check_path` — artifact path validation with MLflow's exact ``"Invalid path"``
  (MLflow's clients and tests match the message; the reason is logged instead);
* :func:`sample_interval` — ``get-history-bulk-interval``'s per-run sampling;
* :func:`absolute_artifact_location` — a relative ``artifact_location`` made absolute.

Each of these was checked against MLflow's source (``mlflow/server/handlers.py``,
``mlflow/store/tracking/sqlalchemy_store.py``, ``mlflow/utils/uri.py``).
"""

from __future__ import annotations

import json
import logging
import math
import os
import posixpath
from typing import Any

from flask import Flask, Response, request

from evtrack.errors import InvalidParameterValue
from evtrack.mlflow_plugin.uris import absolute_artifact_location
from evtrack.server.incoming import backend, body_bytes, json_body

__all__ = [
    "absolute_artifact_location",
    "check_path",
    "guess_mime_type",
    "register",
    "sample_interval",
]

_log = logging.getLogger("evtrack.server")

#: get-history-bulk limits (MLflow's handler constants).
MAX_HISTORY_RESULTS = 25_000
MAX_RUN_IDS_PER_REQUEST = 100
#: search-datasets limits.
MAX_EXPERIMENT_IDS_PER_REQUEST = 20
MAX_DATASET_SUMMARIES_RESULTS = 1000
#: upload-artifact's size limit.
MAX_UPLOAD_BYTES = 10 * 1024 * 1024


def check_path(path: Any, *, allow_root: bool = True) -> str:
    """:func:`evtrack.tracking.validation.check_artifact_path`, answering MLflow's exact
    ``INVALID_PARAMETER_VALUE: "Invalid path"`` when the path is refused."""
    from evtrack.tracking.validation import check_artifact_path

    try:
        return check_artifact_path(path, allow_root=allow_root)
    except InvalidParameterValue as exc:
        _log.info("refused artifact path: %s", exc.message)
        raise InvalidParameterValue("Invalid path") from None


#: Extensions MLflow serves as text/plain (mlflow/utils/mime_type_utils.py), so that the
#: UI previews them and no browser renders them as their own type.
TEXT_EXTENSIONS = frozenset(
    "txt log err cfg conf cnf cf ini properties prop hocon toml yaml yml xml json js py py3 "
    "csv tsv md rst ipynb MLmodel MLproject".split()
)


def guess_mime_type(name: str) -> str:
    """The Content-Type MLflow's server sends for an artifact called ``name``."""
    import mimetypes

    ext = os.path.splitext(name)[1].lstrip(".") or name
    if ext in TEXT_EXTENSIONS:
        return "text/plain"
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


def sample_interval(points: list, max_results: int, start: int | None, end: int | None) -> list:
    """One run's points for ``get-history-bulk-interval``, as MLflow 3.17's SQL store picks
    them: within ``[start, end]``, ordered by (step, timestamp, value), the first row of
    each of ``max_results`` NTILE buckets, plus the run's last row (replacing the final
    sample when the page is full). ``points`` are :class:`~evtrack.entities.Metric`.
    """
    if start is not None and end is not None:
        points = [p for p in points if start <= p.step <= end]

    def order(p):  # MLflow stores NaN as value 0 with is_nan set; it orders that way too
        nan = isinstance(p.value, float) and math.isnan(p.value)
        return (p.step, p.timestamp, 0.0 if nan else p.value, nan)

    rows = sorted(points, key=order)
    n = len(rows)
    if n == 0:
        return []
    if n <= max_results:
        picked = list(range(n))  # NTILE gives every row its own bucket
    else:
        size, extra = divmod(n, max_results)  # the first `extra` buckets hold one more
        picked, pos = [], 0
        for bucket in range(max_results):
            picked.append(pos)
            pos += size + (1 if bucket < extra else 0)
    if picked[-1] != n - 1:
        if len(picked) >= max_results:
            picked[-1] = n - 1
        else:
            picked.append(n - 1)
    return [rows[i] for i in picked]


def _ok(body: dict[str, Any]) -> Response:
    from evtrack.server.protocol import dumps

    return Response(dumps(body), mimetype="application/json")


def get_history_bulk() -> Response:
    from evtrack.server.protocol import metric_json

    run_ids = request.args.getlist("run_id")
    if not run_ids:
        raise InvalidParameterValue(
            "GetMetricHistoryBulk request must specify at least one run_id."
        )
    if len(run_ids) > MAX_RUN_IDS_PER_REQUEST:
        raise InvalidParameterValue(
            f"GetMetricHistoryBulk request cannot specify more than {MAX_RUN_IDS_PER_REQUEST}"
            f" run_ids. Received {len(run_ids)} run_ids."
        )
    key = request.args.get("metric_key")
    if key is None:
        raise InvalidParameterValue("GetMetricHistoryBulk request must specify a metric_key.")
    raw = request.args.get("max_results", str(MAX_HISTORY_RESULTS))
    try:
        max_results = min(int(raw), MAX_HISTORY_RESULTS)
    except ValueError:
        raise InvalidParameterValue(
            f"Invalid value {raw!r} for parameter 'max_results': use an integer."
        ) from None
    from evtrack.errors import RunNotFound

    client = backend().client
    points = []
    for run_id in sorted(set(run_ids)):
        try:
            history = client.get_metric_history(run_id, key)
        except RunNotFound:
            continue  # MLflow's SQL store skips ids it does not know
        points += [(run_id, m) for m in history]
    # MLflow's SQL store: ordered by run id, timestamp, step, value; one limit overall.
    points.sort(key=lambda rm: (rm[0], rm[1].timestamp, rm[1].step, rm[1].value))
    limit = max(max_results, 0)
    return _ok({"metrics": [metric_json(m, run_id) for run_id, m in points[:limit]]})


def search_datasets() -> Response:
    body = json_body()
    if request.content_type is None:
        raise InvalidParameterValue("Bad Request. Content-Type header is missing.")
    ids = body.get("experiment_ids") or []
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise InvalidParameterValue(
            f"Invalid value {json.dumps(ids)} for parameter 'experiment_ids' supplied: "
            "a list of experiment id strings."
        )
    if not ids:
        raise InvalidParameterValue(
            "SearchDatasets request must specify at least one experiment_id."
        )
    if len(ids) > MAX_EXPERIMENT_IDS_PER_REQUEST:
        raise InvalidParameterValue(
            f"SearchDatasets request cannot specify more than {MAX_EXPERIMENT_IDS_PER_REQUEST}"
            f" experiment_ids. Received {len(ids)} experiment_ids."
        )
    b = backend()
    client = b.client
    known = set(b.store.layout.list_experiment_ids())
    ids = [i for i in ids if i in known]
    summaries = []
    if ids:
        rows = client.sql(
            "select distinct experiment_id, name, digest, context from inputs "
            "where experiment_id in (select unnest($ids)) "
            "order by experiment_id, name, digest, context nulls first limit $n",
            {"ids": ids, "n": MAX_DATASET_SUMMARIES_RESULTS},
        ).fetchall()
        for exp_id, name, digest, context in rows:
            item = {"experiment_id": exp_id, "name": name, "digest": digest}
            if context is not None:
                item["context"] = context
            summaries.append(item)
    return _ok({"dataset_summaries": summaries} if summaries else {})


def upload_artifact() -> Response:
    run_id = request.args.get("run_uuid")
    if not run_id:
        raise InvalidParameterValue("Request must specify run_uuid.")
    path = request.args.get("path")
    if not path:
        raise InvalidParameterValue("Request must specify path.")
    path = check_path(path, allow_root=False)
    if request.content_length and request.content_length > MAX_UPLOAD_BYTES:
        raise InvalidParameterValue("Artifact size is too large. Max size is 10MB.")
    data = body_bytes(MAX_UPLOAD_BYTES + 1)
    if not data:
        raise InvalidParameterValue("Request must specify data.")
    if len(data) > MAX_UPLOAD_BYTES:
        raise InvalidParameterValue("Artifact size is too large. Max size is 10MB.")
    client = backend().client
    client.log_bytes(run_id, data, path)
    return Response(mimetype="application/json")


def get_artifact() -> Response:
    from evtrack.server.artifacts_proxy import file_response

    run_id = request.args.get("run_id") or request.args.get("run_uuid")
    if not run_id:
        raise InvalidParameterValue("Missing value for required parameter 'run_id'.")
    if "path" not in request.args:
        raise InvalidParameterValue("Missing value for required parameter 'path'.")
    path = check_path(request.args["path"], allow_root=False)
    b = backend()
    run = b.client.get_run(run_id)
    b.locations.check_read(run.info.artifact_uri)  # never a location a client chose (SSRF)
    repo = b.store.artifact_repository(run.info.artifact_uri)
    return file_response(posixpath.basename(path), repo.read_bytes(path))


def register(app: Flask) -> None:
    app.add_url_rule(
        "/ajax-api/2.0/mlflow/metrics/get-history-bulk",
        "mlflow-compat-history-bulk",
        get_history_bulk,
        methods=["GET"],
    )
    app.add_url_rule(
        "/ajax-api/2.0/mlflow/experiments/search-datasets",
        "mlflow-compat-search-datasets",
        search_datasets,
        methods=["POST"],
    )
    app.add_url_rule(
        "/ajax-api/2.0/mlflow/upload-artifact",
        "mlflow-compat-upload-artifact",
        upload_artifact,
        methods=["POST"],
    )
    app.add_url_rule("/get-artifact", "mlflow-compat-get-artifact", get_artifact, methods=["GET"])
