"""MLflow's environment variables work when evtrack's own are unset (issue 12)."""

from __future__ import annotations

import pytest

import evtrack
from evtrack import settings


@pytest.mark.parametrize(
    "name, mlflow_env",
    [
        ("tracking_uri", "MLFLOW_TRACKING_URI"),
        ("experiment_name", "MLFLOW_EXPERIMENT_NAME"),
        ("experiment_id", "MLFLOW_EXPERIMENT_ID"),
        ("run_id", "MLFLOW_RUN_ID"),
        ("tracking_token", "MLFLOW_TRACKING_TOKEN"),
        ("tracking_username", "MLFLOW_TRACKING_USERNAME"),
        ("tracking_password", "MLFLOW_TRACKING_PASSWORD"),
    ],
)
def test_mlflow_spelling_is_a_fallback(monkeypatch, name, mlflow_env):
    setting = next(s for s in settings.SETTINGS if s.name == name)
    monkeypatch.delenv(setting.env, raising=False)
    monkeypatch.setenv(mlflow_env, "from-mlflow")
    assert settings.get(name) == "from-mlflow"
    monkeypatch.setenv(setting.env, "from-evtrack")
    assert settings.get(name) == "from-evtrack"  # evtrack's own variable wins
    monkeypatch.setenv(setting.env, "")
    assert settings.get(name) == "from-mlflow"  # empty means unset, as for every setting


def test_mlflow_variables_drive_the_fluent_api(monkeypatch, tmp_path):
    monkeypatch.delenv("EVTRACK_TRACKING_URI")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"evtrack://{tmp_path}/mlstore")
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "from-env")
    with evtrack.start_run() as run:
        evtrack.log_param("a", "1")
    client = evtrack.MlflowClient(str(tmp_path / "mlstore"))
    exp = client.get_experiment_by_name("from-env")
    assert (
        exp is not None and client.get_run(run.info.run_id).info.experiment_id == exp.experiment_id
    )
    monkeypatch.setenv("MLFLOW_RUN_ID", run.info.run_id)
    with evtrack.start_run() as resumed:
        evtrack.log_param("b", "2")
    assert resumed.info.run_id == run.info.run_id
    assert client.get_run(run.info.run_id).data.params == {"a": "1", "b": "2"}


def test_subcommands_take_the_store_option(tmp_path):
    from click.testing import CliRunner

    from evtrack.cli.main import main

    store = str(tmp_path / "sub")
    runner = CliRunner()
    made = runner.invoke(main, ["experiments", "create", "-n", "here", "--tracking-uri", store])
    assert made.exit_code == 0, made.output
    listed = runner.invoke(main, ["experiments", "search", "--tracking-uri", store])
    assert "here" in listed.output
    # MLflow's spelling where MLflow has it (`mlflow gc --backend-store-uri`).
    cleaned = runner.invoke(main, ["gc", "--backend-store-uri", store])
    assert cleaned.exit_code == 0 and "deleted" in cleaned.output
    assert evtrack.MlflowClient(store).get_experiment_by_name("here") is not None
    assert "--backend-store-uri" in runner.invoke(main, ["ui", "--help"]).output


def test_mlflow_tracking_uri_reaches_the_cli(monkeypatch, tmp_path):
    from click.testing import CliRunner

    from evtrack.cli.main import main

    monkeypatch.delenv("EVTRACK_TRACKING_URI")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"evtrack://{tmp_path}/viaenv")
    result = CliRunner().invoke(main, ["experiments", "create", "-n", "env"])
    assert result.exit_code == 0, result.output
    assert evtrack.MlflowClient(str(tmp_path / "viaenv")).get_experiment_by_name("env")
