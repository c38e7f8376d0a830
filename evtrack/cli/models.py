"""``evtrack models``: serve, batch-predict, and (with the registry) register, list, alias.

Thin wrappers: each command calls one function of :mod:`evtrack.models`.
"""

from __future__ import annotations

import click

from evtrack.cli.main import _errors, pass_ctx

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
@_errors
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
@_errors
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
