"""The fluent API: ``evtrack.start_run()``, ``evtrack.log_metric()``...

Names, arguments and defaults follow ``mlflow``'s fluent API, so ``import evtrack as
mlflow`` runs the usual training scripts unchanged. ``log_metric`` is the hot path:
with an active run it validates (cached) and appends one tuple to the writer's
buffer, nothing more; the background writer turns buffers into segments.
"""

from __future__ import annotations

import atexit
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from evtrack import settings
from evtrack.entities import Experiment, Metric, Param, Run, RunStatus, RunTag, ViewType
from evtrack.errors import InvalidParameterValue
from evtrack.tracking import uri as uri_state
from evtrack.tracking.client import DEFAULT_EXPERIMENT_ID, MlflowClient, PagedList
from evtrack.tracking.uri import get_tracking_uri, is_tracking_uri_set  # noqa: F401 - fluent API
from evtrack.tracking.validation import (
    check_metric_key,
    check_metric_value,
    check_step,
    check_timestamp,
)

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

_log = logging.getLogger(__name__)

_active_experiment_id: str | None = None
_run_stack: list[ActiveRun] = []
_last_active_run_id: str | None = None
_client: MlflowClient | None = None
_known_keys: set[str] = set()
_time = time.time
_time_ns = time.time_ns  # int ms as time_ns() // 10**6: faster than int(time() * 1000)


# -- tracking URI and client ---------------------------------------------------------


def set_tracking_uri(uri: str | Any) -> None:
    """Point evtrack at a store (a folder, ``file://``, ``memory://``, ``s3://``...)."""
    global _client
    uri_state.set_tracking_uri(uri)
    _client = None


def _get_client() -> MlflowClient:
    global _client
    if _client is None:
        _client = MlflowClient(get_tracking_uri())
    return _client


# -- experiments -----------------------------------------------------------------------


def set_experiment(
    experiment_name: str | None = None, experiment_id: str | None = None
) -> Experiment:
    """Make an experiment active for new runs, creating it by name if needed."""
    global _active_experiment_id
    if (experiment_name is None) == (experiment_id is None):
        raise InvalidParameterValue(
            "Must specify exactly one of: `experiment_id` or `experiment_name`."
        )
    client = _get_client()
    exp: Experiment | None
    if experiment_id is not None:
        exp = client.get_experiment(str(experiment_id))
    else:
        assert experiment_name is not None  # exactly one of the two, checked above
        exp = client.get_experiment_by_name(experiment_name)
        if exp is None:
            from evtrack.errors import ResourceAlreadyExists

            try:
                client.create_experiment(experiment_name)
            except ResourceAlreadyExists:
                pass  # created by a concurrent process a moment ago
            exp = client.get_experiment_by_name(experiment_name)
            for _ in range(50):  # its events may be a moment behind its name claim
                if exp is not None:
                    break
                time.sleep(0.02)
                exp = client.get_experiment_by_name(experiment_name)
            if exp is None:
                from evtrack.errors import ExperimentNotFound

                raise ExperimentNotFound(
                    f"Experiment '{experiment_name}' is claimed but not readable; run "
                    "`evtrack doctor --repair` if this persists."
                )
    if exp.lifecycle_stage != "active":
        raise InvalidParameterValue(
            f"Cannot set a deleted experiment {exp.name!r} as the active experiment. "
            "You can restore the experiment, or permanently delete the experiment to "
            "create a new one."
        )
    _active_experiment_id = exp.experiment_id
    return exp


def create_experiment(
    name: str, artifact_location: str | None = None, tags: dict[str, Any] | None = None
) -> str:
    return _get_client().create_experiment(name, artifact_location, tags)


def get_experiment(experiment_id: str) -> Experiment:
    return _get_client().get_experiment(experiment_id)


def get_experiment_by_name(name: str) -> Experiment | None:
    return _get_client().get_experiment_by_name(name)


def delete_experiment(experiment_id: str) -> None:
    _get_client().delete_experiment(experiment_id)


def search_experiments(
    view_type: int = ViewType.ACTIVE_ONLY,
    max_results: int | None = None,
    filter_string: str | None = None,
    order_by: list[str] | None = None,
) -> list[Experiment]:
    """All matching experiments (every page)."""
    client = _get_client()
    out: list[Experiment] = []
    token = None
    while True:
        page = client.search_experiments(
            view_type, max_results or 1000, filter_string, order_by, token
        )
        out.extend(page)
        token = page.token
        if not token or (max_results is not None and len(out) >= max_results):
            return out[:max_results] if max_results is not None else out


def set_experiment_tag(key: str, value: Any) -> None:
    _get_client().set_experiment_tag(_experiment_id_for_new_run(), key, value)


def set_experiment_tags(tags: dict[str, Any]) -> None:
    for key, value in tags.items():
        set_experiment_tag(key, value)


def _experiment_id_for_new_run() -> str:
    if _active_experiment_id is not None:
        return _active_experiment_id
    name = settings.get("experiment_name")
    if name:
        return set_experiment(experiment_name=name).experiment_id
    return str(settings.get("experiment_id") or DEFAULT_EXPERIMENT_ID)


# -- runs ------------------------------------------------------------------------------


class ActiveRun(Run):
    """The run started by :func:`start_run`; a context manager that ends it."""

    def __init__(self, run: Run, client: MlflowClient) -> None:
        super().__init__(run.info, run.data, run.inputs)
        self._client = client
        # The hot path appends straight to this list (see log_metric).
        # Held until end_run(): a held list is never dropped by Writer.release().
        self._buf = client.writer.metric_buffer(run.info.experiment_id, run.info.run_id)
        self._writer = client.writer
        self._buf_limit = 4 * client.writer.buffer_limit

    def __enter__(self) -> ActiveRun:
        return self

    def __exit__(self, exc_type, exc, tb) -> Literal[False]:
        status = "FINISHED" if exc_type is None else "FAILED"
        if exc_type is KeyboardInterrupt:
            status = "KILLED"
        end_run(RunStatus.to_string(RunStatus.from_string(status)))
        return False


def start_run(
    run_id: str | None = None,
    experiment_id: str | None = None,
    run_name: str | None = None,
    nested: bool = False,
    parent_run_id: str | None = None,
    tags: dict[str, Any] | None = None,
    description: str | None = None,
    log_system_metrics: bool | None = None,
) -> ActiveRun:
    """Start a new run, or resume ``run_id``, and make it the active run."""
    from evtrack.tracking.context import system_tags

    global _last_active_run_id
    client = _get_client()
    if _run_stack and not nested:
        raise InvalidParameterValue(
            f"Run with UUID {_run_stack[-1].info.run_id} is already active. To start a new "
            "run, first end the current run with evtrack.end_run(). To start a nested run, "
            "call start_run with nested=True"
        )
    run_id = run_id or settings.get("run_id")
    parent = parent_run_id or (_run_stack[-1].info.run_id if nested and _run_stack else None)
    if parent_run_id is not None:
        client.get_run(parent_run_id)
        if _run_stack and _run_stack[-1].info.run_id != parent_run_id:
            raise InvalidParameterValue(
                f"Current run with UUID {_run_stack[-1].info.run_id} does not match the "
                f"specified parent_run_id {parent_run_id}. To start a new nested run under "
                "the parent run with UUID {parent_run_id}, first end the current run."
            )
    if run_id:
        run = client.get_run(run_id)
        if experiment_id is not None and str(experiment_id) != run.info.experiment_id:
            raise InvalidParameterValue(
                f"Cannot start run with ID {run_id} because active run ID does not match "
                f"environment run ID. Make sure --experiment-name or --experiment-id matches "
                "experiment set with set_experiment(), or just use command-line arguments"
            )
        if run.info.lifecycle_stage != "active":
            raise InvalidParameterValue(
                f"Cannot start run with ID {run_id} because it is in the deleted state."
            )
        client.update_run(run_id, status="RUNNING", name=run_name)
        extra = dict(tags or {})
        if description is not None:
            extra["mlflow.note.content"] = description
        if extra:
            client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in extra.items()])
        run = client.get_run(run_id)
    else:
        exp_id = str(experiment_id) if experiment_id is not None else _experiment_id_for_new_run()
        all_tags = system_tags()
        all_tags.update({k: str(v) for k, v in (tags or {}).items()})
        if parent:
            all_tags["mlflow.parentRunId"] = parent
        if description is not None:
            all_tags["mlflow.note.content"] = description
        run = client.create_run(exp_id, tags=all_tags, run_name=run_name)
    active = ActiveRun(run, client)
    _run_stack.append(active)
    _last_active_run_id = active.info.run_id
    return active


def end_run(status: str = "FINISHED") -> None:
    """End the active run; every event logged to it is durable when this returns.

    Raises :class:`~evtrack.errors.SegmentRefused` if the store refused some of the
    run's events for good (the run is ended all the same).
    """
    global _last_active_run_id
    if not _run_stack:
        return
    run = _run_stack.pop()
    _last_active_run_id = run.info.run_id
    try:
        run._client.set_terminated(run.info.run_id, status)
    finally:
        written = run._writer.written(run.info.run_id)  # forgotten once the buffer is dropped
        run._writer.drop_metric_buffer(run.info.experiment_id, run.info.run_id)
    if settings.get("auto_compact"):
        _compact_quietly(run, written)


def _compact_quietly(run: ActiveRun, written: int) -> None:
    """Compact a large run as it ends; small ones are left for ``evtrack compact``.

    A run of a few events is one or two JSONL segments, cheap to read; compacting it
    would load DuckDB and pyarrow at the end of a script that needed neither, more
    than doubling a short script's wall time. The count is of events this process
    wrote, so a run logged from many processes is compacted by whichever ends it
    after writing enough (or by ``evtrack compact``). A store whose compaction is
    someone else's job (an evtrack server's) makes ``compact_run`` a no-op.
    """
    if written < settings.get("auto_compact_min_events"):
        return
    try:
        run._client.store.compact_run(run.info.experiment_id, run.info.run_id)
    except ImportError:
        return  # compaction needs duckdb and pyarrow; the events are safe without it
    except Exception as exc:  # noqa: BLE001 - compaction is an optimisation; events are safe
        _log.warning("evtrack: could not compact run %s: %s", run.info.run_id, exc)


def active_run() -> ActiveRun | None:
    return _run_stack[-1] if _run_stack else None


def last_active_run() -> Run | None:
    if _run_stack:
        return get_run(_run_stack[-1].info.run_id)
    if _last_active_run_id is None:
        return None
    return get_run(_last_active_run_id)


def _current() -> ActiveRun:
    if _run_stack:
        return _run_stack[-1]
    return start_run()


def get_run(run_id: str) -> Run:
    return _get_client().get_run(run_id)


def delete_run(run_id: str) -> None:
    _get_client().delete_run(run_id)


def get_parent_run(run_id: str) -> Run | None:
    parent = get_run(run_id).data.tags.get("mlflow.parentRunId")
    return get_run(parent) if parent else None


# -- logging ---------------------------------------------------------------------------


def log_metric(
    key: str,
    value: float,
    step: int | None = None,
    synchronous: bool | None = None,
    timestamp: int | None = None,
    run_id: str | None = None,
    model_id: str | None = None,
    dataset: Any = None,
) -> None:
    """Log one metric point. Buffered: durable at the next flush, ``end_run()`` or exit;
    with ``synchronous=True``, durable before this returns.

    ``model_id`` (MLflow 3) also links the point to that logged model, with ``dataset``'s
    name and digest when given (durable before this returns; the slower path).
    Named arguments, not ``**kwargs``: a call then builds no dict, which is a tenth of
    this function's cost.
    """
    if model_id is not None:
        _log_linked({key: value}, step, timestamp, run_id, model_id, dataset)
        return
    if run_id is not None:
        _get_client().log_metric(run_id, key, value, timestamp, step, synchronous)
        return
    try:  # free in CPython 3.11+ when nothing is raised: cheaper than a test
        run = _run_stack[-1]
    except IndexError:
        run = _current()
    buf = run._buf
    buf.extend(
        (
            key if key in _known_keys else _new_key(key),
            value if type(value) is float else check_metric_value(value, key),
            0
            if step is None
            else (
                step
                if type(step) is int and -9223372036854775808 <= step <= 9223372036854775807
                else check_step(step)
            ),
            _time_ns() // 1_000_000 if timestamp is None else check_timestamp(timestamp),
        )
    )
    if synchronous:
        run._writer.flush(run.info.run_id)
    elif len(buf) >= run._buf_limit:
        run._writer.wake()


def _log_linked(
    metrics: dict[str, float],
    step: int | None,
    timestamp: int | None,
    run_id: str | None,
    model_id: str,
    dataset: Any,
) -> None:
    """Points linked to a logged model: to the run and to the model, through the client."""
    run_id = run_id or _current().info.run_id
    ts = int(_time() * 1000) if timestamp is None else check_timestamp(timestamp)
    name = getattr(dataset, "name", None) if dataset is not None else None
    digest = getattr(dataset, "digest", None) if dataset is not None else None
    points = [
        Metric(check_metric_key(k), check_metric_value(v, k), ts, check_step(step or 0),
               run_id, model_id, name, digest)
        for k, v in metrics.items()
    ]  # fmt: skip
    _get_client().log_batch(run_id, metrics=points)


def _new_key(key: str) -> str:
    check_metric_key(key)
    if len(_known_keys) < 100_000:
        _known_keys.add(key)
    return key


def log_metrics(
    metrics: dict[str, float],
    step: int | None = None,
    synchronous: bool | None = None,
    run_id: str | None = None,
    timestamp: int | None = None,
    model_id: str | None = None,
    dataset: Any = None,
    **_ignored: Any,
) -> None:
    if model_id is not None:
        _log_linked(metrics, step, timestamp, run_id, model_id, dataset)
        return
    ts = int(_time() * 1000) if timestamp is None else check_timestamp(timestamp)
    if run_id is not None:
        client = _get_client()
        client.log_batch(
            run_id,
            metrics=[Metric(k, v, ts, step or 0) for k, v in metrics.items()],
            synchronous=synchronous,
        )
        return
    # Check every point before buffering any, so a bad value leaves nothing logged.
    checked = [(check_metric_key(k), check_metric_value(v, k)) for k, v in metrics.items()]
    step = None if step is None else check_step(step)
    for key, value in checked:
        log_metric(key, value, step, False, ts)
    if synchronous:
        _run_stack[-1]._writer.flush(_run_stack[-1].info.run_id)


def log_metric_series(
    key: str,
    values: Any,
    steps: Any = None,
    timestamps: Any = None,
    synchronous: bool | None = None,
    run_id: str | None = None,
) -> None:
    """Log a whole series at once (NumPy/Arrow arrays or sequences), straight to Arrow."""
    run_id = run_id or _current().info.run_id
    _get_client().log_metric_series(run_id, key, values, steps, timestamps, synchronous)


def log_param(key: str, value: Any, synchronous: bool | None = None) -> Any:
    run = _current()
    return run._client.log_param(run.info.run_id, key, value, synchronous)


def log_params(
    params: dict[str, Any], synchronous: bool | None = None, run_id: str | None = None
) -> None:
    run_id = run_id or _current().info.run_id
    _get_client().log_batch(
        run_id,
        params=[Param(k, v) for k, v in params.items()],
        synchronous=synchronous,
    )


def set_tag(key: str, value: Any, synchronous: bool | None = None) -> None:
    run = _current()
    run._client.set_tag(run.info.run_id, key, value, synchronous)


def set_tags(tags: dict[str, Any], synchronous: bool | None = None) -> None:
    run = _current()
    run._client.log_batch(
        run.info.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()], synchronous=synchronous
    )


def delete_tag(key: str) -> None:
    run = _current()
    run._client.delete_tag(run.info.run_id, key)


def flush() -> None:
    """Make every event logged so far durable (all runs of this process).

    Raises the first failure, or :class:`~evtrack.errors.SegmentRefused` for events a
    store refused for good since the last report.
    """
    from evtrack.store.log.writer import flush_all

    flush_all(raise_refused=True)


# -- artifacts -------------------------------------------------------------------------


def log_artifact(local_path: str, artifact_path: str | None = None, run_id: str | None = None):
    run_id = run_id or _current().info.run_id
    _get_client().log_artifact(run_id, local_path, artifact_path)


def log_artifacts(local_dir: str, artifact_path: str | None = None, run_id: str | None = None):
    run_id = run_id or _current().info.run_id
    _get_client().log_artifacts(run_id, local_dir, artifact_path)


def log_text(text: str, artifact_file: str, run_id: str | None = None) -> None:
    run_id = run_id or _current().info.run_id
    _get_client().log_text(run_id, text, artifact_file)


def log_dict(dictionary: Any, artifact_file: str, run_id: str | None = None) -> None:
    run_id = run_id or _current().info.run_id
    _get_client().log_dict(run_id, dictionary, artifact_file)


def log_figure(
    figure: Any, artifact_file: str, *, save_kwargs: dict | None = None, run_id: str | None = None
) -> None:
    run_id = run_id or _current().info.run_id
    _get_client().log_figure(run_id, figure, artifact_file, save_kwargs=save_kwargs)


def log_image(image: Any, artifact_file: str, run_id: str | None = None) -> None:
    run_id = run_id or _current().info.run_id
    _get_client().log_image(run_id, image, artifact_file)


def get_artifact_uri(artifact_path: str | None = None) -> str:
    """The artifact URI of the active run, or of a path within it."""
    uri = _current().info.artifact_uri
    if not artifact_path:
        return uri
    from evtrack.artifacts.repository import _clean_relative

    return f"{uri}/{_clean_relative(artifact_path)}"


# -- search ----------------------------------------------------------------------------


def search_runs(
    experiment_ids: Sequence[str] | None = None,
    filter_string: str = "",
    run_view_type: int = ViewType.ACTIVE_ONLY,
    max_results: int = 100_000,
    order_by: list[str] | None = None,
    output_format: str = "pandas",
    search_all_experiments: bool = False,
    experiment_names: list[str] | None = None,
) -> pd.DataFrame | list[Run]:
    """Search runs with MLflow's filter grammar; a pandas DataFrame or a list of runs."""
    client = _get_client()
    if experiment_names:
        ids = []
        for name in experiment_names:
            exp = client.get_experiment_by_name(name)
            if exp is not None:
                ids.append(exp.experiment_id)
        experiment_ids = ids
    elif not experiment_ids:
        if search_all_experiments:
            experiment_ids = [e.experiment_id for e in search_experiments(ViewType.ALL)]
        else:
            experiment_ids = [_experiment_id_for_new_run()]
    runs: list[Run] = []
    token = None
    while len(runs) < max_results:
        page: PagedList = client.search_runs(
            list(experiment_ids),
            filter_string,
            run_view_type,
            min(50_000, max_results - len(runs)),
            order_by,
            token,
        )
        runs.extend(page)
        token = page.token
        if not token:
            break
    if output_format == "list":
        return runs
    if output_format != "pandas":
        raise InvalidParameterValue(
            f"Unsupported output format {output_format!r}: use 'pandas' or 'list'."
        )
    return _runs_to_pandas(runs)


def _runs_to_pandas(runs: list[Run]) -> pd.DataFrame:
    import pandas as pd

    info_cols = ["run_id", "experiment_id", "status", "artifact_uri", "start_time", "end_time"]
    records = []
    metric_keys: dict[str, None] = {}
    param_keys: dict[str, None] = {}
    tag_keys: dict[str, None] = {}
    for r in runs:
        rec: dict[str, Any] = {c: getattr(r.info, c) for c in info_cols}
        for k, v in r.data.metrics.items():
            rec["metrics." + k] = v
            metric_keys.setdefault(k)
        for k, text in r.data.params.items():
            rec["params." + k] = text
            param_keys.setdefault(k)
        for k, text in r.data.tags.items():
            rec["tags." + k] = text
            tag_keys.setdefault(k)
        records.append(rec)
    columns = (
        info_cols
        + ["metrics." + k for k in metric_keys]
        + ["params." + k for k in param_keys]
        + ["tags." + k for k in tag_keys]
    )
    df = pd.DataFrame.from_records(records, columns=columns)
    for col in ("start_time", "end_time"):
        df[col] = pd.to_datetime(df[col], unit="ms", utc=True)
    return df


def sql(query: str, params: list | dict | None = None):
    """Run DuckDB SQL over the store's views (``runs``, ``metrics``...): a relation
    with ``.df()``, ``.arrow()``, ``.fetchall()``."""
    return _get_client().sql(query, params)


def _end_runs_at_exit() -> None:
    while _run_stack:
        try:
            end_run()
        except Exception as exc:  # noqa: BLE001 - exiting anyway; say what was lost
            _log.error("evtrack: could not end run at exit: %s", exc)
            _run_stack.pop()


atexit.register(_end_runs_at_exit)
