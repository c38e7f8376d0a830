"""Path validation answers MLflow's exact ``INVALID_PARAMETER_VALUE: "Invalid path"`` on
every route that takes an artifact path (MLflow's clients and tests match the message)."""

from __future__ import annotations

import pytest
from conftest import error_of, q

pytestmark = pytest.mark.mlflow

# evtrack also refuses backslashes, which MLflow accepts on POSIX: stricter on purpose.
BAD = ["../etc/passwd", "a/../../b", "/etc/passwd", "%2E%2E/x", "x#y", "file:///etc/passwd"]


@pytest.fixture(scope="module")
def pair(servers):
    servers.seed("paths", {"path-1": {}})
    return servers


@pytest.mark.parametrize("bad", BAD)
@pytest.mark.parametrize(
    "route",
    ["/api/2.0/mlflow/artifacts/list?", "/get-artifact?", "/ajax-api/2.0/mlflow/artifacts/list?"],
)
def test_invalid_path_get_routes(pair, route, bad):
    ml, ev = pair.both("GET", route + q(run_id="{run:path-1}", path=bad))
    assert error_of(ml) == (400, "INVALID_PARAMETER_VALUE", "Invalid path")
    assert error_of(ev) == error_of(ml)


@pytest.mark.parametrize("bad", BAD)
def test_invalid_path_upload(pair, bad):
    ml, ev = pair.both(
        "POST",
        "/ajax-api/2.0/mlflow/upload-artifact?" + q(run_uuid="{run:path-1}", path=bad),
        data=b"x",
        content_type="application/octet-stream",
    )
    assert error_of(ml) == (400, "INVALID_PARAMETER_VALUE", "Invalid path")
    assert error_of(ev) == error_of(ml)


@pytest.mark.parametrize("bad", ["../x", "a/../../x"])
def test_invalid_path_proxy_listing(pair, bad):
    ml, ev = pair.both("GET", "/api/2.0/mlflow-artifacts/artifacts?" + q(path=bad))
    assert error_of(ml) == (400, "INVALID_PARAMETER_VALUE", "Invalid path")
    assert error_of(ev) == error_of(ml)
