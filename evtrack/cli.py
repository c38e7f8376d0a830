"""The ``evtrack`` command: a thin wrapper over the library.

Each command calls one public function and turns :class:`EvtrackError` into a
message on stderr and exit code 1. The root group resolves ``--tracking-uri`` /
``EVTRACK_TRACKING_URI`` once and passes a client down.
"""

from __future__ import annotations

import csv
import json
import sys
from functools import wraps
from typing import Any, Callable, Sequence

import click

from .errors import EvtrackError

__all__ = ["main"]


class _Context:
    def __init__(self, tracking_uri: str | None) -> None:
        self.tracking_uri = tracking_uri
        self._client = None

    @property
    def client(self):
        if self._client is None:
            from .client import MlflowClient
            from .store import resolve_uri

            self._client = MlflowClient(resolve_uri(self.tracking_uri))
        return self._client


pass_ctx = click.make_pass_decorator(_Context)


def _errors(fn: Callable) -> Callable:
    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except EvtrackError as exc:
            click.echo(f"Error ({exc.error_code}): {exc.message}", err=True)
            sys.exit(1)

    return wrapper


def _table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    text_rows = [["" if v is None else str(v) for v in row] for row in rows]
    widths = [len(c) for c in columns]
    for row in text_rows:
        widths = [max(w, len(v)) for w, v in zip(widths, row)]
    line = "  ".join(c.ljust(w) for c, w in zip(columns, widths))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in text_rows]
    return "\n".join(s.rstrip() for s in out)


def _emit(columns: Sequence[str], rows: Sequence[Sequence[Any]], fmt: str) -> None:
    if fmt == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(rows)
    elif fmt == "json":
        click.echo(json.dumps([dict(zip(columns, r)) for r in rows], default=str, indent=2))
    else:
        click.echo(_table(columns, rows))


_VIEW = click.Choice(["active_only", "deleted_only", "all"], case_sensitive=False)


def _view_type(view: str) -> int:
    from .entities import ViewType

    return ViewType.from_string(view)


@click.group()
@click.option(
    "--tracking-uri",
    envvar="EVTRACK_TRACKING_URI",
    default=None,
    help="Store URL: a folder (default ./evruns), file://, memory://, s3://bucket/prefix.",
)
@click.version_option(package_name="evtrack")
@click.pass_context
def main(ctx: click.Context, tracking_uri: str | None) -> None:
    """evtrack: experiment tracking on an append-only event log."""
    ctx.obj = _Context(tracking_uri)


# -- experiments ------------------------------------------------------------------------


@main.group()
def experiments() -> None:
    """Create, list, rename, delete and restore experiments."""


@experiments.command("create")
@click.option("--experiment-name", "-n", required=True, help="Name of the new experiment.")
@click.option("--artifact-location", "-l", default=None, help="Artifact root (any fsspec URL).")
@pass_ctx
@_errors
def experiments_create(obj: _Context, experiment_name: str, artifact_location: str | None) -> None:
    """Create an experiment and print its id."""
    experiment_id = obj.client.create_experiment(experiment_name, artifact_location)
    click.echo(f"Created experiment '{experiment_name}' with id {experiment_id}")


@experiments.command("search")
@click.option("--view", "-v", type=_VIEW, default="active_only", show_default=True)
@click.option("--filter", "filter_string", default=None, help="e.g. \"name LIKE 'wine%'\".")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table")
@pass_ctx
@_errors
def experiments_search(obj: _Context, view: str, filter_string: str | None, fmt: str) -> None:
    """List experiments."""
    from .fluent import search_experiments  # noqa: F401 - same paging as the library

    client = obj.client
    exps, token = [], None
    while True:
        page = client.search_experiments(_view_type(view), 1000, filter_string, None, token)
        exps.extend(page)
        token = page.token
        if not token:
            break
    _emit(
        ["experiment_id", "name", "artifact_location", "lifecycle_stage"],
        [(e.experiment_id, e.name, e.artifact_location, e.lifecycle_stage) for e in exps],
        fmt,
    )


@experiments.command("rename")
@click.option("--experiment-id", "-x", required=True)
@click.option("--new-name", required=True)
@pass_ctx
@_errors
def experiments_rename(obj: _Context, experiment_id: str, new_name: str) -> None:
    """Rename an experiment."""
    obj.client.rename_experiment(experiment_id, new_name)
    click.echo(f"Experiment with id {experiment_id} has been renamed to '{new_name}'.")


@experiments.command("delete")
@click.option("--experiment-id", "-x", required=True)
@pass_ctx
@_errors
def experiments_delete(obj: _Context, experiment_id: str) -> None:
    """Mark an experiment deleted (an event; `restore` undoes it)."""
    obj.client.delete_experiment(experiment_id)
    click.echo(f"Experiment with ID {experiment_id} has been deleted.")


@experiments.command("restore")
@click.option("--experiment-id", "-x", required=True)
@pass_ctx
@_errors
def experiments_restore(obj: _Context, experiment_id: str) -> None:
    """Restore a deleted experiment."""
    obj.client.restore_experiment(experiment_id)
    click.echo(f"Experiment with id {experiment_id} has been restored.")


# -- runs -------------------------------------------------------------------------------


@main.group()
def runs() -> None:
    """List, describe, delete and restore runs."""


@runs.command("list")
@click.option("--experiment-id", "-x", default="0", show_default=True)
@click.option("--view", "-v", type=_VIEW, default="active_only", show_default=True)
@click.option("--filter", "filter_string", default="", help="MLflow filter, e.g. \"metrics.rmse < 0.8\".")
@click.option("--order-by", multiple=True, help="e.g. 'metrics.rmse ASC'; repeatable.")
@click.option("--max-results", type=int, default=1000, show_default=True)
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table")
@pass_ctx
@_errors
def runs_list(
    obj: _Context,
    experiment_id: str,
    view: str,
    filter_string: str,
    order_by: tuple[str, ...],
    max_results: int,
    fmt: str,
) -> None:
    """List the runs of an experiment."""
    found = obj.client.search_runs(
        [experiment_id], filter_string, _view_type(view), max_results, list(order_by) or None
    )
    _emit(
        ["run_id", "run_name", "status", "start_time", "end_time"],
        [
            (r.info.run_id, r.info.run_name, r.info.status, r.info.start_time, r.info.end_time)
            for r in found
        ],
        fmt,
    )


@runs.command("describe")
@click.option("--run-id", required=True)
@pass_ctx
@_errors
def runs_describe(obj: _Context, run_id: str) -> None:
    """Print a run as JSON."""
    click.echo(json.dumps(obj.client.get_run(run_id).to_dictionary(), indent=2, default=str))


@runs.command("delete")
@click.option("--run-id", required=True)
@pass_ctx
@_errors
def runs_delete(obj: _Context, run_id: str) -> None:
    """Mark a run deleted (an event; `restore` undoes it)."""
    obj.client.delete_run(run_id)
    click.echo(f"Run with ID {run_id} has been deleted.")


@runs.command("restore")
@click.option("--run-id", required=True)
@pass_ctx
@_errors
def runs_restore(obj: _Context, run_id: str) -> None:
    """Restore a deleted run."""
    obj.client.restore_run(run_id)
    click.echo(f"Run with ID {run_id} has been restored.")


# -- artifacts --------------------------------------------------------------------------


@main.group()
def artifacts() -> None:
    """List, download and log run artifacts."""


@artifacts.command("list")
@click.option("--run-id", "-r", required=True)
@click.option("--artifact-path", "-a", default=None)
@pass_ctx
@_errors
def artifacts_list(obj: _Context, run_id: str, artifact_path: str | None) -> None:
    """List a run's artifacts (one folder level) as JSON."""
    infos = obj.client.list_artifacts(run_id, artifact_path)
    click.echo(
        json.dumps(
            [{"path": i.path, "is_dir": i.is_dir, "file_size": i.file_size} for i in infos],
            indent=2,
        )
    )


@artifacts.command("download")
@click.option("--run-id", "-r", required=True)
@click.option("--artifact-path", "-a", default="")
@click.option("--dst-path", "-d", default=None)
@pass_ctx
@_errors
def artifacts_download(obj: _Context, run_id: str, artifact_path: str, dst_path: str | None) -> None:
    """Download a run's artifact file or folder; prints the local path."""
    click.echo(obj.client.download_artifacts(run_id, artifact_path, dst_path))


@artifacts.command("log-artifact")
@click.option("--local-file", "-l", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--run-id", "-r", required=True)
@click.option("--artifact-path", "-a", default=None)
@pass_ctx
@_errors
def artifacts_log_artifact(
    obj: _Context, local_file: str, run_id: str, artifact_path: str | None
) -> None:
    """Log a local file as an artifact of a run."""
    obj.client.log_artifact(run_id, local_file, artifact_path)
    click.echo(f"Logged artifact from local file {local_file} to artifact_path={artifact_path}")


# -- sql --------------------------------------------------------------------------------


@main.command("sql")
@click.argument("query")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table")
@pass_ctx
@_errors
def sql_command(obj: _Context, query: str, fmt: str) -> None:
    """Run DuckDB SQL over the views: experiments, runs, params, tags, metrics,
    latest_metrics, artifacts, inputs, events."""
    import duckdb

    try:
        rel = obj.client.sql(query)
    except duckdb.Error as exc:
        click.echo(f"Error (INVALID_PARAMETER_VALUE): SQL failed: {exc}", err=True)
        sys.exit(1)
    if rel is None:
        return
    _emit(rel.columns, rel.fetchall(), fmt)


if __name__ == "__main__":  # pragma: no cover
    main()
