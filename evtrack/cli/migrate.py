"""``evtrack import`` and ``evtrack export``: thin wrappers over :mod:`evtrack.migrate`."""

from __future__ import annotations

import click

from evtrack.cli.context import _Context, pass_ctx, store_options
from evtrack.cli.main import _table

__all__ = ["export_command", "import_command"]


def _counts_table(counts: dict[str, tuple[int, int]], left: str, right: str) -> str:
    rows = [(name, a, b, "" if a == b else "DIFFERS") for name, (a, b) in counts.items()]
    return _table(["", left, right, ""], rows)


@click.command("import")
@click.argument("source")
@click.option(
    "--experiment",
    "experiments",
    multiple=True,
    help="Import only this experiment (by name); repeatable. Default: all of them.",
)
@click.option("--no-artifacts", is_flag=True, help="Copy runs without their artifact files.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Progress bar.")
@store_options()
@pass_ctx
def import_command(
    obj: _Context, source: str, experiments: tuple[str, ...], no_artifacts: bool, progress: bool
) -> None:
    """Import an MLflow store into the evtrack store.

    SOURCE is an MLflow file store folder (./mlruns, also MLflow 1.x layouts), a database
    URI MLflow accepts (sqlite:///mlflow.db, postgresql://...) or an MLflow server URL
    (http://host:5000). Resumable and idempotent: run it again after an interruption, or
    to pick up new runs; nothing is imported twice.
    """
    from evtrack.migrate import import_mlflow
    from evtrack.store.log.layout import resolve_uri

    report = import_mlflow(
        source,
        resolve_uri(obj.tracking_uri),
        list(experiments) or None,
        artifacts=not no_artifacts,
        progress=progress,
    )
    click.echo(
        f"Imported {report.runs_imported} runs ({report.runs_skipped} already complete), "
        f"{report.points_written} metric points, {report.artifacts_copied} artifact files "
        f"in {report.seconds:.1f}s into {report.destination}"
    )
    click.echo(f"Counted both stores in {report.count_seconds:.1f}s:")
    click.echo(_counts_table(report.counts, "MLflow", "evtrack"))


@click.command("export")
@click.option(
    "--to",
    "to",
    required=True,
    help="An empty folder (written as an MLflow file store) or sqlite:///path.db "
    "(through `mlflow migrate-filestore`; needs mlflow installed).",
)
@click.option(
    "--experiment",
    "experiments",
    multiple=True,
    help="Export only this experiment (by name); repeatable. Default: all of them.",
)
@click.option("--no-artifacts", is_flag=True, help="Leave artifact files behind.")
@store_options()
@pass_ctx
def export_command(
    obj: _Context, to: str, experiments: tuple[str, ...], no_artifacts: bool
) -> None:
    """Write the evtrack store as an MLflow store that MLflow 3 opens (mlflow ui,
    mlflow.search_runs). File stores need MLFLOW_ALLOW_FILE_STORE=true in MLflow 3."""
    from evtrack.migrate import export_mlflow
    from evtrack.store.log.layout import resolve_uri

    report = export_mlflow(
        to, resolve_uri(obj.tracking_uri), list(experiments) or None, artifacts=not no_artifacts
    )
    click.echo(
        f"Exported {report.experiments} experiments, {report.runs} runs, {report.points} "
        f"metric points, {report.artifacts} artifact files to {to} in {report.seconds:.1f}s"
    )
