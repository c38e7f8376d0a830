"""Read an MLflow tracking server (``http(s)://host:port``) through its REST API.

Experiments and runs come from ``experiments/search`` and ``runs/search`` (all view
types, paged), histories from ``metrics/get-history`` (paged, 25,000 points a page),
artifacts from ``artifacts/list`` and the ``get-artifact`` download route, so artifacts
behind the server's ``mlflow-artifacts`` proxy come across too. Credentials are MLflow's:
``MLFLOW_TRACKING_TOKEN`` or ``MLFLOW_TRACKING_USERNAME``/``_PASSWORD`` (or their
``EVTRACK_`` forms). One request at a time; a server far away makes this the slow path.
"""

from __future__ import annotations

import base64
import json
import shutil
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from evtrack.errors import InvalidParameterValue
from evtrack.migrate.source import SourceExperiment, SourceRun, status_name

__all__ = ["HttpSource"]

_PAGE = 1000
_HISTORY_PAGE = 25_000


class _ServerFiles:
    """The bit of an fsspec filesystem the importer uses, over ``/get-artifact``."""

    protocol = "http"

    def __init__(self, source: HttpSource) -> None:
        self.source = source

    def get_file(self, src: str, dst: str) -> None:
        run_id, _, rel = src.partition("/")
        query = urllib.parse.urlencode({"run_id": run_id, "path": rel})
        with self.source._open("GET", f"/get-artifact?{query}") as resp, open(dst, "wb") as out:
            shutil.copyfileobj(resp, out)


class HttpSource:
    """An MLflow tracking server, read-only."""

    def __init__(self, uri: str) -> None:
        from evtrack import settings

        self.uri = uri.rstrip("/")
        self._headers = {"Content-Type": "application/json"}
        token = settings.get("tracking_token")
        user, password = settings.get("tracking_username"), settings.get("tracking_password")
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        elif user and password:
            pair = base64.b64encode(f"{user}:{password}".encode()).decode()
            self._headers["Authorization"] = f"Basic {pair}"
        self._history: dict[tuple[str, str], Any] = {}
        self._files = _ServerFiles(self)

    def _open(self, method: str, path: str, body: Any = None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.uri + path, data=data, method=method, headers=self._headers
        )
        try:
            return urllib.request.urlopen(req, timeout=120)
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:500].decode(errors="replace")
            raise InvalidParameterValue(
                f"The MLflow server at {self.uri} answered {exc.code} to {method} {path}: {detail}"
            ) from None
        except OSError as exc:
            raise InvalidParameterValue(
                f"Cannot reach the MLflow server at {self.uri}: {exc}"
            ) from None

    def _json(self, method: str, path: str, body: Any = None) -> dict:
        with self._open(method, path, body) as resp:
            return json.loads(resp.read() or b"{}")

    def experiments(self) -> list[SourceExperiment]:
        out, token = [], None
        while True:
            body = {"max_results": _PAGE, "view_type": "ALL"}
            if token:
                body["page_token"] = token
            page = self._json("POST", "/api/2.0/mlflow/experiments/search", body)
            for e in page.get("experiments", []):
                out.append(
                    SourceExperiment(
                        experiment_id=e["experiment_id"],
                        name=e["name"],
                        artifact_location=e.get("artifact_location", ""),
                        lifecycle_stage=e.get("lifecycle_stage", "active"),
                        tags={t["key"]: t.get("value", "") for t in e.get("tags", [])},
                        creation_time=_int(e.get("creation_time")),
                        last_update_time=_int(e.get("last_update_time")),
                    )
                )
            token = page.get("next_page_token")
            if not token:
                return out

    def runs(self, experiment_id: str) -> list[SourceRun]:
        out, token = [], None
        while True:
            body = {"experiment_ids": [experiment_id], "run_view_type": "ALL", "max_results": _PAGE}
            if token:
                body["page_token"] = token
            page = self._json("POST", "/api/2.0/mlflow/runs/search", body)
            for r in page.get("runs", []):
                info, data = r["info"], r.get("data", {})
                run = SourceRun(
                    run_id=info["run_id"],
                    experiment_id=experiment_id,
                    run_name=info.get("run_name", ""),
                    user_id=info.get("user_id", ""),
                    status=status_name(info.get("status")),
                    start_time=_int(info.get("start_time")),
                    end_time=_int(info.get("end_time")),
                    lifecycle_stage=info.get("lifecycle_stage", "active"),
                    artifact_uri=info.get("artifact_uri", ""),
                    params={p["key"]: p.get("value", "") for p in data.get("params", [])},
                    tags={t["key"]: t.get("value", "") for t in data.get("tags", [])},
                    metric_keys=[m["key"] for m in data.get("metrics", [])],
                )
                out.append(run)
            token = page.get("next_page_token")
            if not token:
                return out

    def _history_of(self, run: SourceRun, key: str):
        import pyarrow as pa

        cached = self._history.pop((run.run_id, key), None)
        if cached is not None:
            return cached
        steps, stamps, values, token = [], [], [], None
        while True:
            query = {"run_id": run.run_id, "metric_key": key, "max_results": _HISTORY_PAGE}
            if token:
                query["page_token"] = token
            page = self._json(
                "GET", "/api/2.0/mlflow/metrics/get-history?" + urllib.parse.urlencode(query)
            )
            for m in page.get("metrics", []):
                steps.append(int(m.get("step", 0)))
                stamps.append(int(m.get("timestamp", 0)))
                values.append(float(m.get("value", 0.0)))  # "NaN"/"Infinity" parse too
            token = page.get("next_page_token")
            if not token:
                break
        table = pa.table(
            {
                "step": pa.array(steps, pa.int64()),
                "timestamp": pa.array(stamps, pa.int64()),
                "value": pa.array(values, pa.float64()),
            }
        ).sort_by([("step", "ascending"), ("timestamp", "ascending")])
        return table

    def metric_counts(self, run: SourceRun) -> dict[str, int]:
        # The REST API has no count: fetch the history, and keep it for a metrics() call
        # on the same run. Only the last run's are kept: the importer asks the counts of
        # every run already in evtrack, and most of those are complete and never read.
        self._history = {k: v for k, v in self._history.items() if k[0] == run.run_id}
        counts = {}
        for key in run.metric_keys:
            table = self._history_of(run, key)
            self._history[(run.run_id, key)] = table
            counts[key] = table.num_rows
        return counts

    def metrics(self, run: SourceRun):
        return {key: self._history_of(run, key) for key in run.metric_keys}

    def artifact_files(self, run: SourceRun):
        files: list[str] = []
        folders = [None]
        while folders:
            path = folders.pop()
            query = {"run_id": run.run_id}
            if path:
                query["path"] = path
            page = self._json(
                "GET", "/api/2.0/mlflow/artifacts/list?" + urllib.parse.urlencode(query)
            )
            for f in page.get("files", []):
                (folders if f.get("is_dir") else files).append(f["path"])
        return self._files, run.run_id, sorted(files)

    def close(self) -> None:
        self._history.clear()


def _int(value: Any) -> int | None:
    return None if value is None else int(value)
