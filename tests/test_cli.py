"""The ``evtrack`` command: a thin wrapper over the library (click's CliRunner, plus one
real subprocess through the installed console script)."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import subprocess_env

import evtrack
from evtrack.cli.main import main


@pytest.fixture
def store(tmp_path) -> str:
    return str(tmp_path / "store")


@pytest.fixture
def cli(store):
    runner = CliRunner()

    def invoke(*args: str, code: int = 0):
        result = runner.invoke(main, ["--tracking-uri", store, *args], catch_exceptions=False)
        assert result.exit_code == code, result.output + result.stderr
        return result

    return invoke


@pytest.fixture
def run_id(store) -> str:
    client = evtrack.MlflowClient(store)
    run_id = client.create_run("0", run_name="cli-run").info.run_id
    client.log_param(run_id, "alpha", "0.5")
    client.log_metric(run_id, "rmse", 0.75, step=3)
    client.log_text(run_id, "hello", "notes/hello.txt")
    client.set_terminated(run_id)
    return run_id


def test_experiments_create_search_rename_delete_restore(cli, store):
    out = cli("experiments", "create", "--experiment-name", "wine").output
    assert "Created experiment 'wine' with id 1" in out
    rows = json.loads(cli("experiments", "search", "--format", "json").output)
    assert {(r["experiment_id"], r["name"]) for r in rows} == {("0", "Default"), ("1", "wine")}
    cli("experiments", "rename", "--experiment-id", "1", "--new-name", "red-wine")
    assert evtrack.MlflowClient(store).get_experiment("1").name == "red-wine"
    assert "has been deleted" in cli("experiments", "delete", "-x", "1").output
    table = cli("experiments", "search").output
    assert "red-wine" not in table and "Default" in table
    deleted = cli("experiments", "search", "--view", "deleted_only", "--format", "csv").output
    assert list(csv.DictReader(io.StringIO(deleted)))[0]["name"] == "red-wine"
    assert "has been restored" in cli("experiments", "restore", "-x", "1").output
    assert "red-wine" in cli("experiments", "search", "--filter", "name LIKE 'red%'").output


def test_experiments_create_with_artifact_location(cli, store, tmp_path):
    location = str(tmp_path / "elsewhere")
    cli("experiments", "create", "-n", "located", "-l", location)
    exp = evtrack.MlflowClient(store).get_experiment_by_name("located")
    assert exp.artifact_location.endswith("elsewhere")


def test_runs_list_describe_delete_restore(cli, run_id):
    table = cli("runs", "list", "--experiment-id", "0").output
    lines = table.splitlines()
    assert lines[0].split() == ["run_id", "run_name", "status", "start_time", "end_time"]
    assert set(lines[1]) <= {"-", " "}
    assert run_id in lines[2] and "cli-run" in lines[2] and "FINISHED" in lines[2]

    listed = json.loads(
        cli("runs", "list", "--format", "json", "--filter", "metrics.rmse < 1").output
    )
    assert [r["run_id"] for r in listed] == [run_id]
    assert (
        json.loads(cli("runs", "list", "--format", "json", "--filter", "metrics.rmse > 1").output)
        == []
    )

    described = json.loads(cli("runs", "describe", "--run-id", run_id).output)
    assert described["info"]["run_id"] == run_id
    assert described["info"]["status"] == "FINISHED"
    assert described["data"]["params"] == {"alpha": "0.5"}
    assert described["data"]["metrics"] == {"rmse": 0.75}

    cli("runs", "delete", "--run-id", run_id)
    assert run_id not in cli("runs", "list").output
    assert run_id in cli("runs", "list", "--view", "deleted_only").output
    cli("runs", "restore", "--run-id", run_id)
    assert run_id in cli("runs", "list").output


def test_runs_list_order_and_max_results(cli, store):
    client = evtrack.MlflowClient(store)
    for value in (0.3, 0.1, 0.2):
        client.log_metric(client.create_run("0").info.run_id, "m", value)
    rows = json.loads(
        cli(
            "runs", "list", "--order-by", "metrics.m ASC", "--max-results", "2", "--format", "json"
        ).output
    )
    assert len(rows) == 2
    values = [client.get_run(r["run_id"]).data.metrics["m"] for r in rows]
    assert values == [0.1, 0.2]


def test_artifacts_list_download_log(cli, run_id, tmp_path):
    listed = json.loads(cli("artifacts", "list", "--run-id", run_id).output)
    assert listed == [{"path": "notes", "is_dir": True, "file_size": None}]
    inner = json.loads(cli("artifacts", "list", "-r", run_id, "-a", "notes").output)
    assert inner == [{"path": "notes/hello.txt", "is_dir": False, "file_size": 5}]

    dst = tmp_path / "dl"
    path = cli(
        "artifacts", "download", "-r", run_id, "-a", "notes/hello.txt", "-d", str(dst)
    ).output
    assert Path(path.strip()).read_text() == "hello"

    src = tmp_path / "extra.csv"
    src.write_text("a,b\n1,2\n")
    cli("artifacts", "log-artifact", "--local-file", str(src), "--run-id", run_id, "-a", "data")
    inner = json.loads(cli("artifacts", "list", "-r", run_id, "-a", "data").output)
    assert [i["path"] for i in inner] == ["data/extra.csv"]


@pytest.mark.parametrize("fmt", ["table", "csv", "json"])
def test_sql_formats(cli, run_id, fmt):
    query = "select key, value, step from metrics order by key"
    out = cli("sql", query, "--format", fmt).output
    if fmt == "json":
        assert json.loads(out) == [{"key": "rmse", "value": 0.75, "step": 3}]
    elif fmt == "csv":
        assert list(csv.reader(io.StringIO(out))) == [
            ["key", "value", "step"],
            ["rmse", "0.75", "3"],
        ]
    else:
        lines = out.splitlines()
        assert lines[0].split() == ["key", "value", "step"]
        assert lines[2].split() == ["rmse", "0.75", "3"]


def test_sql_over_every_view(cli, run_id):
    for view in ("experiments", "runs", "params", "tags", "metrics", "latest_metrics", "events"):
        rows = json.loads(
            cli("sql", f"select count(*) as n from {view}", "--format", "json").output
        )
        assert rows[0]["n"] >= 1, view


def test_sql_json_keeps_nulls_and_types(cli, run_id):
    query = "select null as nothing, 1.5 as x, 2.5::double as d, 'a' as s, 3 as i"
    out = cli("sql", query, "--format", "json").output
    assert json.loads(out) == [{"nothing": None, "x": 1.5, "d": 2.5, "s": "a", "i": 3}]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["runs", "describe", "--run-id", "0123456789abcdef0123456789abcdef"],
            "RESOURCE_DOES_NOT_EXIST",
        ),
        (["runs", "describe", "--run-id", "../etc"], "INVALID_PARAMETER_VALUE"),
        (["experiments", "delete", "-x", "0"], "Cannot delete the default experiment"),
        (["experiments", "rename", "-x", "42", "--new-name", "x"], "No Experiment with id=42"),
        (["experiments", "create", "-n", "Default"], "RESOURCE_ALREADY_EXISTS"),
        (["runs", "list", "--filter", "metrics.m >>> 2"], "INVALID_PARAMETER_VALUE"),
        (["sql", "select * from no_such_view"], "no_such_view"),
        (["artifacts", "list", "-r", "0123456789abcdef0123456789abcdef"], "not found"),
    ],
)
def test_errors_exit_1_with_a_message(cli, args, message):
    result = cli(*args, code=1)
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_tracking_uri_from_environment(store, monkeypatch):
    monkeypatch.setenv("EVTRACK_TRACKING_URI", store)
    result = CliRunner().invoke(main, ["experiments", "create", "-n", "env"])
    assert result.exit_code == 0, result.output
    assert evtrack.MlflowClient(store).get_experiment_by_name("env") is not None


def test_help_lists_the_commands():
    out = CliRunner().invoke(main, ["--help"]).output
    for command in ("experiments", "runs", "artifacts", "sql"):
        assert command in out
    assert "--tracking-uri" in out


def test_real_console_script(store, run_id, tmp_path):
    exe = shutil.which("evtrack")
    command = [exe] if exe else [sys.executable, "-m", "evtrack.cli"]
    env = subprocess_env(store)
    proc = subprocess.run(
        [*command, "sql", "select run_id, status from runs", "--format", "csv"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=str(tmp_path),
    )
    assert proc.returncode == 0, proc.stderr
    assert list(csv.reader(io.StringIO(proc.stdout))) == [
        ["run_id", "status"],
        [run_id, "FINISHED"],
    ]
    failed = subprocess.run(
        [*command, "runs", "describe", "--run-id", "../x"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert failed.returncode == 1
    assert failed.stderr.startswith("Error (INVALID_PARAMETER_VALUE)")
    assert not os.path.exists(tmp_path / "evruns")  # the store came from the environment
