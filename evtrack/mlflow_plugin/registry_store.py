"""MLflow's model-registry ``AbstractStore`` over an evtrack store's registry events.

``MLFLOW_TRACKING_URI=evtrack:///…`` (MLflow's registry URI defaults to the tracking
URI, or set ``MLFLOW_REGISTRY_URI`` to the same spelling) makes MLflow build
:class:`EvtrackModelRegistryStore` for ``mlflow.register_model``, aliases, tags and
``models:/name@alias`` loading. Each call goes to evtrack's client registry methods
(:mod:`evtrack.models.client_api`), so evtrack and MLflow read the same registered models
and versions.

Limits: stages (``transition_model_version_stage``, deprecated in MLflow) and prompts
are not implemented; searches take evtrack's registry filters (``name = '…'``,
``name LIKE '…'``, ``run_id = '…'``...) and no ``order_by``.
"""

from __future__ import annotations

from mlflow.entities.model_registry import (
    ModelVersion,
    ModelVersionTag,
    RegisteredModel,
    RegisteredModelAlias,
    RegisteredModelTag,
)
from mlflow.exceptions import MlflowException
from mlflow.protos import databricks_pb2
from mlflow.store.model_registry.abstract_store import AbstractStore

import evtrack
from evtrack.mlflow_plugin.tracking_store import _page, _translating
from evtrack.mlflow_plugin.uris import to_store_url
from evtrack.models import entities as ev_models

__all__ = ["EvtrackModelRegistryStore"]


def _version(mv: ev_models.ModelVersion) -> ModelVersion:
    return ModelVersion(
        name=mv.name,
        version=str(mv.version),
        creation_timestamp=mv.creation_timestamp,
        last_updated_timestamp=mv.last_updated_timestamp,
        description=mv.description,
        current_stage=mv.current_stage,
        source=mv.source,
        run_id=mv.run_id,
        status=mv.status,
        tags=[ModelVersionTag(k, v) for k, v in mv.tags.items()],
        run_link=mv.run_link,
        aliases=list(mv.aliases),
        model_id=mv.model_id,
    )


def _registered(rm: ev_models.RegisteredModel) -> RegisteredModel:
    return RegisteredModel(
        name=rm.name,
        creation_timestamp=rm.creation_timestamp,
        last_updated_timestamp=rm.last_updated_timestamp,
        description=rm.description,
        latest_versions=[_version(v) for v in rm.latest_versions],
        tags=[RegisteredModelTag(k, v) for k, v in rm.tags.items()],
        aliases=[RegisteredModelAlias(a, str(v)) for a, v in sorted(rm.aliases.items())],
    )


def _no_order_by(order_by) -> None:
    if order_by:
        raise MlflowException(
            "The evtrack plugin's registry searches take no order_by.",
            error_code=databricks_pb2.INVALID_PARAMETER_VALUE,
        )


class EvtrackModelRegistryStore(AbstractStore):
    """MLflow's registry interface, implemented over :class:`evtrack.MlflowClient`."""

    def __init__(self, store_uri=None, tracking_uri=None) -> None:
        super().__init__(store_uri, tracking_uri)
        self.store_uri = store_uri
        self.client = evtrack.MlflowClient(to_store_url(store_uri or tracking_uri))

    # -- registered models ------------------------------------------------------------

    @_translating
    def create_registered_model(self, name, tags=None, description=None, deployment_job_id=None):
        return _registered(
            self.client.create_registered_model(
                name, {t.key: t.value for t in tags or ()}, description
            )
        )

    @_translating
    def update_registered_model(self, name, description, deployment_job_id=None):
        return _registered(self.client.update_registered_model(name, description))

    @_translating
    def rename_registered_model(self, name, new_name):
        return _registered(self.client.rename_registered_model(name, new_name))

    @_translating
    def delete_registered_model(self, name):
        self.client.delete_registered_model(name)

    @_translating
    def search_registered_models(
        self, filter_string=None, max_results=None, order_by=None, page_token=None
    ):
        _no_order_by(order_by)
        found = self.client.search_registered_models(filter_string or None)
        return _page([_registered(m) for m in found], max_results, page_token)

    @_translating
    def get_registered_model(self, name):
        return _registered(self.client.get_registered_model(name))

    @_translating
    def get_latest_versions(self, name, stages=None):
        rm = self.client.get_registered_model(name)
        return [_version(v) for v in rm.latest_versions if not stages or v.current_stage in stages]

    @_translating
    def set_registered_model_tag(self, name, tag):
        self.client.set_registered_model_tag(name, tag.key, tag.value)

    @_translating
    def delete_registered_model_tag(self, name, key):
        self.client.delete_registered_model_tag(name, key)

    # -- versions -----------------------------------------------------------------------

    @_translating
    def create_model_version(
        self,
        name,
        source,
        run_id=None,
        tags=None,
        run_link=None,
        description=None,
        local_model_path=None,
        model_id=None,
    ):
        if model_id is None and source.startswith("models:/m-") and "/" not in source[8:]:
            model_id = source[len("models:/") :]
        if model_id and not run_id:  # as MLflow's own stores: the run that logged it
            run_id = self.client.get_logged_model(model_id).source_run_id
        return _version(
            self.client.create_model_version(
                name,
                source,
                run_id,
                {t.key: t.value for t in tags or ()},
                run_link,
                description,
                model_id,
            )
        )

    @_translating
    def update_model_version(self, name, version, description):
        return _version(self.client.update_model_version(name, version, description))

    def transition_model_version_stage(self, name, version, stage, archive_existing_versions):
        raise MlflowException(
            "Model version stages are not supported by the evtrack plugin: use aliases.",
            error_code=databricks_pb2.INVALID_PARAMETER_VALUE,
        )

    @_translating
    def delete_model_version(self, name, version):
        self.client.delete_model_version(name, version)

    @_translating
    def get_model_version(self, name, version):
        return _version(self.client.get_model_version(name, version))

    @_translating
    def get_model_version_download_uri(self, name, version):
        return self.client.get_model_version(name, version).source

    @_translating
    def search_model_versions(
        self, filter_string=None, max_results=None, order_by=None, page_token=None
    ):
        _no_order_by(order_by)
        found = self.client.search_model_versions(filter_string or None)
        return _page([_version(v) for v in found], max_results, page_token)

    @_translating
    def set_model_version_tag(self, name, version, tag):
        self.client.set_model_version_tag(name, version, tag.key, tag.value)

    @_translating
    def delete_model_version_tag(self, name, version, key):
        self.client.delete_model_version_tag(name, version, key)

    # -- aliases ------------------------------------------------------------------------

    @_translating
    def set_registered_model_alias(self, name, alias, version):
        self.client.set_registered_model_alias(name, alias, version)

    @_translating
    def delete_registered_model_alias(self, name, alias):
        self.client.delete_registered_model_alias(name, alias)

    @_translating
    def get_model_version_by_alias(self, name, alias):
        return _version(self.client.get_model_version_by_alias(name, alias))
