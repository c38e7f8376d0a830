"""Logging to an ``evtrack server`` over HTTP: ``set_tracking_uri("http://host:5000")``.

Two parts:

* :class:`HttpSink` stands in for the :class:`~evtrack.store.log.layout.Store` under the process's
  :class:`~evtrack.store.log.writer.Writer`. The writer builds its segments exactly as for a local
  store (one per run per flush, Parquet+zstd for metric series, JSONL for small ones);
  the sink PUTs each to ``/api/evtrack/segments/<experiment_id>/<segment name>``. The
  name is ``<run>.<writer id>-<sequence>``, and the server writes it create-only, so a
  retry after a timeout or a 5xx can never store an event twice. JSONL segments are
  gzipped; Parquet ones are already compressed. Failed PUTs are retried with
  exponential backoff (``http_retries``, ``http_timeout``); if the server is still
  unreachable when the process exits, the segments go to a local spool folder
  (``spool_dir``) and ``evtrack sync`` sends them later. Nothing is dropped silently.
* :class:`RemoteClient` is :class:`~evtrack.tracking.client.MlflowClient` with reads and
  metadata calls (create/get/search experiments and runs, metric history, SQL) sent to
  the server's REST API, and log calls going through the writer and the sink, so the
  hot path (``log_metric`` in a loop) costs the same as logging to a local folder.
"""

from __future__ import annotations

import logging
import os
import posixpath
import urllib.parse
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from evtrack.entities import Experiment, FileInfo, Metric, Run, RunData, RunInfo, ViewType
from evtrack.errors import EvtrackError, InvalidParameterValue
from evtrack.store.log.writer import get_writer
from evtrack.store.rest.sink import get_sink
from evtrack.store.rest.transport import _Http, _http_error
from evtrack.tracking.client import MlflowClient, PagedList, _state

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa

__all__ = ["RemoteClient"]

_log = logging.getLogger(__name__)
_RETRY_STATUS = {429, 500, 502, 503, 504}


# -- the client ------------------------------------------------------------------------


def _run_from_json(body: dict[str, Any]) -> Run:
    info = body["info"]
    data = body.get("data") or {}
    metric_objs = [
        Metric(m["key"], _float(m["value"]), int(m.get("timestamp", 0)), int(m.get("step", 0)))
        for m in data.get("metrics", [])
    ]
    run_data = RunData(
        metrics={m.key: m.value for m in metric_objs},
        params={p["key"]: p.get("value", "") for p in data.get("params", [])},
        tags={t["key"]: t.get("value", "") for t in data.get("tags", [])},
        _metric_objs=metric_objs,
    )
    run_info = RunInfo(
        run_id=info["run_id"],
        experiment_id=info["experiment_id"],
        user_id=info.get("user_id", ""),
        status=info.get("status", "RUNNING"),
        start_time=info.get("start_time"),
        end_time=info.get("end_time"),
        lifecycle_stage=info.get("lifecycle_stage", "active"),
        artifact_uri=info.get("artifact_uri", ""),
        run_name=info.get("run_name", ""),
    )
    return Run(run_info, run_data)


def _float(value: Any) -> float:
    return float(value)  # "NaN", "Infinity", "-Infinity" parse as Python floats


def _experiment_from_json(body: dict[str, Any]) -> Experiment:
    return Experiment(
        experiment_id=body["experiment_id"],
        name=body["name"],
        artifact_location=body.get("artifact_location", ""),
        lifecycle_stage=body.get("lifecycle_stage", "active"),
        tags={t["key"]: t.get("value", "") for t in body.get("tags", [])},
        creation_time=body.get("creation_time"),
        last_update_time=body.get("last_update_time"),
    )


_VIEW_NAMES = {1: "ACTIVE_ONLY", 2: "DELETED_ONLY", 3: "ALL"}
API = "/api/2.0/mlflow"


class RemoteClient(MlflowClient):
    """:class:`MlflowClient` for an ``http(s)://`` tracking URI (an evtrack server)."""

    def __init__(self, tracking_uri: str | None = None, registry_uri: str | None = None) -> None:
        from evtrack.tracking.fluent import get_tracking_uri

        self._tracking_uri = (tracking_uri or get_tracking_uri()).rstrip("/")
        self.store = get_sink(self._tracking_uri)  # type: ignore[assignment]
        self.http = self.store.http
        self.writer = get_writer(self.store)  # type: ignore[arg-type]
        self._state = _state(self.store)  # type: ignore[arg-type]

    # -- plumbing ------------------------------------------------------------------

    def _ready(self) -> None:
        return None

    def _call(self, method: str, path: str, payload: dict[str, Any] | None = None) -> Any:
        return self.http.call(method, API + path, payload)

    def _experiment_of(self, run_id: str) -> str:
        experiment_id = self._state.run_experiment.get(run_id)
        if experiment_id is None:
            experiment_id = self.get_run(run_id).info.experiment_id
        return experiment_id

    def _read(self, experiment_ids=None, run_id=None):  # pragma: no cover - guard
        raise NotImplementedError("a remote client reads through the server's REST API")

    # -- experiments -----------------------------------------------------------------

    def create_experiment(self, name, artifact_location=None, tags=None) -> str:
        payload: dict[str, Any] = {"name": name}
        if artifact_location:
            payload["artifact_location"] = artifact_location
        if tags:
            payload["tags"] = [{"key": k, "value": str(v)} for k, v in tags.items()]
        return self._call("POST", "/experiments/create", payload)["experiment_id"]

    def get_experiment(self, experiment_id: str) -> Experiment:
        body = self._call("GET", "/experiments/get", {"experiment_id": str(experiment_id)})
        return _experiment_from_json(body["experiment"])

    def get_experiment_by_name(self, name: str) -> Experiment | None:
        from evtrack.errors import ResourceDoesNotExist

        try:
            body = self._call("GET", "/experiments/get-by-name", {"experiment_name": name})
        except ResourceDoesNotExist:
            return None
        return _experiment_from_json(body["experiment"])

    def search_experiments(
        self,
        view_type: int = ViewType.ACTIVE_ONLY,
        max_results: int | None = None,
        filter_string: str | None = None,
        order_by: list[str] | None = None,
        page_token: str | None = None,
    ) -> PagedList:
        payload: dict[str, Any] = {
            "view_type": _VIEW_NAMES[view_type],
            "max_results": 1000 if max_results is None else max_results,
        }
        if filter_string:
            payload["filter"] = filter_string
        if order_by:
            payload["order_by"] = list(order_by)
        if page_token:
            payload["page_token"] = page_token
        body = self._call("POST", "/experiments/search", payload)
        exps = [_experiment_from_json(e) for e in body.get("experiments", [])]
        return PagedList(exps, body.get("next_page_token"))

    def rename_experiment(self, experiment_id: str, new_name: str) -> None:
        self._call(
            "POST", "/experiments/update", {"experiment_id": experiment_id, "new_name": new_name}
        )

    def delete_experiment(self, experiment_id: str) -> None:
        self._call("POST", "/experiments/delete", {"experiment_id": str(experiment_id)})

    def restore_experiment(self, experiment_id: str) -> None:
        self._call("POST", "/experiments/restore", {"experiment_id": str(experiment_id)})

    def set_experiment_tag(self, experiment_id: str, key: str, value: Any) -> None:
        self._call(
            "POST",
            "/experiments/set-experiment-tag",
            {"experiment_id": str(experiment_id), "key": key, "value": str(value)},
        )

    def delete_experiment_tag(self, experiment_id: str, key: str) -> None:
        self._call(
            "POST",
            "/experiments/delete-experiment-tag",
            {"experiment_id": experiment_id, "key": key},
        )

    # -- runs --------------------------------------------------------------------------

    def create_run(
        self, experiment_id, start_time=None, tags=None, run_name=None, *, run_id=None, user_id=None
    ) -> Run:
        from evtrack.store.log.writer import now_ms
        from evtrack.tracking.context import user_name

        if run_id is not None:
            raise EvtrackError("A remote client cannot choose the run id of a new run.")
        tags = {k: str(v) for k, v in (tags or {}).items()}
        payload: dict[str, Any] = {
            "experiment_id": str(experiment_id),
            "start_time": now_ms() if start_time is None else start_time,
            "user_id": user_id or tags.get("mlflow.user") or user_name(),
            "tags": [{"key": k, "value": v} for k, v in tags.items()],
        }
        if run_name:
            payload["run_name"] = run_name
        run = _run_from_json(self._call("POST", "/runs/create", payload)["run"])
        self._state.run_experiment[run.info.run_id] = run.info.experiment_id
        self._state.params[run.info.run_id] = {}
        return run

    def get_run(self, run_id: str) -> Run:
        run = _run_from_json(self._call("GET", "/runs/get", {"run_id": run_id})["run"])
        self._state.run_experiment[run_id] = run.info.experiment_id
        return run

    def _check_params(self, run_id: str, params: dict[str, str]) -> dict[str, str]:
        if self._state.params.get(run_id) is None:
            self.writer.flush()
            self._state.params[run_id] = dict(self.get_run(run_id).data.params)
        return super()._check_params(run_id, params)

    def search_runs(
        self,
        experiment_ids,
        filter_string: str = "",
        run_view_type: int = ViewType.ACTIVE_ONLY,
        max_results: int = 1000,
        order_by: list[str] | None = None,
        page_token: str | None = None,
    ) -> PagedList:
        self.writer.flush()  # a process reads its own writes
        if isinstance(experiment_ids, (str, int)):
            experiment_ids = [experiment_ids]
        payload: dict[str, Any] = {
            "experiment_ids": [str(e) for e in experiment_ids],
            "filter": filter_string or "",
            "run_view_type": _VIEW_NAMES[run_view_type],
            "max_results": max_results,
        }
        if order_by:
            payload["order_by"] = list(order_by)
        if page_token:
            payload["page_token"] = page_token
        body = self._call("POST", "/runs/search", payload)
        return PagedList(
            [_run_from_json(r) for r in body.get("runs", [])], body.get("next_page_token")
        )

    def get_metric_history_arrow(self, run_id: str, key: str) -> pa.Table:
        import pyarrow as pa

        self.writer.flush()
        steps: list[int] = []
        stamps: list[int] = []
        values: list[float] = []
        token = None
        while True:
            payload: dict[str, Any] = {"run_id": run_id, "metric_key": key, "max_results": 25000}
            if token:
                payload["page_token"] = token
            body = self._call("GET", "/metrics/get-history", payload)
            for m in body.get("metrics", []):
                steps.append(int(m.get("step", 0)))
                stamps.append(int(m.get("timestamp", 0)))
                values.append(_float(m["value"]))
            token = body.get("next_page_token")
            if not token:
                break
        table = pa.table(
            {
                "step": pa.array(steps, pa.int64()),
                "timestamp": pa.array(stamps, pa.int64()),
                "value": pa.array(values, pa.float64()),
            }
        )
        return table.sort_by([("step", "ascending"), ("timestamp", "ascending")])

    # -- artifacts -------------------------------------------------------------------

    def _artifacts(self, run_id: str):
        run = self.get_run(run_id)
        uri = run.info.artifact_uri
        if uri.startswith("mlflow-artifacts:"):
            return run, ProxiedArtifacts(self.http, uri)
        from evtrack.artifacts.repository import ArtifactRepository

        return run, ArtifactRepository(uri)

    def _record_artifacts(self, run: Run, written) -> None:
        if run.info.artifact_uri.startswith("mlflow-artifacts:"):
            return  # the server's proxy recorded them
        super()._record_artifacts(run, written)

    # -- evtrack extras --------------------------------------------------------------

    def sql(self, query: str, params: list | dict | None = None):
        """Run read-only SQL on the server; returns a DuckDB relation over the result."""
        import duckdb
        import pyarrow as pa

        payload: dict[str, Any] = {"query": query}
        if params is not None:
            payload["params"] = params
        body = self.http.call("POST", "/api/evtrack/sql", payload)
        columns = body["columns"]
        data = {c: [row[i] for row in body["rows"]] for i, c in enumerate(columns)}
        return duckdb.from_arrow(pa.table(data) if columns else pa.table({}))


#: ``list`` is a method name inside ProxiedArtifacts; the builtin type, spelled outside it.
_Paths = list[str]


class ProxiedArtifacts:
    """A run's artifacts through the server's ``mlflow-artifacts`` proxy."""

    def __init__(self, http: _Http, artifact_uri: str) -> None:
        self.http = http
        self.rel_root = artifact_uri[len("mlflow-artifacts:") :].strip("/")

    def _path(self, rel: str) -> str:
        from evtrack.tracking.validation import check_artifact_path

        rel = check_artifact_path(rel)
        full = f"{self.rel_root}/{rel}" if rel else self.rel_root
        return "/api/2.0/mlflow-artifacts/artifacts/" + urllib.parse.quote(full)

    def write_bytes(self, rel: str, data: bytes):
        from evtrack.artifacts.repository import WrittenArtifact

        status, body = self.http.request(
            "PUT", self._path(rel), data, {"Content-Type": "application/octet-stream"}
        )
        if status != 200:
            raise _http_error(status, body)
        import hashlib

        return WrittenArtifact(rel, len(data), hashlib.sha256(data).hexdigest())

    def upload_file(self, local_path: str, artifact_path: str | None):
        name = os.path.basename(local_path)
        with open(local_path, "rb") as f:
            return self.write_bytes(posixpath.join(artifact_path or "", name), f.read())

    def upload_dir(self, local_dir: str, artifact_path: str | None) -> list:
        written = []
        for folder, dirs, files in os.walk(local_dir):
            dirs.sort()
            rel_dir = os.path.relpath(folder, local_dir).replace(os.sep, "/")
            for name in sorted(files):
                rel = posixpath.normpath(posixpath.join(artifact_path or "", rel_dir, name))
                with open(os.path.join(folder, name), "rb") as f:
                    written.append(self.write_bytes(rel, f.read()))
        return written

    def list(self, path: str | None = None) -> list[FileInfo]:
        from evtrack.tracking.validation import check_artifact_path

        rel = check_artifact_path(path)
        full = f"{self.rel_root}/{rel}" if rel else self.rel_root
        body = self.http.call("GET", "/api/2.0/mlflow-artifacts/artifacts", {"path": full})
        infos = []
        for f in body.get("files", []):
            # The server's answer is input like any other: a name with ".." or an absolute
            # path would otherwise steer a download outside its folder.
            name = check_artifact_path(
                f.get("path") if isinstance(f, dict) else f, allow_root=False
            )
            infos.append(
                FileInfo(
                    path=posixpath.join(rel, name) if rel else name,
                    is_dir=bool(f.get("is_dir")),
                    file_size=f.get("file_size"),
                )
            )
        return sorted(infos, key=lambda i: i.path)

    def read_bytes(self, path: str) -> bytes:
        status, body = self.http.request("GET", self._path(path))
        if status != 200:
            raise _http_error(status, body)
        return body

    def download(self, path: str | None, dst_path: str | None = None) -> str:
        """Download a file or folder. Every path the server lists is checked (no ``..``,
        nothing through a symlink out of the destination) before any file is opened, and
        files are written under a temporary name then renamed, so a hostile or broken
        server can neither write outside the destination nor truncate a file there."""
        import tempfile

        from evtrack.artifacts.repository import local_target, write_local
        from evtrack.tracking.validation import check_artifact_path

        rel = check_artifact_path(path)
        root = os.path.abspath(dst_path) if dst_path else tempfile.mkdtemp(prefix="evtrack-")
        local = os.path.join(root, *rel.split("/")) if rel else root
        entries = self.list(rel)
        if not entries and rel:  # a file
            target = local_target(root, rel)
            write_local(target, self.read_bytes(rel))
            return local
        plan = [(f, local_target(root, f)) for f in self._files(entries)]
        os.makedirs(local, exist_ok=True)
        for f, target in plan:
            write_local(target, self.read_bytes(f))
        return local

    def _files(self, entries: Sequence[FileInfo], depth: int = 0) -> Sequence[str]:
        """Relative paths of every file under listed entries (folders listed recursively)."""
        if depth > 100:
            raise InvalidParameterValue("Artifact folders nest more than 100 levels deep.")
        out: _Paths = []
        for entry in entries:
            if entry.is_dir:
                out += self._files(self.list(entry.path), depth + 1)
            else:
                out.append(entry.path)
        return out

    def delete(self, path: str | None) -> list[str]:
        status, body = self.http.request("DELETE", self._path(path or ""))
        if status != 200:
            raise _http_error(status, body)
        return []  # the server recorded the deletion events
