"""``--default-artifact-root`` given explicitly: clients write there directly, as with
``mlflow server``; the ``mlflow-artifacts`` proxy serves ``--artifacts-destination``.
Checked with the stock mlflow client (its venv) against ``evtrack server`` over HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path

import pytest

from evtrack.server.testing import ServerProcess

pytestmark = pytest.mark.mlflow

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import json, mlflow
mlflow.set_experiment("arts")
with mlflow.start_run() as run:
    mlflow.log_text("direct", "d/file.txt")
client = mlflow.MlflowClient()
print(json.dumps({
    "run_id": run.info.run_id, "exp_id": run.info.experiment_id,
    "artifact_uri": client.get_run(run.info.run_id).info.artifact_uri,
    "back": mlflow.artifacts.load_text(run.info.artifact_uri + "/d/file.txt"),
}))
"""


def run_client(python: Path, url: str, cwd: Path) -> dict:
    proc = subprocess.run(
        [str(python), "-c", textwrap.dedent(SCRIPT)],
        env={**os.environ, "MLFLOW_TRACKING_URI": url},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_explicit_default_artifact_root_is_written_directly(mlflow_python, tmp_path):
    root = tmp_path / "direct-root"
    server = ServerProcess(
        str(tmp_path / "store"),
        ["--default-artifact-root", str(root), "--no-serve-artifacts"],
        env={"PYTHONPATH": str(ROOT)},
    )
    with server as url:
        out = run_client(mlflow_python, url, tmp_path)
    # The proxy is off, so the file can only have got there by the client writing it.
    where = root / out["exp_id"] / out["run_id"] / "artifacts" / "d" / "file.txt"
    assert where.read_text() == "direct" and out["back"] == "direct"
    assert out["artifact_uri"] == f"file://{root}/{out['exp_id']}/{out['run_id']}/artifacts"


def test_artifacts_destination_goes_through_the_proxy(mlflow_python, tmp_path):
    dest = tmp_path / "proxied"
    server = ServerProcess(
        str(tmp_path / "store"),
        ["--artifacts-destination", str(dest)],
        env={"PYTHONPATH": str(ROOT)},
    )
    with server as url:
        out = run_client(mlflow_python, url, tmp_path)
    assert out["artifact_uri"] == f"mlflow-artifacts:/{out['exp_id']}/{out['run_id']}/artifacts"
    where = dest / out["exp_id"] / out["run_id"] / "artifacts" / "d" / "file.txt"
    assert where.read_text() == "direct" and out["back"] == "direct"
