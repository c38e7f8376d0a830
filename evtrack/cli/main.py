"""The ``evtrack`` command: a thin wrapper over the library.

Each command calls one public function and turns :class:`EvtrackError` into a
message on stderr and exit code 1. The root group resolves ``--tracking-uri`` /
``EVTRACK_TRACKING_URI`` once and passes a client down.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Callable, Sequence
from functools import wraps
from typing import Any

import click

from evtrack.errors import EvtrackError

__all__ = ["main"]


class _Context:
    def __init__(self, tracking_uri: str | None) -> None:
        self.tracking_uri = tracking_uri
        self._client = None

    @property
    def client(self):
        if self._client is None:
            from evtrack.store.log.layout import resolve_uri
            from evtrack.tracking.client import MlflowClient

            self._client = MlflowClient(resolve_uri(self.tracking_uri))
        return self._client


pass_ctx = click.make_pass_decorator(_Context)


def _set_store_uri(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value:  # the subcommand's own option beats the root group's --tracking-uri
        ctx.ensure_object(_Context).tracking_uri = value


def store_options(*, backend_store_uri: bool = False) -> Callable:
    """``--tracking-uri`` on a subcommand too (``evtrack ui --tracking-uri X``), plus
    MLflow's ``--backend-store-uri`` spelling on the commands where MLflow has it."""

    def decorate(fn: Callable) -> Callable:
        names = ["--tracking-uri"] + (["--backend-store-uri"] if backend_store_uri else [])
        return click.option(
            *names,
            "store_uri",
            default=None,
            expose_value=False,
            is_eager=True,
            callback=_set_store_uri,
            help="Store URL; overrides the top-level --tracking-uri.",
        )(fn)

    return decorate


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


def _json_value(value: Any) -> Any:
    # DECIMAL columns (e.g. the literal 1.5) come back as Decimal: JSON numbers, not text.
    from decimal import Decimal

    return float(value) if isinstance(value, Decimal) else str(value)


def _emit(columns: Sequence[str], rows: Sequence[Sequence[Any]], fmt: str) -> None:
    if fmt == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(rows)
    elif fmt == "json":
        click.echo(json.dumps([dict(zip(columns, r)) for r in rows], default=_json_value, indent=2))
    else:
        click.echo(_table(columns, rows))


_VIEW = click.Choice(["active_only", "deleted_only", "all"], case_sensitive=False)


def _view_type(view: str) -> int:
    from evtrack.entities import ViewType

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
@store_options()
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
@store_options()
@pass_ctx
@_errors
def experiments_search(obj: _Context, view: str, filter_string: str | None, fmt: str) -> None:
    """List experiments."""
    from evtrack.tracking.fluent import search_experiments  # noqa: F401 - same paging as the library

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
@store_options()
@pass_ctx
@_errors
def experiments_rename(obj: _Context, experiment_id: str, new_name: str) -> None:
    """Rename an experiment."""
    obj.client.rename_experiment(experiment_id, new_name)
    click.echo(f"Experiment with id {experiment_id} has been renamed to '{new_name}'.")


@experiments.command("delete")
@click.option("--experiment-id", "-x", required=True)
@store_options()
@pass_ctx
@_errors
def experiments_delete(obj: _Context, experiment_id: str) -> None:
    """Mark an experiment deleted (an event; `restore` undoes it)."""
    obj.client.delete_experiment(experiment_id)
    click.echo(f"Experiment with ID {experiment_id} has been deleted.")


@experiments.command("restore")
@click.option("--experiment-id", "-x", required=True)
@store_options()
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
@click.option(
    "--filter", "filter_string", default="", help='MLflow filter, e.g. "metrics.rmse < 0.8".'
)
@click.option("--order-by", multiple=True, help="e.g. 'metrics.rmse ASC'; repeatable.")
@click.option("--max-results", type=int, default=1000, show_default=True)
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table")
@store_options()
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
@store_options()
@pass_ctx
@_errors
def runs_describe(obj: _Context, run_id: str) -> None:
    """Print a run as JSON."""
    click.echo(json.dumps(obj.client.get_run(run_id).to_dictionary(), indent=2, default=str))


@runs.command("delete")
@click.option("--run-id", required=True)
@store_options()
@pass_ctx
@_errors
def runs_delete(obj: _Context, run_id: str) -> None:
    """Mark a run deleted (an event; `restore` undoes it)."""
    obj.client.delete_run(run_id)
    click.echo(f"Run with ID {run_id} has been deleted.")


@runs.command("restore")
@click.option("--run-id", required=True)
@store_options()
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
@store_options()
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
@store_options()
@pass_ctx
@_errors
def artifacts_download(
    obj: _Context, run_id: str, artifact_path: str, dst_path: str | None
) -> None:
    """Download a run's artifact file or folder; prints the local path."""
    click.echo(obj.client.download_artifacts(run_id, artifact_path, dst_path))


@artifacts.command("log-artifact")
@click.option("--local-file", "-l", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--run-id", "-r", required=True)
@click.option("--artifact-path", "-a", default=None)
@store_options()
@pass_ctx
@_errors
def artifacts_log_artifact(
    obj: _Context, local_file: str, run_id: str, artifact_path: str | None
) -> None:
    """Log a local file as an artifact of a run."""
    obj.client.log_artifact(run_id, local_file, artifact_path)
    click.echo(f"Logged artifact from local file {local_file} to artifact_path={artifact_path}")


# -- ui ---------------------------------------------------------------------------------


@main.command("ui")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=5000, show_default=True, type=int, help="Port (0: any free).")
@click.option("--threads", default=8, show_default=True, type=int, help="Worker threads.")
@store_options(backend_store_uri=True)
@pass_ctx
@_errors
def ui_command(obj: _Context, host: str, port: int, threads: int) -> None:
    """Serve the read-only web view of the store (see docs/web.md)."""
    from evtrack.web import serve

    serve(obj.tracking_uri, host=host, port=port, threads=threads)


# -- sql --------------------------------------------------------------------------------


@main.command("sql")
@click.argument("query")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table")
@store_options()
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


# -- server (evtrack/server) ------------------------------------------------------------


@main.command("server")
@click.option(
    "--backend-store-uri",
    default=None,
    help="Store URL (a folder, file://, s3://...). Default: --tracking-uri / ./evruns.",
)
@click.option(
    "--default-artifact-root",
    default=None,
    help="Artifact root for new experiments (any fsspec URL); clients read and write it "
    "directly, as with `mlflow server`. Default: the proxied --artifacts-destination.",
)
@click.option(
    "--artifacts-destination",
    default=None,
    help="Where the mlflow-artifacts proxy stores files (any fsspec URL); shown to clients "
    "as mlflow-artifacts:/. Default: the store's experiments/ folder.",
)
@click.option("--serve-artifacts/--no-serve-artifacts", default=True, show_default=True)
@click.option("--host", "-h", default="127.0.0.1", show_default=True)
@click.option("--port", "-p", default=5000, type=int, show_default=True)
@click.option(
    "--workers",
    "-w",
    default=1,
    type=int,
    show_default=True,
    help="Worker processes; more than 1 runs gunicorn.",
)
@click.option(
    "--auth-token",
    envvar="EVTRACK_SERVER_AUTH_TOKEN",
    default=None,
    help="Require 'Authorization: Bearer <token>' for writes.",
)
@click.option(
    "--users-file",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Require basic auth for writes; lines of user:password or user:sha256:<hex>.",
)
@click.option("--auth-reads", is_flag=True, help="Require credentials for reads too.")
@click.option("--read-only", is_flag=True, help="Refuse every write (403).")
@pass_ctx
@_errors
def server_command(
    obj: _Context,
    backend_store_uri: str | None,
    default_artifact_root: str | None,
    artifacts_destination: str | None,
    serve_artifacts: bool,
    host: str,
    port: int,
    workers: int,
    auth_token: str | None,
    users_file: str | None,
    auth_reads: bool,
    read_only: bool,
) -> None:
    """Serve MLflow's REST API, the artifact proxy and evtrack's own API."""
    from evtrack.server import Auth, run_server
    from evtrack.store.log.layout import resolve_uri

    auth = None
    if users_file:
        auth = Auth.from_users_file(users_file, token=auth_token, protect_reads=auth_reads)
    elif auth_token:
        auth = Auth(token=auth_token, protect_reads=auth_reads)
    run_server(
        resolve_uri(backend_store_uri or obj.tracking_uri),
        default_artifact_root,
        host=host,
        port=port,
        workers=workers,
        serve_artifacts=serve_artifacts,
        auth=auth,
        read_only=read_only,
        artifacts_destination=artifacts_destination,
    )


# -- maintenance: compact, gc, doctor -------------------------------------------------------


def _store(obj: _Context):
    from evtrack.store.log.layout import get_store, resolve_uri

    store = get_store(resolve_uri(obj.tracking_uri))
    store.ensure()
    return store


def _duration(text: str) -> float:
    """Seconds from '30d', '12h', '15m', '45s' or a plain number of seconds."""
    units = {"d": 86400, "h": 3600, "m": 60, "s": 1}
    text = text.strip().lower()
    try:
        if text and text[-1] in units:
            return float(text[:-1]) * units[text[-1]]
        return float(text)
    except ValueError:
        raise click.BadParameter(f"{text!r}: use e.g. 30d, 12h, 15m, 45s") from None


@main.command("compact")
@click.option("--run", "run_id", default=None, help="Compact one run.")
@click.option("--experiment", "experiment_id", default=None, help="Compact one experiment.")
@click.option("--all", "all_", is_flag=True, help="Compact every experiment (the default).")
@store_options()
@pass_ctx
@_errors
def compact_command(
    obj: _Context, run_id: str | None, experiment_id: str | None, all_: bool
) -> None:
    """Merge segments into sorted Parquet files and publish a new manifest."""
    from evtrack.store.log.layout.log import compaction

    store = _store(obj)
    if run_id:
        owner = experiment_id or store.experiment_of_run(run_id)
        if owner is None:
            from evtrack.errors import RunNotFound

            raise RunNotFound(f"Run with id={run_id} not found")
        results = [compaction.compact_run(store, owner, run_id)]
    elif experiment_id and not all_:
        results = [compaction.compact_experiment(store, experiment_id)]
    else:
        results = compaction.compact_all(store)
    for r in results:
        what = f"run {r.run_id}" if r.run_id else f"experiment {r.experiment_id}"
        if r.gave_up:
            state = "gave up (lost every race; nothing changed)"
        else:
            state = f"{r.segments} segments, {r.events} events -> manifest {r.version}"
        click.echo(f"{what}: {state} in {r.seconds:.3f}s")


@main.command("gc")
@click.option(
    "--older-than",
    default=None,
    help="Only purge runs deleted longer ago than this (30d, 12h, 15m, 45s). "
    "Default: every deleted run, as `mlflow gc`.",
)
@click.option("--grace", default=None, help="Grace period for replaced files (default: setting).")
@click.option("--keep-deleted-runs", is_flag=True, help="Do not purge deleted runs.")
@store_options(backend_store_uri=True)
@pass_ctx
@_errors
def gc_command(
    obj: _Context, older_than: str | None, grace: str | None, keep_deleted_runs: bool
) -> None:
    """Delete replaced segments and files, and purge deleted runs for good."""
    from evtrack.store.log.maintenance import gc

    report = gc(
        _store(obj),
        _duration(older_than) if older_than else None,
        grace_seconds=_duration(grace) if grace else None,
        delete_runs=not keep_deleted_runs,
    )
    click.echo(
        f"deleted {report.segments_deleted} segments, {report.compacted_files_deleted} "
        f"compacted files, {report.manifests_deleted} manifests, "
        f"{report.temp_files_deleted} temporary files, {len(report.runs_deleted)} runs"
    )
    for error in report.errors:
        click.echo(f"error: {error}", err=True)
    if report.errors:
        sys.exit(1)


@main.command("doctor")
@click.option("--repair", is_flag=True, help="Rebuild derived files from the segments.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@store_options()
@pass_ctx
@_errors
def doctor_command(obj: _Context, repair: bool, fmt: str) -> None:
    """Check every file of the store; exit 1 if a problem is left."""
    from dataclasses import asdict

    from evtrack.store.log.maintenance import doctor

    report = doctor(_store(obj), repair=repair)
    if fmt == "json":
        body = asdict(report)
        body["ok"] = report.ok
        click.echo(json.dumps(body, indent=2))
    else:
        _emit(
            ["severity", "kind", "path", "detail", "repaired"],
            [(f.severity, f.kind, f.path, f.detail, f.repaired) for f in report.findings],
            "table",
        )
        click.echo(
            f"{report.experiments} experiments, {report.segments} segments, "
            f"{report.compacted_files} compacted files, {report.events} events: "
            + ("ok" if report.ok else f"{len(report.problems)} problems")
        )
    if not report.ok:
        sys.exit(1)


@main.command("sync")
@click.argument("server_url", required=False)
@pass_ctx
@_errors
def sync_command(obj: _Context, server_url: str | None) -> None:
    """Send events spooled while an evtrack server was unreachable (idempotent)."""
    from evtrack.store.rest.sink import sync_spool

    url = server_url or obj.tracking_uri
    if not url or not url.startswith(("http://", "https://")):
        raise click.UsageError("Give the server URL (or --tracking-uri http://host:port).")
    sent, left = sync_spool(url)
    click.echo(f"Sent {sent} segment(s) to {url}; {left} still spooled.")
    if left:
        sys.exit(1)


# import / export (evtrack/cli/migrate.py)
from evtrack.cli.migrate import export_command, import_command  # noqa: E402 - needs helpers above

main.add_command(import_command)
main.add_command(export_command)


if __name__ == "__main__":  # pragma: no cover
    main()
