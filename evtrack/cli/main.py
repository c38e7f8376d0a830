"""The ``evtrack`` command: a thin wrapper over the library.

Each command calls one public function. Errors are mapped once, in the root group
(:class:`_Main`): an :class:`EvtrackError` from any command becomes click's
``ClickException``, printed as ``Error (<error_code>): <message>`` on stderr with exit
code 1 and no traceback. The root group resolves ``--tracking-uri`` /
``EVTRACK_TRACKING_URI`` once and passes a client down.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import click

from evtrack.cli.context import _Context, pass_ctx, store_options
from evtrack.errors import EvtrackError

if TYPE_CHECKING:
    from evtrack.entities import Experiment

__all__ = ["main"]


class EvtrackCliError(click.ClickException):
    """An :class:`EvtrackError` as click shows errors: a line on stderr, exit code 1."""

    exit_code = 1

    def __init__(self, error: EvtrackError) -> None:
        super().__init__(error.message)
        self.error = error

    def show(self, file: Any = None) -> None:
        click.echo(f"Error ({self.error.error_code}): {self.error.message}", err=True)


class _Main(click.Group):
    """The root group: every command's :class:`EvtrackError` is mapped here, once."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except EvtrackError as exc:
            raise EvtrackCliError(exc) from exc


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


@click.group(cls=_Main)
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
def experiments_search(obj: _Context, view: str, filter_string: str | None, fmt: str) -> None:
    """List experiments."""
    from evtrack.tracking.fluent import search_experiments  # noqa: F401 - same paging as the library

    client = obj.client
    exps: list[Experiment] = []
    token: str | None = None
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
def experiments_rename(obj: _Context, experiment_id: str, new_name: str) -> None:
    """Rename an experiment."""
    obj.client.rename_experiment(experiment_id, new_name)
    click.echo(f"Experiment with id {experiment_id} has been renamed to '{new_name}'.")


@experiments.command("delete")
@click.option("--experiment-id", "-x", required=True)
@store_options()
@pass_ctx
def experiments_delete(obj: _Context, experiment_id: str) -> None:
    """Mark an experiment deleted (an event; `restore` undoes it)."""
    obj.client.delete_experiment(experiment_id)
    click.echo(f"Experiment with ID {experiment_id} has been deleted.")


@experiments.command("restore")
@click.option("--experiment-id", "-x", required=True)
@store_options()
@pass_ctx
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
def runs_describe(obj: _Context, run_id: str) -> None:
    """Print a run as JSON."""
    click.echo(json.dumps(obj.client.get_run(run_id).to_dictionary(), indent=2, default=str))


@runs.command("delete")
@click.option("--run-id", required=True)
@store_options()
@pass_ctx
def runs_delete(obj: _Context, run_id: str) -> None:
    """Mark a run deleted (an event; `restore` undoes it)."""
    obj.client.delete_run(run_id)
    click.echo(f"Run with ID {run_id} has been deleted.")


@runs.command("restore")
@click.option("--run-id", required=True)
@store_options()
@pass_ctx
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
@click.option(
    "--allowed-artifact-locations",
    multiple=True,
    metavar="URL",
    help="A URL prefix (besides the store's own folders) whose artifacts the view may "
    "open (repeatable).",
)
@store_options(backend_store_uri=True)
@pass_ctx
def ui_command(
    obj: _Context, host: str, port: int, threads: int, allowed_artifact_locations: tuple[str, ...]
) -> None:
    """Serve the read-only web view of the store (see docs/web.md)."""
    from evtrack.web import serve

    serve(
        obj.tracking_uri,
        host=host,
        port=port,
        threads=threads,
        allowed_artifact_locations=allowed_artifact_locations,
    )


# -- sql --------------------------------------------------------------------------------


@main.command("sql")
@click.argument("query")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table")
@store_options()
@pass_ctx
def sql_command(obj: _Context, query: str, fmt: str) -> None:
    """Run DuckDB SQL over the views: experiments, runs, params, tags, metrics,
    latest_metrics, artifacts, inputs, events."""
    import duckdb

    from evtrack.errors import InvalidParameterValue

    rel = obj.client.sql(query)
    if rel is None:
        return
    try:
        rows = rel.fetchall()
    except duckdb.Error as exc:  # raised while running, after the query was accepted
        raise InvalidParameterValue(f"SQL failed: {exc}") from None
    _emit(rel.columns, rows, fmt)


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
    "as mlflow-artifacts:/. Default: <store>/artifacts (beside the event log, never in it).",
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
    help="Require basic auth for writes; lines of user:password, user:sha256:<hex>, or "
    "user:read:... / user:write:... for a role (read users cannot write).",
)
@click.option(
    "--auth-reads",
    is_flag=True,
    help="Require credentials for reads too (the web view included). Needs --auth-token "
    "or --users-file.",
)
@click.option("--read-only", is_flag=True, help="Refuse every write (403).")
@click.option(
    "--allowed-artifact-locations",
    multiple=True,
    metavar="URL",
    help="A URL prefix clients may also use as an experiment's artifact location, and the "
    "server may open (repeatable). Default: only the artifact root.",
)
@click.option(
    "--sql-memory",
    default=None,
    metavar="SIZE",
    help="Memory budget of user SQL for the whole server (e.g. 512MB, 2GiB, 5%). "
    "Default: 1/8 of RAM, at most 4 GiB.",
)
@click.option(
    "--sql-concurrency", default=2, show_default=True, type=int, help="SQL queries at once."
)
@click.option(
    "--sql-max-answer-bytes",
    default="16MiB",
    show_default=True,
    metavar="SIZE",
    help="Largest SQL answer (JSON) the server sends.",
)
@click.option("--web/--no-web", default=True, show_default=True, help="Serve the web view at /.")
@pass_ctx
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
    allowed_artifact_locations: tuple[str, ...],
    sql_memory: str | None,
    sql_concurrency: int,
    sql_max_answer_bytes: str,
    web: bool,
) -> None:
    """Serve MLflow's REST API, the artifact proxy, evtrack's own API and the web view."""
    from evtrack.server import Auth, run_server
    from evtrack.server.sql_budget import parse_size
    from evtrack.store.log.layout import resolve_uri

    if auth_reads and not (auth_token or users_file):
        raise click.UsageError(
            "--auth-reads needs credentials to check: give --auth-token (or "
            "EVTRACK_SERVER_AUTH_TOKEN) or --users-file. Refusing to start an open server."
        )
    auth = None
    try:
        if users_file:
            auth = Auth.from_users_file(users_file, token=auth_token, protect_reads=auth_reads)
        elif auth_token:
            auth = Auth(token=auth_token, protect_reads=auth_reads)
    except ValueError as exc:  # a users file with no user, a bad role
        raise click.UsageError(str(exc)) from None
    run_server(
        resolve_uri(backend_store_uri or obj.tracking_uri),
        default_artifact_root,
        host=host,
        port=port,
        workers=workers,
        serve_artifacts=serve_artifacts,
        auth=auth,
        read_only=read_only,
        allowed_artifact_locations=allowed_artifact_locations,
        sql_memory=parse_size(sql_memory) if sql_memory else None,
        sql_concurrency=sql_concurrency,
        sql_max_answer_bytes=parse_size(sql_max_answer_bytes),
        web=web,
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
@click.option(
    "--watch",
    is_flag=True,
    help="Keep running: compact runs as they end and experiments past --threshold "
    "uncovered segments, until SIGTERM or Ctrl+C (see docs/storage.md).",
)
@click.option(
    "--threshold",
    default=256,
    show_default=True,
    type=click.IntRange(min=1),
    help="With --watch: uncovered segments that make an experiment worth compacting.",
)
@click.option(
    "--interval",
    default=2.0,
    show_default=True,
    type=click.FloatRange(min=0.05),
    help="With --watch: seconds between listings of an object store (local folders "
    "are watched with watchdog and need none).",
)
@store_options()
@pass_ctx
def compact_command(
    obj: _Context,
    run_id: str | None,
    experiment_id: str | None,
    all_: bool,
    watch: bool,
    threshold: int,
    interval: float,
) -> None:
    """Merge segments into sorted Parquet files and publish a new manifest."""
    from evtrack.store.log import compaction

    store = _store(obj)
    if watch:
        if run_id or experiment_id:
            raise click.UsageError("--watch watches the whole store: drop --run/--experiment.")
        _compact_watch(store, threshold, interval)
        return
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
        _echo_compaction(r)


def _echo_compaction(r: Any) -> None:
    if r.run_id:
        what = f"run {r.run_id}"
    elif r.batch:
        what = f"{r.runs} runs of experiment {r.experiment_id}"
    else:
        what = f"experiment {r.experiment_id}"
    if r.gave_up:
        state = "gave up (lost every race; nothing changed)"
    else:
        state = f"{r.segments} segments, {r.events} events -> manifest {r.version}"
    click.echo(f"{what}: {state} in {r.seconds:.3f}s")


def _compact_watch(store: Any, threshold: int, interval: float) -> None:
    """Run a :class:`~evtrack.store.log.compactor.Compactor` until SIGTERM/SIGINT."""
    import signal
    import threading

    from evtrack.store.log.compactor import Compactor

    stop = threading.Event()
    # Stop between compactions: the one in progress finishes (or is abandoned at a
    # safe point by the manifest protocol if the process is killed harder).
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    compactor = Compactor(store, threshold=threshold, interval=interval, on_result=_echo_compaction)

    def ready() -> None:
        how = "watchdog" if compactor.mode == "watchdog" else f"listing every {interval:g}s"
        click.echo(f"compact --watch: {store.uri} ({how}, threshold {threshold} segments)")
        sys.stdout.flush()

    report = compactor.run(stop, ready=ready)
    click.echo(
        f"compact --watch: stopped; compacted {report.runs} runs and {report.experiments} "
        f"experiments ({report.gave_up} lost races, {len(report.errors)} errors)"
    )


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


# -- subcommands in modules of their own (they import helpers from here) ------------------

from evtrack.cli.migrate import export_command, import_command  # noqa: E402
from evtrack.cli.models import models  # noqa: E402
from evtrack.cli.projects import run_command  # noqa: E402

main.add_command(models)
main.add_command(run_command)
main.add_command(import_command)
main.add_command(export_command)


if __name__ == "__main__":  # pragma: no cover
    main()
