"""MLflow REST conformance: the same requests sent to ``mlflow server`` (the real one,
from the MLflow venv) and to ``evtrack server``, both over real HTTP on loopback.

``servers`` (session scope) starts both once; each test module seeds its own experiment
through the REST API on each server and compares the answers, with run ids mapped
(each server makes its own) — see :class:`Pair`.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from mlflow_venv import mlflow_python_fixture  # noqa: F401  (the mlflow_python fixture)

from evtrack.server.testing import ServerProcess, free_port


@dataclass
class Answer:
    status: int
    body: Any
    headers: Any  # case-insensitive: servers differ in header case
    raw: bytes


def call(
    base: str,
    method: str,
    path: str,
    body: Any = None,
    *,
    data: bytes | None = None,
    content_type: str | None = "application/json",
) -> Answer:
    headers = {}
    if body is not None:
        data = json.dumps(body).encode()
    if data is not None and content_type:
        headers["Content-Type"] = content_type
    req = urllib.request.Request(base + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            status, raw, hdrs = resp.status, resp.read(), resp.headers
    except urllib.error.HTTPError as exc:
        status, raw, hdrs = exc.code, exc.read(), exc.headers
    try:
        parsed = json.loads(raw) if raw else {}
    except ValueError:
        parsed = None
    return Answer(status, parsed, hdrs, raw)


def error_of(answer: Answer) -> tuple[int, str, str]:
    """What both servers must agree on for an error: status, code, message."""
    return answer.status, answer.body.get("error_code"), answer.body.get("message")


@dataclass
class Server:
    url: str
    cwd: Path
    runs: dict[str, str] = field(default_factory=dict)  # name -> run id

    def call(self, method: str, path: str, body: Any = None, **kw: Any) -> Answer:
        return call(self.url, method, path, body, **kw)

    def json(self, method: str, path: str, body: Any = None) -> Any:
        answer = self.call(method, path, body)
        assert answer.status == 200, (path, answer.status, answer.raw[:500])
        return answer.body


@dataclass
class Pair:
    mlflow: Server
    evtrack: Server

    def both(self, method: str, path: str, body: Any = None, **kw: Any) -> tuple[Answer, Answer]:
        """The same request to both; ``{run:NAME}`` in the path is that server's run id."""
        out = []
        for server in (self.mlflow, self.evtrack):
            p = path
            for name, rid in server.runs.items():
                p = p.replace("{run:" + name + "}", rid)
            out.append(server.call(method, p, body, **kw))
        return out[0], out[1]

    def seed(
        self, experiment: str, runs: dict[str, dict[str, list[tuple[int, int, float]]]]
    ) -> None:
        """An experiment with runs; each run's metrics as (step, timestamp, value) points."""
        for server in (self.mlflow, self.evtrack):
            exp_id = server.json(
                "POST", "/api/2.0/mlflow/experiments/create", {"name": experiment}
            )["experiment_id"]
            for name, metrics in runs.items():
                run = server.json(
                    "POST",
                    "/api/2.0/mlflow/runs/create",
                    {"experiment_id": exp_id, "run_name": name, "start_time": 1},
                )["run"]["info"]
                server.runs[name] = run["run_id"]
                points = [
                    {"key": key, "step": s, "timestamp": t, "value": v}
                    for key, pts in metrics.items()
                    for s, t, v in pts
                ]
                for i in range(0, len(points), 1000):
                    server.json(
                        "POST",
                        "/api/2.0/mlflow/runs/log-batch",
                        {"run_id": run["run_id"], "metrics": points[i : i + 1000]},
                    )
            server.runs["@" + experiment] = exp_id

    def unmap(self, server: Server, body: Any) -> Any:
        """``body`` with ``server``'s run ids replaced by the runs' names."""
        names = {rid: "<" + name + ">" for name, rid in server.runs.items() if name[0] != "@"}
        if isinstance(body, dict):
            return {k: self.unmap(server, v) for k, v in body.items()}
        if isinstance(body, list):
            return [self.unmap(server, v) for v in body]
        return names.get(body, body) if isinstance(body, str) else body


def _start_mlflow(python: Path, workdir: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    with open(workdir / "mlflow-server.log", "ab") as log:  # the child keeps its own copy
        proc = _popen_mlflow(python, workdir, port, log)
    return _wait(proc, workdir, port)


def _popen_mlflow(python: Path, workdir: Path, port: int, log: Any) -> subprocess.Popen:
    return subprocess.Popen(
        [
            str(python),
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            f"sqlite:///{workdir}/mlflow.db",
            "--artifacts-destination",
            str(workdir / "mlartifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        cwd=workdir,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, "MLFLOW_ALLOW_FILE_STORE": "true"},
    )


def _wait(proc: subprocess.Popen, workdir: Path, port: int) -> tuple[subprocess.Popen, str]:
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError((workdir / "mlflow-server.log").read_text()[-3000:])
        try:
            with urllib.request.urlopen(url + "/health", timeout=2):
                return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError("mlflow server did not start in 240 s")


@pytest.fixture(scope="session")
def servers(mlflow_python, tmp_path_factory) -> Iterator[Pair]:
    ml_dir = tmp_path_factory.mktemp("mlflow-server")
    ev_dir = tmp_path_factory.mktemp("evtrack-server")
    proc, ml_url = _start_mlflow(mlflow_python, ml_dir)
    root = Path(__file__).resolve().parents[2]
    # `mlflow server` takes any artifact_location; evtrack's server only what its operator
    # allows (issue 9's SSRF rule), so allow what these tests give, as an operator would.
    allowed = [str(tmp_path_factory.getbasetemp()), "s3://bucket"]
    ev = ServerProcess(
        str(ev_dir / "store"),
        [arg for loc in allowed for arg in ("--allowed-artifact-locations", loc)],
        env={"PYTHONPATH": str(root)},
    )
    old = os.getcwd()
    os.chdir(ev_dir)  # the evtrack server's cwd: relative artifact locations resolve here
    try:
        ev_url = ev.start()
    finally:
        os.chdir(old)
    try:
        yield Pair(Server(ml_url, ml_dir), Server(ev_url, ev_dir))
    finally:
        ev.stop()
        os.killpg(proc.pid, 15)
        proc.wait(30)


def q(**params: Any) -> str:
    """A query string; ``{run:NAME}`` placeholders are kept readable for :meth:`Pair.both`."""
    text = urllib.parse.urlencode(params, doseq=True)
    return text.replace("%7B", "{").replace("%7D", "}").replace("%3A", ":")
