"""``POST /ajax-api/2.0/mlflow/upload-artifact`` and the legacy ``GET /get-artifact``."""

from __future__ import annotations

import pytest
from conftest import error_of, q

pytestmark = pytest.mark.mlflow

UPLOAD = "/ajax-api/2.0/mlflow/upload-artifact?"


@pytest.fixture(scope="module")
def pair(servers):
    servers.seed("uploads", {"up-1": {}})
    return servers


def test_upload_then_list_and_get(pair):
    data = b"col\n1\n2\n"
    ml, ev = pair.both(
        "POST",
        UPLOAD + q(run_uuid="{run:up-1}", path="tables/t.csv"),
        data=data,
        content_type="application/octet-stream",
    )
    assert ml.status == ev.status == 200
    ml, ev = pair.both(
        "GET", "/api/2.0/mlflow/artifacts/list?" + q(run_id="{run:up-1}", path="tables")
    )
    assert (
        ml.body["files"]
        == ev.body["files"]
        == [{"path": "tables/t.csv", "is_dir": False, "file_size": len(data)}]
    )
    ml, ev = pair.both("GET", "/get-artifact?" + q(run_id="{run:up-1}", path="tables/t.csv"))
    assert ml.status == ev.status == 200
    assert ml.raw == ev.raw == data
    assert ev.headers.get("X-Content-Type-Options") == ml.headers.get("X-Content-Type-Options")
    # An attachment with the same file name (evtrack quotes it, which RFC 6266 allows and
    # keeps names with ';' or spaces intact).
    assert ev.headers.get_filename() == ml.headers.get_filename() == "t.csv"
    assert ev.headers.get("Content-Disposition").startswith("attachment;")
    assert (
        ev.headers.get("Content-Type").split(";")[0] == ml.headers.get("Content-Type").split(";")[0]
    )
    ml, ev = pair.both("GET", "/get-artifact?" + q(run_uuid="{run:up-1}", path="tables/t.csv"))
    assert ml.raw == ev.raw == data


@pytest.mark.parametrize(
    "params, data",
    [
        ({"path": "a.txt"}, b"x"),
        ({"run_uuid": "{run:up-1}"}, b"x"),
        ({"run_uuid": "{run:up-1}", "path": "a.txt"}, b""),
        ({"run_uuid": "{run:up-1}", "path": "../a.txt"}, b"x"),
    ],
)
def test_upload_errors(pair, params, data):
    ml, ev = pair.both(
        "POST",
        UPLOAD + q(**params),
        data=data or None,
        content_type="application/octet-stream",
    )
    assert ev.status == 400
    assert error_of(ev) == error_of(ml)


def test_upload_too_large(pair):
    ml, ev = pair.both(
        "POST",
        UPLOAD + q(run_uuid="{run:up-1}", path="big.bin"),
        data=b"0" * (10 * 1024 * 1024 + 1),
        content_type="application/octet-stream",
    )
    assert ev.status == 400
    assert error_of(ev) == error_of(ml)
