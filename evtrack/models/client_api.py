"""MLflow's client methods for logged models and the registry, mixed into
:class:`~evtrack.tracking.client.MlflowClient` (names and arguments as MLflow's)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from evtrack.models.entities import LoggedModel, ModelVersion, RegisteredModel

if TYPE_CHECKING:
    from evtrack.store.base import TrackingStore

__all__ = ["ModelsClientMixin"]


def _kv(items: Any) -> dict[str, str]:
    """Tags/params given as a dict or as MLflow entities with key/value."""
    if not items:
        return {}
    if isinstance(items, dict):
        return {str(k): str(v) for k, v in items.items()}
    return {str(i.key): str(i.value) for i in items}


class ModelsClientMixin:
    store: TrackingStore  # set by the client this is mixed into

    @property
    def _models(self):
        # the implementation follows the client's tracking store
        from evtrack.store.rest.store import RestStore

        store = self.store
        if isinstance(store, RestStore):
            from evtrack.store.rest.models import RestModelStore

            return RestModelStore(store)
        from evtrack.store.log.models import ModelStore
        from evtrack.store.log.store import LogStore

        if not isinstance(store, LogStore):  # a client given some other TrackingStore
            from evtrack.errors import StoreError

            raise StoreError(
                f"{type(store).__name__} keeps no logged models or registry: models need "
                "an event-log store or an evtrack server."
            )
        return ModelStore(store)

    # logged models
    def create_logged_model(
        self, experiment_id: str, name: str | None = None, source_run_id: str | None = None,
        tags: Any = None, params: Any = None, model_type: str | None = None,
    ) -> LoggedModel:  # fmt: skip
        return self._models.create_logged_model(
            experiment_id, name, source_run_id, _kv(tags), _kv(params), model_type
        )

    def get_logged_model(self, model_id: str) -> LoggedModel:
        return self._models.get_logged_model(model_id)

    def search_logged_models(
        self, experiment_ids: list[str], filter_string: str | None = None,
        max_results: int | None = None, order_by: list[dict[str, Any]] | None = None,
        page_token: str | None = None, **_: Any,
    ) -> list[LoggedModel]:  # fmt: skip
        """A page (``.token`` for the next) ordered by MLflow 3's ``order_by`` dicts."""
        return self._models.search_logged_models(
            experiment_ids, filter_string, max_results, order_by, page_token
        )

    def finalize_logged_model(self, model_id: str, status: Any) -> LoggedModel:
        return self._models.finalize_logged_model(model_id, str(getattr(status, "name", status)))

    def set_logged_model_tags(self, model_id: str, tags: dict[str, Any]) -> None:
        self._models.set_logged_model_tags(model_id, _kv(tags))

    def delete_logged_model_tag(self, model_id: str, key: str) -> None:
        self._models.delete_logged_model_tag(model_id, key)

    def log_model_params(self, model_id: str, params: dict[str, Any]) -> None:
        self._models.log_model_params(model_id, _kv(params))

    def delete_logged_model(self, model_id: str) -> None:
        self._models.delete_logged_model(model_id)

    # registered models
    def create_registered_model(
        self, name: str, tags: dict[str, Any] | None = None, description: str | None = None
    ) -> RegisteredModel:
        return self._models.create_registered_model(name, _kv(tags), description)

    def get_registered_model(self, name: str) -> RegisteredModel:
        return self._models.get_registered_model(name)

    def search_registered_models(
        self, filter_string: str | None = None, max_results: int | None = None,
        order_by: list[str] | None = None, page_token: str | None = None, **_: Any,
    ) -> list[RegisteredModel]:  # fmt: skip
        """A page (``.token`` for the next), ordered by MLflow's ``order_by`` strings."""
        return self._models.search_registered_models(
            filter_string, max_results, order_by, page_token
        )

    def update_registered_model(self, name: str, description: str | None = None) -> RegisteredModel:
        return self._models.update_registered_model(name, description)

    def rename_registered_model(self, name: str, new_name: str) -> RegisteredModel:
        return self._models.rename_registered_model(name, new_name)

    def delete_registered_model(self, name: str) -> None:
        self._models.delete_registered_model(name)

    def set_registered_model_tag(self, name: str, key: str, value: Any) -> None:
        self._models.set_registered_model_tag(name, key, str(value))

    def delete_registered_model_tag(self, name: str, key: str) -> None:
        self._models.delete_registered_model_tag(name, key)

    # versions and aliases
    def create_model_version(
        self, name: str, source: str, run_id: str | None = None, tags: dict[str, Any] | None = None,
        run_link: str | None = None, description: str | None = None, model_id: str | None = None,
        **_: Any,
    ) -> ModelVersion:  # fmt: skip
        return self._models.create_model_version(
            name, source, run_id, _kv(tags), run_link, description, model_id
        )

    def get_model_version(self, name: str, version: str | int) -> ModelVersion:
        return self._models.get_model_version(name, version)

    def search_model_versions(
        self, filter_string: str | None = None, max_results: int | None = None,
        order_by: list[str] | None = None, page_token: str | None = None, **_: Any,
    ) -> list[ModelVersion]:  # fmt: skip
        """A page (``.token`` for the next), ordered by MLflow's ``order_by`` strings."""
        return self._models.search_model_versions(filter_string, max_results, order_by, page_token)

    def update_model_version(
        self, name: str, version: str | int, description: str | None = None
    ) -> ModelVersion:
        return self._models.update_model_version(name, version, description)

    def delete_model_version(self, name: str, version: str | int) -> None:
        self._models.delete_model_version(name, version)

    def set_model_version_tag(self, name: str, version: str | int, key: str, value: Any) -> None:
        self._models.set_model_version_tag(name, version, key, str(value))

    def delete_model_version_tag(self, name: str, version: str | int, key: str) -> None:
        self._models.delete_model_version_tag(name, version, key)

    def set_registered_model_alias(self, name: str, alias: str, version: str | int) -> None:
        self._models.set_registered_model_alias(name, alias, version)

    def delete_registered_model_alias(self, name: str, alias: str) -> None:
        self._models.delete_registered_model_alias(name, alias)

    def get_model_version_by_alias(self, name: str, alias: str) -> ModelVersion:
        return self._models.get_model_version_by_alias(name, alias)

    def get_model_version_download_uri(self, name: str, version: str | int) -> str:
        from evtrack.models.registry_uri import source_uri

        return source_uri(self, self.get_model_version(name, version).source)
