"""A relative ``artifact_location`` is made absolute against the server's working
directory, as ``mlflow server`` does (``resolve_uri_if_local``)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.mlflow


@pytest.mark.parametrize("location", ["my_location", "nested/dir"])
def test_relative_location_made_absolute(servers, location):
    for server in (servers.mlflow, servers.evtrack):
        exp_id = server.json(
            "POST",
            "/api/2.0/mlflow/experiments/create",
            {"name": f"rel-{location}", "artifact_location": location},
        )["experiment_id"]
        exp = server.json("GET", f"/api/2.0/mlflow/experiments/get?experiment_id={exp_id}")
        assert exp["experiment"]["artifact_location"] == str(server.cwd / location), server.url


def test_absolute_and_remote_locations_unchanged(servers, tmp_path):
    for server in (servers.mlflow, servers.evtrack):
        for i, location in enumerate([str(tmp_path / "abs"), "s3://bucket/prefix"]):
            exp_id = server.json(
                "POST",
                "/api/2.0/mlflow/experiments/create",
                {"name": f"abs-{i}", "artifact_location": location},
            )["experiment_id"]
            exp = server.json("GET", f"/api/2.0/mlflow/experiments/get?experiment_id={exp_id}")
            assert exp["experiment"]["artifact_location"] == location, server.url
