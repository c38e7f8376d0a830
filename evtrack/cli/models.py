"""``evtrack models``: serve, batch-predict, and (with the registry) register, list, alias.

Thin wrappers: each command calls one function of :mod:`evtrack.models`.
"""

from __future__ import annotations

from typing import Any

import click

from evtrack.cli.context import pass_ctx

__all__ = ["models"]


@click.group()
def models() -> None:
    """Serve models, score files, and manage logged and registered models."""


@models.command("serve")
@click.option("--model-uri", "-m", required=True, help="runs:/RUN/PATH, models:/…, a path or URL.")
@click.option("--port", "-p", default=5000, show_default=True, type=int)
@click.option("--host", "-h", default="127.0.0.1", show_default=True)
@click.option("--workers", "-w", default=1, show_default=True, type=int, help="Worker processes.")
@click.option(
    "--timeout", "-t", default=60.0, show_default=True, type=float, help="Seconds per request."
)
@click.option(
    "--env-manager",
    type=click.Choice(["local", "uv", "virtualenv"]),
    default="local",
    show_default=True,
    help="local: this interpreter; uv/virtualenv: a cached env built from the model's requirements.",
)
@click.option(
    "--batch-max-size",
    default=0,
    show_default=True,
    type=int,
    help="Rows per merged call (0: no batching).",
)
@click.option(
    "--batch-max-ms",
    default=0.0,
    show_default=True,
    type=float,
    help="Longest wait to fill a batch.",
)
@click.option(
    "--max-body-size", default=64 * 1024 * 1024, show_default=True, type=int, help="Bytes."
)
@click.option("--name", default=None, help="Model name in the V2 routes (default: from the URI).")
@pass_ctx
def serve_command(
    obj,
    model_uri: str,
    port: int,
    host: str,
    workers: int,
    timeout: float,
    env_manager: str,
    batch_max_size: int,
    batch_max_ms: float,
    max_body_size: int,
    name: str | None,
) -> None:
    """Serve a model over HTTP: /invocations, /ping, /health, /version, /metrics, /v2/…"""
    from evtrack.models.scoring.server import serve

    serve(
        model_uri,
        host=host,
        port=port,
        workers=workers,
        timeout=timeout,
        env_manager=env_manager,
        batch_max_size=batch_max_size,
        batch_max_ms=batch_max_ms,
        max_body_bytes=max_body_size,
        name=name,
        tracking_uri=obj.tracking_uri,
    )


@models.command("predict")
@click.option("--model-uri", "-m", required=True)
@click.option("--input-path", "-i", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--output-path", "-o", default=None, help="Default: stdout.")
@click.option(
    "--content-type",
    "-t",
    default=None,
    type=click.Choice(["json", "csv", "parquet"]),
    help="Input format (default: from the extension).",
)
@click.option(
    "--output-format", "-f", default="json", show_default=True, type=click.Choice(["json", "csv"])
)
@click.option("--batch-rows", default=65536, show_default=True, type=int, help="Rows per batch.")
@pass_ctx
def predict_command(
    obj,
    model_uri: str,
    input_path: str,
    output_path: str | None,
    content_type: str | None,
    output_format: str,
    batch_rows: int,
) -> None:
    """Score a JSON, CSV or Parquet file; Parquet and CSV stream in batches."""
    from evtrack.models.batch import predict_file

    predict_file(
        model_uri,
        input_path,
        output_path,
        content_type=content_type,
        output_format=output_format,
        batch_rows=batch_rows,
        tracking_uri=obj.tracking_uri,
    )


@models.command("register")
@click.option(
    "--model-uri", "-m", required=True, help="runs:/RUN/PATH, models:/m-…, a path or URL."
)
@click.option("--name", "-n", required=True, help="Registered model name (created if missing).")
@pass_ctx
def register_command(obj, model_uri: str, name: str) -> None:
    """Register a model: a new version of NAME whose source is the URI."""
    from evtrack.models.registry_api import register_model

    mv = register_model(model_uri, name, client=obj.client)
    click.echo(
        f"Registered model '{mv.name}' version {mv.version} (models:/{mv.name}/{mv.version})"
    )


@models.command("list")
@click.option("--name", "-n", default=None, help="Show the versions of this registered model.")
@click.option(
    "--logged",
    "-x",
    "experiment_id",
    default=None,
    help="List the logged models of an experiment instead.",
)
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table")
@pass_ctx
def list_command(obj, name: str | None, experiment_id: str | None, fmt: str) -> None:
    """List registered models, the versions of one (-n), or logged models (-x)."""
    from evtrack.cli.main import _emit

    client = obj.client
    rows: list[tuple[Any, ...]]  # one tuple per listed item, shaped by what is listed
    if experiment_id is not None:
        found = client.search_logged_models([experiment_id])
        rows = [(m.model_id, m.name, m.status, m.source_run_id, m.artifact_location) for m in found]
        _emit(["model_id", "name", "status", "source_run_id", "artifact_location"], rows, fmt)
    elif name is not None:
        escaped = name.replace("'", "''")
        found = client.search_model_versions(f"name = '{escaped}'")
        rows = [(v.version, ",".join(v.aliases), v.source, v.run_id, v.model_id) for v in found]
        _emit(["version", "aliases", "source", "run_id", "model_id"], rows, fmt)
    else:
        found = client.search_registered_models()
        rows = [
            (
                m.name,
                m.latest_versions[0].version if m.latest_versions else "",
                ",".join(f"{a}={v}" for a, v in sorted(m.aliases.items())),
                m.description or "",
            )
            for m in found
        ]
        _emit(["name", "latest_version", "aliases", "description"], rows, fmt)


@models.command("alias")
@click.option("--name", "-n", required=True)
@click.option("--alias", "-a", required=True)
@click.option("--version", "-v", "version", default=None, help="Version the alias points to.")
@click.option("--delete", is_flag=True, help="Remove the alias.")
@pass_ctx
def alias_command(obj, name: str, alias: str, version: str | None, delete: bool) -> None:
    """Point ALIAS of a registered model at a version (models:/NAME@ALIAS), or --delete it."""
    if delete:
        obj.client.delete_registered_model_alias(name, alias)
        click.echo(f"Removed alias '{alias}' of '{name}'.")
        return
    if version is None:
        raise click.UsageError("Give --version, or --delete to remove the alias.")
    obj.client.set_registered_model_alias(name, alias, version)
    click.echo(f"models:/{name}@{alias} -> version {version}")
