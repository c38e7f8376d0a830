"""``MlflowClient``: MLflow's run-id-explicit API, a facade over a :class:`TrackingStore`.

The client owns what MLflow's client owns and no store should: MLflow's method names,
argument names and defaults, and artifacts (files go to the run's artifact location
through the store's repository, then the store records them). Everything else, and
every validation rule, is the store's (:mod:`evtrack.store.base`): the event log for a
folder or bucket, the REST store for ``http(s)://``, picked by
:mod:`evtrack.store.registry`. A store can also be passed in directly, as httpx's
``Client(transport=...)`` takes its transport.
"""

from __future__ import annotations

import json
import os
import posixpath
import tempfile
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from evtrack.entities import (
    DatasetInput,
    Experiment,
    FileInfo,
    Metric,
    Param,
    Run,
    RunStatus,
    RunTag,
    ViewType,
)
from evtrack.models.client_api import ModelsClientMixin
from evtrack.store.base import DEFAULT_EXPERIMENT_ID, PagedList, TrackingStore

if TYPE_CHECKING:  # pragma: no cover
    import duckdb
    import pyarrow as pa

    from evtrack.store.log.writer import Writer

__all__ = ["DEFAULT_EXPERIMENT_ID", "MlflowClient", "PagedList"]


class MlflowClient(ModelsClientMixin):
    """MLflow's client API, with MLflow's names, arguments, defaults and errors."""

    def __init__(
        self,
        tracking_uri: str | None = None,
        registry_uri: str | None = None,
        *,
        store: TrackingStore | None = None,
    ) -> None:
        if store is None:
            from evtrack.store.registry import get_tracking_store
            from evtrack.tracking.uri import get_tracking_uri

            store = get_tracking_store(tracking_uri or get_tracking_uri())
        self.store: TrackingStore = store
        self._registry_uri = registry_uri

    def __repr__(self) -> str:
        return f"MlflowClient({self.store!r})"

    @property
    def tracking_uri(self) -> str:
        return self.store.uri

    @property
    def writer(self) -> Writer:
        """The process's writer for this store (the fluent hot path appends to it)."""
        return self.store.writer

    # -- experiments -----------------------------------------------------------------

    def create_experiment(
        self,
        name: str,
        artifact_location: str | None = None,
        tags: dict[str, Any] | None = None,
    ) -> str:
        return self.store.create_experiment(name, artifact_location, tags)

    def get_experiment(self, experiment_id: str) -> Experiment:
        return self.store.get_experiment(experiment_id)

    def get_experiment_by_name(self, name: str) -> Experiment | None:
        return self.store.get_experiment_by_name(name)

    def search_experiments(
        self,
        view_type: int = ViewType.ACTIVE_ONLY,
        max_results: int | None = None,
        filter_string: str | None = None,
        order_by: list[str] | None = None,
        page_token: str | None = None,
    ) -> PagedList:
        return self.store.search_experiments(
            view_type, max_results, filter_string, order_by, page_token
        )

    def rename_experiment(self, experiment_id: str, new_name: str) -> None:
        self.store.rename_experiment(experiment_id, new_name)

    def delete_experiment(self, experiment_id: str) -> None:
        self.store.delete_experiment(experiment_id)

    def restore_experiment(self, experiment_id: str) -> None:
        self.store.restore_experiment(experiment_id)

    def set_experiment_tag(self, experiment_id: str, key: str, value: Any) -> None:
        self.store.set_experiment_tag(experiment_id, key, value)

    def delete_experiment_tag(self, experiment_id: str, key: str) -> None:
        self.store.delete_experiment_tag(experiment_id, key)

    # -- runs ------------------------------------------------------------------------

    def create_run(
        self,
        experiment_id: str,
        start_time: int | None = None,
        tags: dict[str, Any] | None = None,
        run_name: str | None = None,
        *,
        run_id: str | None = None,
        user_id: str | None = None,
    ) -> Run:
        return self.store.create_run(
            experiment_id, start_time, tags, run_name, run_id=run_id, user_id=user_id
        )

    def get_run(self, run_id: str) -> Run:
        return self.store.get_run(run_id)

    def update_run(self, run_id: str, status: str | None = None, name: str | None = None) -> None:
        """MLflow's ``update_run``: a terminal status also sets the end time to now."""
        from evtrack.clock import now_ms

        end_time = now_ms() if status is not None and _is_terminal(status) else None
        self.store.update_run_info(run_id, status, end_time, name or None)

    def set_terminated(
        self, run_id: str, status: str | None = None, end_time: int | None = None
    ) -> None:
        self.store.set_terminated(run_id, status, end_time)

    def delete_run(self, run_id: str) -> None:
        self.store.delete_run(run_id)

    def restore_run(self, run_id: str) -> None:
        self.store.restore_run(run_id)

    # -- logging ---------------------------------------------------------------------

    def log_metric(
        self,
        run_id: str,
        key: str,
        value: float,
        timestamp: int | None = None,
        step: int | None = None,
        synchronous: bool | None = None,
        dataset_name: str | None = None,
        dataset_digest: str | None = None,
        model_id: str | None = None,
    ) -> None:
        """Log one metric point; with ``model_id`` (MLflow 3), it is also linked to that
        logged model (``get_logged_model(model_id).metrics``), durably before returning."""
        if model_id is None:
            self.store.log_metric(run_id, key, value, timestamp, step, synchronous)
            return
        from evtrack.clock import now_ms

        ts = now_ms() if timestamp is None else timestamp
        point = Metric(key, value, ts, step or 0, run_id, model_id, dataset_name, dataset_digest)
        self._models.log_model_metrics(run_id, [point])

    def log_metric_series(
        self,
        run_id: str,
        key: str,
        values: Any,
        steps: Any = None,
        timestamps: Any = None,
        synchronous: bool | None = None,
    ) -> None:
        """Log a whole series at once (NumPy arrays, Arrow arrays or sequences)."""
        self.store.log_metric_series(run_id, key, values, steps, timestamps, synchronous)

    def log_param(self, run_id: str, key: str, value: Any, synchronous: bool | None = None) -> Any:
        self.store.log_batch(run_id, params=[Param(key, value)], synchronous=synchronous)
        return value

    def set_tag(self, run_id: str, key: str, value: Any, synchronous: bool | None = None) -> None:
        self.store.log_batch(run_id, tags=[RunTag(key, value)], synchronous=synchronous)

    def delete_tag(self, run_id: str, key: str) -> None:
        self.store.delete_tag(run_id, key)

    def log_batch(
        self,
        run_id: str,
        metrics: Sequence[Metric] = (),
        params: Sequence[Param] = (),
        tags: Sequence[RunTag] = (),
        synchronous: bool | None = None,
    ) -> None:
        linked = [m for m in metrics if m.model_id]
        if linked:  # points linked to a logged model: to the run and to the model
            self._models.log_model_metrics(run_id, linked)
            metrics = [m for m in metrics if not m.model_id]
        if metrics or params or tags:
            self.store.log_batch(run_id, metrics, params, tags, synchronous)

    def log_inputs(self, run_id: str, datasets: Sequence[DatasetInput] | None = None) -> None:
        self.store.log_inputs(run_id, datasets)

    # -- reading ---------------------------------------------------------------------

    def get_metric_history_arrow(self, run_id: str, key: str) -> pa.Table:
        """The full history of one metric as an Arrow table (step, timestamp, value)."""
        return self.store.get_metric_history_arrow(run_id, key)

    def get_metric_history(self, run_id: str, key: str) -> list[Metric]:
        return self.store.get_metric_history(run_id, key)

    def search_runs(
        self,
        experiment_ids: list[str] | str,
        filter_string: str = "",
        run_view_type: int = ViewType.ACTIVE_ONLY,
        max_results: int = 1000,
        order_by: list[str] | None = None,
        page_token: str | None = None,
    ) -> PagedList:
        if isinstance(experiment_ids, (str, int)):
            experiment_ids = [experiment_ids]
        return self.store.search_runs(
            [str(e) for e in experiment_ids],
            filter_string,
            run_view_type,
            max_results,
            order_by,
            page_token,
        )

    # -- artifacts -------------------------------------------------------------------

    def _artifacts(self, run_id: str) -> tuple[Run, Any]:
        run = self.get_run(run_id)
        return run, self.store.artifact_repository(run.info.artifact_uri)

    def _record_artifacts(self, run: Run, written: list[Any]) -> None:
        self.store.record_artifacts(run.info.run_id, written)

    def log_artifact(self, run_id: str, local_path: str, artifact_path: str | None = None) -> None:
        run, repo = self._artifacts(run_id)
        self._record_artifacts(run, [repo.upload_file(local_path, artifact_path)])

    def log_artifacts(self, run_id: str, local_dir: str, artifact_path: str | None = None) -> None:
        run, repo = self._artifacts(run_id)
        self._record_artifacts(run, repo.upload_dir(local_dir, artifact_path))

    def log_bytes(self, run_id: str, data: bytes, artifact_file: str) -> None:
        run, repo = self._artifacts(run_id)
        self._record_artifacts(run, [repo.write_bytes(artifact_file, data)])

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        self.log_bytes(run_id, text.encode("utf-8"), artifact_file)

    def log_dict(self, run_id: str, dictionary: Any, artifact_file: str) -> None:
        ext = posixpath.splitext(artifact_file)[1].lower()
        if ext in (".yaml", ".yml"):
            import yaml

            text = yaml.safe_dump(dictionary, default_flow_style=False, sort_keys=False)
        else:
            text = json.dumps(dictionary, indent=2)
        self.log_text(run_id, text, artifact_file)

    def log_figure(self, run_id: str, figure: Any, artifact_file: str, *, save_kwargs=None) -> None:
        ext = posixpath.splitext(artifact_file)[1].lower()
        with tempfile.TemporaryDirectory() as tmp:
            local = os.path.join(tmp, posixpath.basename(artifact_file))
            if hasattr(figure, "savefig"):  # matplotlib
                figure.savefig(local, **(save_kwargs or {}))
            elif hasattr(figure, "write_html") and ext == ".html":  # plotly
                figure.write_html(local, **(save_kwargs or {}))
            elif hasattr(figure, "write_image"):
                figure.write_image(local, **(save_kwargs or {}))
            else:
                raise TypeError(
                    f"Unsupported figure type {type(figure).__name__}: log a matplotlib or "
                    "plotly figure."
                )
            with open(local, "rb") as f:
                self.log_bytes(run_id, f.read(), artifact_file)

    def log_image(self, run_id: str, image: Any, artifact_file: str) -> None:
        import io

        if hasattr(image, "save"):  # PIL
            buf = io.BytesIO()
            image.save(buf, format=posixpath.splitext(artifact_file)[1][1:].upper() or "PNG")
            data = buf.getvalue()
        else:
            import matplotlib.pyplot as plt

            buf = io.BytesIO()
            plt.imsave(buf, image, format=posixpath.splitext(artifact_file)[1][1:] or "png")
            data = buf.getvalue()
        self.log_bytes(run_id, data, artifact_file)

    def list_artifacts(self, run_id: str, path: str | None = None) -> list[FileInfo]:
        _, repo = self._artifacts(run_id)
        return repo.list(path)

    def download_artifacts(self, run_id: str, path: str = "", dst_path: str | None = None) -> str:
        _, repo = self._artifacts(run_id)
        return repo.download(path, dst_path)

    def delete_artifact(self, run_id: str, path: str) -> None:
        run, repo = self._artifacts(run_id)
        self.store.record_artifacts(run_id, deleted=repo.delete(path))

    # -- evtrack extras --------------------------------------------------------------

    def flush(self) -> None:
        """Make every event logged so far durable."""
        self.store.flush()

    def sql(self, query: str, params: list | dict | None = None) -> duckdb.DuckDBPyRelation:
        """Run DuckDB SQL over the documented views; returns a DuckDB relation.

        The query has a database of its own: it may create or drop anything without
        affecting any other read.
        """
        return self.store.sql(query, params)


def _is_terminal(status: str) -> bool:
    return status in RunStatus._NAMES and RunStatus.is_terminated(status)
