"""The outside parts the test suite needs, and the one way to run without one.

The suite checks evtrack against real things: MLflow itself (in its own virtualenv,
see ``mlflow_venv.py``), Chromium driven by Playwright (``test_browser.py``), an
S3 API server on loopback (moto, ``s3_server.py``) and a PostgreSQL server on loopback
(Debian's ``postgresql``, ``pg_server.py``). A test that needs a part that is
missing **fails**, naming the part and how to get it; it never skips on its own, so
a green run means every part was exercised.

On a machine where a part cannot be had (no root to install Chromium, no network for
the MLflow venv), opt out explicitly and locally::

    EVTRACK_TEST_ALLOW_MISSING=browser,mlflow bash scripts/test.sh
    bash scripts/test.sh --allow-missing=s3

Then the tests that need those parts are skipped, with the reason in pytest's
summary. ``all`` allows every part. CI never sets it.
"""

from __future__ import annotations

import os
import shutil

import pytest

#: Part name -> how to get it.
PARTS = {
    "mlflow": "python tests/mlflow_venv.py (builds MLflow's virtualenv; needs PyPI)",
    "browser": "apt-get install -y chromium (or set EVTRACK_CHROMIUM) and pip install playwright",
    "s3": "pip install 'moto[server]' s3fs (the test extra has both)",
    "postgres": "apt-get install -y postgresql (initdb, pg_ctl) and pip install "
    "'psycopg[binary]' (the test extra has it)",
}

ENV = "EVTRACK_TEST_ALLOW_MISSING"


def allowed_missing() -> set[str]:
    """Parts the person running the tests chose to do without (``EVTRACK_TEST_ALLOW_MISSING``)."""
    raw = os.environ.get(ENV, "")
    parts = {p.strip().lower() for p in raw.split(",") if p.strip()}
    if "all" in parts:
        return set(PARTS)
    unknown = parts - set(PARTS)
    if unknown:
        raise pytest.UsageError(
            f"{ENV}: unknown part(s) {', '.join(sorted(unknown))}; use any of "
            f"{', '.join(PARTS)} or all."
        )
    return parts


def missing(part: str, reason: str) -> None:
    """A needed part is missing: fail, or skip if it was explicitly allowed to be missing."""
    if part in allowed_missing():
        pytest.skip(f"{reason} (allowed: {ENV} includes {part})")
    pytest.fail(
        f"{reason}. The tests need it: {PARTS[part]}. To run without it on this machine "
        f"only, set {ENV}={part}.",
        pytrace=False,
    )


def chromium_path() -> str:
    return os.environ.get("EVTRACK_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


def playwright_sync_api():  # noqa: ANN201 - playwright's module
    """``playwright.sync_api``, once Chromium and Playwright are both here (else missing)."""
    allowed_missing()  # a misspelt opt-out is an error even when nothing is missing
    try:
        from playwright import sync_api
    except ImportError as exc:
        missing("browser", f"playwright is not installed ({exc})")
    if not os.path.exists(chromium_path()):
        missing("browser", f"no Chromium at {chromium_path()}")
    return sync_api


def _present() -> dict[str, str | None]:
    """Part -> None if present, else what is missing (checked without running anything)."""
    import importlib.util

    from mlflow_venv import _MARKER, venv_dir

    found: dict[str, str | None] = {}
    venv = venv_dir()
    found["mlflow"] = None if (venv / _MARKER).exists() else f"no built MLflow venv at {venv}"
    if importlib.util.find_spec("playwright") is None:
        found["browser"] = "the playwright package is not installed"
    elif not os.path.exists(chromium_path()):
        found["browser"] = f"no Chromium at {chromium_path()}"
    else:
        found["browser"] = None
    lacking = [m for m in ("moto", "s3fs", "flask_cors") if importlib.util.find_spec(m) is None]
    found["s3"] = f"not installed: {', '.join(lacking)}" if lacking else None
    import pg_server

    found["postgres"] = pg_server.problem()
    return found


if __name__ == "__main__":  # scripts/test.sh checks every part before running anything
    import sys

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    allowed = allowed_missing()
    failed = False
    for part, problem in _present().items():
        if problem is None:
            print(f"  {part:8} ok")
        elif part in allowed:
            print(f"  {part:8} MISSING, allowed by {ENV}: {problem}")
        else:
            print(f"  {part:8} MISSING: {problem}\n           get it: {PARTS[part]}")
            failed = True
    if failed:
        print(f"Required parts are missing (or set {ENV}=<parts> to do without them here).")
        sys.exit(1)
