"""``evtrack run``: a thin wrapper over :func:`evtrack.projects.run`."""

from __future__ import annotations

import signal
import sys
from collections.abc import Mapping
from typing import Any, TypedDict

import click

from evtrack.cli.context import _Context, pass_ctx
from evtrack.errors import InvalidParameterValue

__all__ = ["run_command"]

_MANAGERS = click.Choice(["local", "uv", "virtualenv", "conda", "docker"])


class _RunOptions(TypedDict):
    """What `evtrack run` passes to both runner.run and runner.detach."""

    entry_point: str
    version: str | None
    parameters: Mapping[str, Any] | None
    docker_args: Mapping[str, str | bool] | None
    experiment_name: str | None
    experiment_id: str | None
    env_manager: str | None
    run_id: str | None
    run_name: str | None
    build_image: bool
    storage_dir: str | None
    tracking_uri: str | None


def _pairs(values: tuple[str, ...], option: str, flags_ok: bool) -> dict[str, str | bool]:
    out: dict[str, str | bool] = {}
    for value in values:
        name, sep, text = value.partition("=")
        if not name or (not sep and not flags_ok):
            raise InvalidParameterValue(f"{option} {value!r} must look like name=value.")
        out[name] = text if sep else True
    return out


@click.command("run")
@click.argument("uri")
@click.option(
    "--entry-point",
    "-e",
    default="main",
    show_default=True,
    help="Entry point name, or a .py/.sh file of the project.",
)
@click.option("--version", "-v", default=None, help="Git branch, tag or commit to run.")
@click.option(
    "--param-list",
    "-P",
    multiple=True,
    metavar="NAME=VALUE",
    help="A parameter; repeatable. Undeclared ones are passed as --NAME VALUE.",
)
@click.option(
    "--docker-args",
    "-A",
    multiple=True,
    metavar="NAME[=VALUE]",
    help="A `docker run` flag (-A gpus=all, -A privileged); repeatable.",
)
@click.option("--experiment-name", default=None, help="Experiment to run in (created if missing).")
@click.option("--experiment-id", default=None, help="Experiment id to run in.")
@click.option(
    "--env-manager",
    type=_MANAGERS,
    default=None,
    help="Environment to run in. Default: docker for docker_env, conda for conda.yaml when conda is installed, else uv when installed, else virtualenv; local when the project has no environment file.",
)
@click.option(
    "--storage-dir",
    default=None,
    type=click.Path(file_okay=False),
    help="Where `path` parameters given as URLs are downloaded.",
)
@click.option("--run-id", default=None, help="Record into this existing run instead of a new one.")
@click.option("--run-name", default=None, help="Name of the new run.")
@click.option(
    "--build-image",
    is_flag=True,
    help="docker: build an image with the project in it (from its Dockerfile if it has one) and run that.",
)
@click.option(
    "--detach", is_flag=True, help="Start the run in the background, print its id and return."
)
@pass_ctx
def run_command(
    obj: _Context,
    uri: str,
    entry_point: str,
    version: str | None,
    param_list: tuple[str, ...],
    docker_args: tuple[str, ...],
    experiment_name: str | None,
    experiment_id: str | None,
    env_manager: str | None,
    storage_dir: str | None,
    run_id: str | None,
    run_name: str | None,
    build_image: bool,
    detach: bool,
) -> None:
    """Run an MLflow project (a folder or git URI, with #subdirectory) as a recorded run.

    \b
    evtrack run examples/sklearn_elasticnet_wine -P alpha=0.5 --env-manager local
    evtrack run https://github.com/mlflow/mlflow-example.git --version master -P alpha=5
    """
    from evtrack.projects import runner

    kwargs: _RunOptions = {
        "entry_point": entry_point,
        "version": version,
        "parameters": _pairs(param_list, "-P", flags_ok=False),
        "docker_args": _pairs(docker_args, "-A", flags_ok=True),
        "experiment_name": experiment_name,
        "experiment_id": experiment_id,
        "env_manager": env_manager,
        "run_id": run_id,
        "run_name": run_name,
        "build_image": build_image,
        "storage_dir": storage_dir,
        "tracking_uri": obj.tracking_uri,
    }
    if detach:
        click.echo(runner.detach(uri, **kwargs))
        return
    # SIGTERM is handled like Ctrl-C: the child's group is stopped and the run ends KILLED.
    signal.signal(signal.SIGTERM, runner.raise_keyboard_interrupt)
    try:
        submitted = runner.run(uri, synchronous=False, **kwargs)
        ok = submitted.wait()
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(0 if ok else 1)
