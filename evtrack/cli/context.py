"""What every command gets: the store-opening context, passed down from the root group."""

from __future__ import annotations

import click

__all__ = ["pass_ctx"]


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
