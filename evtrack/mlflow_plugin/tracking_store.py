"""MLflow's ``AbstractStore`` over an evtrack store: stock ``mlflow`` logs to the event log.

``MLFLOW_TRACKING_URI=evtrack:///abs/path`` (or ``evtrack+s3://bucket/prefix``...) makes
MLflow build :class:`EvtrackTrackingStore`, which translates each store call into
evtrack's public client API (:class:`evtrack.MlflowClient`) and each evtrack entity
back into MLflow's. Nothing is copied: MLflow and evtrack read and write the same events.

Limits, frankly:

* Durability follows evtrack, not MLflow's file store: params, tags, run creation and
  termination are durable when the call returns; metric-only ``log_batch`` calls (what
  ``mlflow.log_metric`` becomes) are buffered and flushed in the background, at
  ``end_run`` and at process exit, so a ``kill -9`` can lose the last
  ``EVTRACK_FLUSH_INTERVAL`` seconds of metric points (see docs/settings.md).
* Logged models (``mlflow.<flavor>.log_model`` in MLflow 3) are evtrack's logged models
  (:mod:`evtrack.store.log.models`); the registry is
  :mod:`evtrack.mlflow_plugin.registry_store`. ``search_logged_models`` takes evtrack's
  filters and ``order_by`` but no dataset filters; ``log_outputs`` and the model half of
  ``log_inputs`` check the run and models exist and record nothing (as evtrack's server;
  ``source_run_id`` and each metric point's ``model_id`` link them), so runs carry no
  ``model_inputs`` / ``model_outputs``.
* Traces, assessments, GenAI datasets, scorers, prompts and gateway endpoints are not
  implemented (MLflow's base class raises ``NotImplementedError`` for them); see
  docs/mlflow-bridge.md.
* Runs from ``search_runs`` carry their dataset inputs as MLflow's SQL store's do (one
  query over the run index per page); their ``outputs`` (model outputs) are empty.
"""

from __future__ import annotations

import functools
import json

from mlflow.entities import (
    Dataset,
    DatasetInput,
    Experiment,
    ExperimentTag,
    InputTag,
    LoggedModel,
    LoggedModelParameter,
    LoggedModelStatus,
    LoggedModelTag,
    Metric,
    Param,
    Run,
    RunData,
    RunInfo,
    RunInputs,
    RunStatus,
    RunTag,
    ViewType,
)
from mlflow.exceptions import MlflowException
from mlflow.protos import databricks_pb2
from mlflow.store.entities.paged_list import PagedList
from mlflow.store.tracking.abstract_store import AbstractStore

import evtrack
from evtrack import entities as ev
from evtrack.errors import EvtrackError
from evtrack.mlflow_plugin.uris import absolute_artifact_location, to_evtrack_uri, to_store_url
from evtrack.models import entities as ev_models

__all__ = ["EvtrackTrackingStore"]


def _mlflow_error(exc: EvtrackError) -> MlflowException:
    code = getattr(databricks_pb2, exc.error_code, databricks_pb2.INTERNAL_ERROR)
    return MlflowException(exc.message, error_code=code)


def _translating(method):
    """Re-raise evtrack's errors as MLflow's, with the same error code."""

    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        try:
            return method(*args, **kwargs)
        except EvtrackError as exc:
            raise _mlflow_error(exc) from exc

    return wrapper


def _public_uri(url: str) -> str:
    """What MLflow sees as an artifact location: local paths stay ``file://`` (MLflow's
    own repository serves them); any other fsspec URL gets the ``evtrack+`` scheme so that
    our artifact repository (fsspec, same credentials as the store) serves it."""
    if not url or url.startswith("file://") or "://" not in url:
        return url
    return to_evtrack_uri(url)


def _experiment(exp: ev.Experiment) -> Experiment:
    return Experiment(
        experiment_id=exp.experiment_id,
        name=exp.name,
        artifact_location=_public_uri(exp.artifact_location),
        lifecycle_stage=exp.lifecycle_stage,
        tags=[ExperimentTag(k, v) for k, v in exp.tags.items()],
        creation_time=exp.creation_time,
        last_update_time=exp.last_update_time,
    )


def _run_info(info: ev.RunInfo) -> RunInfo:
    return RunInfo(
        run_id=info.run_id,
        experiment_id=info.experiment_id,
        user_id=info.user_id,
        status=info.status,
        start_time=info.start_time,
        end_time=info.end_time,
        lifecycle_stage=info.lifecycle_stage,
        artifact_uri=_public_uri(info.artifact_uri),
        run_name=info.run_name,
    )


def _input(item: ev.DatasetInput) -> DatasetInput:
    ds = item.dataset
    return DatasetInput(
        Dataset(
            name=ds.name,
            digest=ds.digest,
            source_type=ds.source_type,
            source=ds.source,
            schema=ds.schema,
            profile=ds.profile,
        ),
        [InputTag(t.key, t.value) for t in item.tags],
    )


def _logged_model(model: ev_models.LoggedModel) -> LoggedModel:
    metrics = [
        Metric(
            m.key,
            m.value,
            m.timestamp,
            m.step,
            model_id=m.model_id or model.model_id,
            dataset_name=m.dataset_name,
            dataset_digest=m.dataset_digest,
            run_id=m.run_id,
        )
        for m in model.metrics
    ]
    return LoggedModel(
        experiment_id=model.experiment_id,
        model_id=model.model_id,
        name=model.name,
        artifact_location=_public_uri(model.artifact_location),
        creation_timestamp=model.creation_timestamp,
        last_updated_timestamp=model.last_updated_timestamp,
        model_type=model.model_type,
        source_run_id=model.source_run_id,
        status=LoggedModelStatus(model.status),
        status_message=model.status_message,
        tags=[LoggedModelTag(k, v) for k, v in model.tags.items()],
        params=[LoggedModelParameter(k, v) for k, v in model.params.items()],
        metrics=metrics or None,
    )


def _page(items: list, max_results: int | None, page_token: str | None) -> PagedList:
    """One page of an already complete result, the token being the next offset."""
    offset = int(page_token) if page_token else 0
    if max_results is None:
        return PagedList(items[offset:], None)
    end = offset + max_results
    return PagedList(items[offset:end], str(end) if end < len(items) else None)


class EvtrackTrackingStore(AbstractStore):
    """MLflow's tracking store interface, implemented over :class:`evtrack.MlflowClient`."""

    def __init__(self, store_uri: str, artifact_uri: str | None = None) -> None:
        super().__init__()
        self.store_uri = store_uri
        self.client = evtrack.MlflowClient(to_store_url(store_uri))
        self.artifact_uri = artifact_uri

    # -- experiments -------------------------------------------------------------------

    @_translating
    def search_experiments(
        self,
        view_type=ViewType.ACTIVE_ONLY,
        max_results=1000,
        filter_string=None,
        order_by=None,
        page_token=None,
    ):
        found = self.client.search_experiments(
            view_type, max_results, filter_string, order_by, page_token
        )
        return PagedList([_experiment(e) for e in found], found.token)

    @_translating
    def create_experiment(self, name, artifact_location=None, tags=None):
        if artifact_location:  # relative: against the working directory, as MLflow's stores
            artifact_location = to_store_url(absolute_artifact_location(artifact_location))
        return self.client.create_experiment(
            name, artifact_location, {t.key: t.value for t in tags or ()}
        )

    @_translating
    def get_experiment(self, experiment_id):
        return _experiment(self.client.get_experiment(str(experiment_id)))

    @_translating
    def get_experiment_by_name(self, experiment_name):
        exp = self.client.get_experiment_by_name(experiment_name)
        return None if exp is None else _experiment(exp)

    @_translating
    def delete_experiment(self, experiment_id):
        self.client.delete_experiment(str(experiment_id))

    @_translating
    def restore_experiment(self, experiment_id):
        self.client.restore_experiment(str(experiment_id))

    @_translating
    def rename_experiment(self, experiment_id, new_name):
        self.client.rename_experiment(str(experiment_id), new_name)

    @_translating
    def set_experiment_tag(self, experiment_id, tag):
        self.client.set_experiment_tag(str(experiment_id), tag.key, tag.value)

    @_translating
    def delete_experiment_tag(self, experiment_id, key):
        self.client.delete_experiment_tag(str(experiment_id), key)

    # -- runs ----------------------------------------------------------------------------

    def _run(self, run: ev.Run, inputs: list[ev.DatasetInput] | None = None) -> Run:
        data = RunData(
            metrics=[Metric(m.key, m.value, m.timestamp, m.step) for m in run.data._metric_objs],
            params=[Param(k, v) for k, v in run.data.params.items()],
            tags=[RunTag(k, v) for k, v in run.data.tags.items()],
        )
        return Run(_run_info(run.info), data, RunInputs([_input(d) for d in inputs or ()]))

    def _inputs_of(self, experiment_ids: list[str], run_ids: list[str]) -> dict[str, list]:
        """Dataset inputs of a page of runs, as MLflow's SQL store fills ``search_runs``
        answers: one query over the run index for an event-log store, one call per run
        for any other (a REST store)."""
        store = self.client.store
        if not run_ids:
            return {}
        many = getattr(store, "get_runs_inputs", None)
        if many is not None:
            return many(experiment_ids, run_ids)
        return {rid: store.get_run_inputs(rid) for rid in run_ids}

    @_translating
    def get_run(self, run_id):
        run = self.client.get_run(run_id)
        inputs = sorted(self.client.store.get_run_inputs(run_id), key=lambda d: d.dataset.digest)
        return self._run(run, inputs)

    @_translating
    def create_run(self, experiment_id, user_id, start_time, tags, run_name):
        run = self.client.create_run(
            str(experiment_id),
            start_time=start_time,
            tags={t.key: t.value for t in tags or ()},
            run_name=run_name,
            user_id=user_id,
        )
        return Run(
            _run_info(run.info), RunData(tags=[RunTag(k, v) for k, v in run.data.tags.items()])
        )

    @_translating
    def update_run_info(self, run_id, run_status, end_time, run_name):
        status = run_status if isinstance(run_status, str) else RunStatus.to_string(run_status)
        if RunStatus.is_terminated(RunStatus.from_string(status)):
            self.client.set_terminated(run_id, status, end_time)
        else:
            self.client.update_run(run_id, status=status)
        if run_name:
            self.client.update_run(run_id, name=run_name)
        return _run_info(self.client.get_run(run_id).info)

    @_translating
    def delete_run(self, run_id):
        self.client.delete_run(run_id)

    @_translating
    def restore_run(self, run_id):
        self.client.restore_run(run_id)

    # -- logging ----------------------------------------------------------------------------

    @_translating
    def log_batch(self, run_id, metrics, params, tags):
        self.client.log_batch(
            run_id,
            # MLflow 3's links of a point to a logged model and a dataset ride along: the
            # client logs model-linked points to the model too (get_logged_model().metrics).
            metrics=[
                ev.Metric(
                    m.key,
                    m.value,
                    m.timestamp,
                    m.step or 0,
                    run_id,
                    getattr(m, "model_id", None),
                    getattr(m, "dataset_name", None),
                    getattr(m, "dataset_digest", None),
                )
                for m in metrics
            ],
            params=[ev.Param(p.key, p.value) for p in params],
            tags=[ev.RunTag(t.key, t.value) for t in tags],
        )

    def log_metric(self, run_id, metric):
        self.log_batch(run_id, [metric], [], [])

    def log_param(self, run_id, param):
        self.log_batch(run_id, [], [param], [])

    def set_tag(self, run_id, tag):
        self.log_batch(run_id, [], [], [tag])

    @_translating
    def delete_tag(self, run_id, key):
        self.client.delete_tag(run_id, key)

    @_translating
    def log_inputs(self, run_id, datasets=None, models=None):
        # Logged-model inputs (what MLflow's fluent ``log_metric(model_id=...)`` sends
        # first) are checked and not recorded, as ``log_outputs``: evtrack links a point
        # to its model through the point itself (``Metric.model_id``).
        for model in models or ():
            self.client.get_logged_model(model.model_id)
        if datasets:
            self.client.log_inputs(run_id, datasets)

    def link_traces_to_run(self, trace_ids, run_id):
        raise MlflowException(
            "Traces are not supported by the evtrack plugin.",
            error_code=databricks_pb2.INVALID_PARAMETER_VALUE,
        )

    # -- logged models (MLflow 3's ``mlflow.<flavor>.log_model``) ----------------------

    @_translating
    def create_logged_model(
        self,
        experiment_id,
        name=None,
        source_run_id=None,
        tags=None,
        params=None,
        model_type=None,
    ):
        return _logged_model(
            self.client.create_logged_model(
                str(experiment_id),
                name,
                source_run_id,
                {t.key: t.value for t in tags or ()},
                {p.key: p.value for p in params or ()},
                model_type,
            )
        )

    @_translating
    def get_logged_model(self, model_id, allow_deleted=False):
        return _logged_model(self.client._models.get_logged_model(model_id, allow_deleted))

    @_translating
    def search_logged_models(
        self,
        experiment_ids,
        filter_string=None,
        datasets=None,
        max_results=None,
        order_by=None,
        page_token=None,
    ):
        if datasets:
            raise MlflowException(
                "The evtrack plugin searches logged models without dataset filters.",
                error_code=databricks_pb2.INVALID_PARAMETER_VALUE,
            )
        found = self.client.search_logged_models(
            [str(e) for e in experiment_ids],
            filter_string or None,
            max_results,
            order_by or None,
            page_token,
        )
        return PagedList([_logged_model(m) for m in found], getattr(found, "token", None))

    @_translating
    def finalize_logged_model(self, model_id, status):
        return _logged_model(self.client.finalize_logged_model(model_id, status))

    @_translating
    def set_logged_model_tags(self, model_id, tags):
        self.client.set_logged_model_tags(model_id, {t.key: t.value for t in tags})

    @_translating
    def delete_logged_model_tag(self, model_id, key):
        self.client.delete_logged_model_tag(model_id, key)

    @_translating
    def log_logged_model_params(self, model_id, params):
        self.client.log_model_params(model_id, {p.key: p.value for p in params})

    @_translating
    def delete_logged_model(self, model_id):
        self.client.delete_logged_model(model_id)

    @_translating
    def log_outputs(self, run_id, models):
        # As evtrack's server: the run and models must exist, nothing more is recorded (a
        # model's own run is its source_run_id, stored by create_logged_model).
        self.client.get_run(run_id)
        for out in models:
            self.client.get_logged_model(out.model_id)

    @_translating
    def record_logged_model(self, run_id, mlflow_model):
        # MLflow 2's ``mlflow.models`` run tag, kept for readers that look for it.
        run = self.client.get_run(run_id)
        history = json.loads(run.data.tags.get("mlflow.log-model.history", "[]"))
        history.append(mlflow_model.get_tags_dict())
        self.client.set_tag(run_id, "mlflow.log-model.history", json.dumps(history))

    # -- reading ----------------------------------------------------------------------------

    @_translating
    def get_metric_history(self, run_id, metric_key, max_results=None, page_token=None):
        history = self.client.get_metric_history(run_id, metric_key)
        offset = int(page_token) if page_token else 0
        if max_results is None:
            page, token = history[offset:], None
        else:
            page = history[offset : offset + max_results]
            end = offset + len(page)
            token = str(end) if end < len(history) else None
        return PagedList([Metric(m.key, m.value, m.timestamp, m.step) for m in page], token)

    @_translating
    def _search_runs(
        self, experiment_ids, filter_string, run_view_type, max_results, order_by, page_token
    ):
        found = self.client.search_runs(
            [str(e) for e in experiment_ids],
            filter_string or "",
            run_view_type,
            max_results,
            order_by,
            page_token,
        )
        ids = [str(e) for e in experiment_ids]
        inputs = self._inputs_of(ids, [r.info.run_id for r in found])
        return [self._run(r, inputs.get(r.info.run_id)) for r in found], found.token
