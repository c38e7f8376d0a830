"""Helpers for the model tests: a trained wine model and a real `evtrack models serve`."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

from helpers import ROOT, subprocess_env

WINE_CSV = ROOT / "examples" / "sklearn_elasticnet_wine" / "wine-quality.csv"
WINE_COLUMNS = [
    "fixed acidity",
    "volatile acidity",
    "citric acid",
    "residual sugar",
    "chlorides",
    "free sulfur dioxide",
    "total sulfur dioxide",
    "density",
    "pH",
    "sulphates",
    "alcohol",
]
# The curl body, byte for byte.
CURL_BODY = (
    '{"columns":["fixed acidity","volatile acidity","citric acid","residual sugar",'
    '"chlorides","free sulfur dioxide","total sulfur dioxide","density","pH","sulphates",'
    '"alcohol"],"data":[[7,0.27,0.36,20.7,0.045,45,170,1.001,3,0.45,8.8]]}'
)
CURL_ROW = [7, 0.27, 0.36, 20.7, 0.045, 45, 170, 1.001, 3, 0.45, 8.8]


def wine_data():
    import pandas as pd

    data = pd.read_csv(WINE_CSV)
    return data.drop(columns=["quality"]), data["quality"]


def wine_model():
    from sklearn.linear_model import ElasticNet

    x, y = wine_data()
    return ElasticNet(alpha=0.5, l1_ratio=0.5, random_state=42).fit(x, y)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServedModel:
    """`python -m evtrack.cli models serve ...` as a child process on a free port."""

    def __init__(self, model_uri: str, *args: str, tracking_uri: str | None = None) -> None:
        self.port = free_port()
        self.cmd = [
            sys.executable, "-m", "evtrack.cli", "models", "serve",
            "-m", model_uri, "-p", str(self.port), *args,
        ]  # fmt: skip
        self.env = subprocess_env(tracking_uri)
        self.proc: subprocess.Popen | None = None

    def start(self, wait: float = 60) -> ServedModel:
        self.proc = subprocess.Popen(
            self.cmd, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                out, err = self.proc.communicate()
                raise AssertionError(f"server exited {self.proc.returncode}:\n{err.decode()}")
            try:
                if self.request("GET", "/ping")[0] == 200:
                    return self
            except OSError:
                time.sleep(0.1)
        raise AssertionError("server did not answer /ping")

    def stop(self) -> str:
        assert self.proc is not None
        self.proc.terminate()
        try:
            _, err = self.proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return err.decode(errors="replace")

    def request(
        self, method: str, path: str, body: bytes | str | None = None, headers: dict | None = None
    ) -> tuple[int, bytes, dict]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            if isinstance(body, str):
                body = body.encode()
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, resp.read(), dict(resp.getheaders())
        finally:
            conn.close()

    def invoke(self, body, content_type: str | None = "application/json") -> tuple[int, dict]:
        if not isinstance(body, (bytes, str)):
            body = json.dumps(body)
        headers = {"Content-Type": content_type} if content_type else {}
        status, data, _ = self.request("POST", "/invocations", body, headers)
        return status, json.loads(data)


def save_wine_model(path: Path, **kwargs) -> Path:
    import evtrack

    x, _ = wine_data()
    evtrack.sklearn.save_model(wine_model(), str(path), input_example=x.head(3), **kwargs)
    return path
