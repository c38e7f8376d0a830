"""A missing part fails the test run; only an explicit, local opt-out skips (required.py).

Each check runs a real child process (pytest, the preflight, scripts/test.sh) with one
part made missing: Chromium pointed at a path that does not exist, or the MLflow venv
at an empty folder.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from helpers import ROOT, subprocess_env

TESTS = ROOT / "tests"

NEEDS_BROWSER = """
import required

def test_needs_the_browser():
    required.playwright_sync_api()
"""


def run(cmd: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    environ = subprocess_env(**env)
    environ["PYTHONPATH"] = os.pathsep.join([str(TESTS), environ["PYTHONPATH"]])
    return subprocess.run(
        cmd, env=environ, capture_output=True, text=True, timeout=300, cwd=tmp_path
    )


def pytest_cmd(tmp_path: Path) -> list[str]:
    test = tmp_path / "test_needs.py"
    test.write_text(NEEDS_BROWSER)
    return [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", str(test)]


def test_a_missing_browser_fails_the_test(tmp_path: Path) -> None:
    proc = run(pytest_cmd(tmp_path), tmp_path, EVTRACK_CHROMIUM=str(tmp_path / "no-chromium"))
    assert proc.returncode == 1, proc.stdout
    assert "1 failed" in proc.stdout
    assert "no Chromium at" in proc.stdout and "EVTRACK_TEST_ALLOW_MISSING=browser" in proc.stdout


def test_an_explicit_opt_out_skips_with_the_reason(tmp_path: Path) -> None:
    proc = run(
        pytest_cmd(tmp_path),
        tmp_path,
        EVTRACK_CHROMIUM=str(tmp_path / "no-chromium"),
        EVTRACK_TEST_ALLOW_MISSING="browser,s3",
    )
    assert proc.returncode == 0, proc.stdout
    assert "1 skipped" in proc.stdout
    assert "allowed: EVTRACK_TEST_ALLOW_MISSING includes browser" in proc.stdout


def test_an_unknown_part_is_a_usage_error(tmp_path: Path) -> None:
    proc = run(pytest_cmd(tmp_path), tmp_path, EVTRACK_TEST_ALLOW_MISSING="browsr")
    assert proc.returncode != 0
    assert "unknown part(s) browsr" in proc.stdout + proc.stderr


def test_the_preflight_names_every_missing_part(tmp_path: Path) -> None:
    missing = {
        "EVTRACK_CHROMIUM": str(tmp_path / "no-chromium"),
        "EVTRACK_MLFLOW_VENV": str(tmp_path / "no-venv"),
    }
    proc = run([sys.executable, str(TESTS / "required.py")], tmp_path, **missing)
    assert proc.returncode == 1
    assert "browser  MISSING: no Chromium" in proc.stdout
    assert "mlflow   MISSING: no built MLflow venv" in proc.stdout
    assert "s3       ok" in proc.stdout
    allowed = run(
        [sys.executable, str(TESTS / "required.py")],
        tmp_path,
        EVTRACK_TEST_ALLOW_MISSING="mlflow,browser",
        **missing,
    )
    assert allowed.returncode == 0, allowed.stdout


def test_the_test_script_stops_before_pytest_when_a_part_is_missing(tmp_path: Path) -> None:
    """scripts/test.sh (what .ci/run runs) fails at its preflight, before any test."""
    proc = run(
        ["bash", str(ROOT / "scripts" / "test.sh"), "--no-install", "--co"],
        tmp_path,
        EVTRACK_CHROMIUM=str(tmp_path / "no-chromium"),
    )
    assert proc.returncode == 1
    assert "browser  MISSING" in proc.stdout
    assert "== running the test suite" not in proc.stdout
    ci = (ROOT / ".ci" / "run").read_text()
    assert 'exec bash scripts/test.sh "$@"' in ci  # CI runs the same command
