"""What every command gets: the store-opening context, passed down from the root group."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from evtrack.tracking.client import MlflowClient

__all__ = ["pass_ctx", "store_options"]

F = TypeVar("F", bound=Callable[..., Any])


class _Context:
    def __init__(self, tracking_uri: str | None) -> None:
        self.tracking_uri = tracking_uri
        self._client: MlflowClient | None = None

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            from evtrack.store.log.layout import resolve_uri
            from evtrack.tracking.client import MlflowClient

            self._client = MlflowClient(resolve_uri(self.tracking_uri))
        return self._client


pass_ctx = click.make_pass_decorator(_Context)


def _set_store_uri(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value:  # the subcommand's own option beats the root group's --tracking-uri
        ctx.ensure_object(_Context).tracking_uri = value


def store_options(*, backend_store_uri: bool = False) -> Callable[[F], F]:
    """``--tracking-uri`` on a subcommand too (``evtrack ui --tracking-uri X``), plus
    MLflow's ``--backend-store-uri`` spelling on the commands where MLflow has it."""

    def decorate(fn: F) -> F:
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
