"""Settings are a table: one :class:`Setting` per knob, each with its environment
variable and help. Nothing else in evtrack reads ``os.environ`` for configuration;
``docs/settings.md`` lists the table and a test keeps the two in step.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["SETTINGS", "Setting", "get"]


def _bool(text: str) -> bool:
    return text.strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    env: str
    help: str
    parse: Callable[[str], Any] = str
    #: MLflow's spelling of the same knob, read when ``env`` is unset, so a shell set up
    #: for MLflow (``MLFLOW_TRACKING_URI``, ``MLFLOW_RUN_ID``...) works unchanged.
    mlflow_env: str | None = None


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "tracking_uri",
        "./evruns",
        "EVTRACK_TRACKING_URI",
        "Where the store lives: a folder, file://, memory://, s3://bucket/prefix, gs://, az://.",
        mlflow_env="MLFLOW_TRACKING_URI",
    ),
    Setting(
        "artifact_root",
        None,
        "EVTRACK_ARTIFACT_ROOT",
        "Artifact root for new experiments (any fsspec URL). Default: inside the store.",
    ),
    Setting(
        "experiment_name",
        None,
        "EVTRACK_EXPERIMENT_NAME",
        "Experiment that runs go to when none is set in code (created if missing).",
        mlflow_env="MLFLOW_EXPERIMENT_NAME",
    ),
    Setting(
        "experiment_id",
        None,
        "EVTRACK_EXPERIMENT_ID",
        "Experiment id that runs go to when none is set in code.",
        mlflow_env="MLFLOW_EXPERIMENT_ID",
    ),
    Setting(
        "run_id",
        None,
        "EVTRACK_RUN_ID",
        "Run that start_run() resumes when called without run_id (set by `evtrack run`).",
        mlflow_env="MLFLOW_RUN_ID",
    ),
    Setting(
        "flush_interval",
        1.0,
        "EVTRACK_FLUSH_INTERVAL",
        "Seconds between background flushes. With the buffer size, this bounds what a kill -9 can lose.",
        float,
    ),
    Setting(
        "buffer_events",
        1_000_000,
        "EVTRACK_BUFFER_EVENTS",
        "Buffered events that trigger a flush before the interval is up.",
        int,
    ),
    Setting(
        "jsonl_max_events",
        512,
        "EVTRACK_JSONL_MAX_EVENTS",
        "Segments with at most this many events and no metric arrays are written as JSONL, larger ones as Parquet.",
        int,
    ),
    Setting(
        "fsync",
        False,
        "EVTRACK_FSYNC",
        "fsync each segment on local folders before it becomes visible (survives power loss, slower).",
        _bool,
    ),
    Setting(
        "auto_compact",
        True,
        "EVTRACK_AUTO_COMPACT",
        "Compact a run's segments when the run ends (see auto_compact_min_events).",
        _bool,
    ),
    Setting(
        "auto_compact_min_events",
        1000,
        "EVTRACK_AUTO_COMPACT_MIN_EVENTS",
        "end_run() compacts a run only if this process wrote at least this many of its events; smaller runs are left to `evtrack compact`, so short scripts do not pay for DuckDB at exit.",
        int,
    ),
    Setting(
        "auto_compact_batch",
        100,
        "EVTRACK_AUTO_COMPACT_BATCH",
        "Small runs (under auto_compact_min_events events) ended by this process in one experiment that are compacted together in the background (a sweep's); 0 turns it off.",
        int,
    ),
    Setting(
        "gc_grace_seconds",
        3600.0,
        "EVTRACK_GC_GRACE_SECONDS",
        "Replaced segments are deleted by `evtrack gc` only when older than this.",
        float,
    ),
    Setting(
        "user",
        None,
        "EVTRACK_USER",
        "User recorded in mlflow.user (default: the login name).",
    ),
    # -- logging to an evtrack server over HTTP (evtrack/store/rest/store.py) --
    Setting(
        "tracking_token",
        None,
        "EVTRACK_TRACKING_TOKEN",
        "Bearer token sent to an http(s):// tracking server (its --auth-token).",
        mlflow_env="MLFLOW_TRACKING_TOKEN",
    ),
    Setting(
        "tracking_username",
        None,
        "EVTRACK_TRACKING_USERNAME",
        "Basic-auth user for an http(s):// tracking server (its --users-file).",
        mlflow_env="MLFLOW_TRACKING_USERNAME",
    ),
    Setting(
        "tracking_password",
        None,
        "EVTRACK_TRACKING_PASSWORD",
        "Basic-auth password for an http(s):// tracking server.",
        mlflow_env="MLFLOW_TRACKING_PASSWORD",
    ),
    Setting(
        "http_timeout",
        30.0,
        "EVTRACK_HTTP_TIMEOUT",
        "Seconds to wait for a tracking server's answer before retrying.",
        float,
    ),
    Setting(
        "http_retries",
        3,
        "EVTRACK_HTTP_RETRIES",
        "Retries (exponential backoff from 0.25 s) of a request that failed to connect or got 429/5xx.",
        int,
    ),
    Setting(
        "http_max_segment_bytes",
        64 * 1024 * 1024,
        "EVTRACK_HTTP_MAX_SEGMENT_BYTES",
        "Segments sent to a tracking server are split to at most this size; a server with a lower ingest limit says so and later segments are split to fit it.",
        int,
    ),
    Setting(
        "allow_non_atomic_create",
        False,
        "EVTRACK_ALLOW_NON_ATOMIC_CREATE",
        "Open stores on filesystems without an atomic create-only write (anything but local folders, memory://, s3, gs, az/abfs). Two processes may then both claim one name; use with a single writer only.",
        _bool,
    ),
    Setting(
        "index_cache_dir",
        None,
        "EVTRACK_INDEX_CACHE_DIR",
        "Where searches save each experiment's folded run index, so a new process folds only the segments written since (`off`: never). Default: ~/.cache/evtrack/index.",
    ),
    Setting(
        "spool_dir",
        None,
        "EVTRACK_SPOOL_DIR",
        "Where segments wait when the tracking server is unreachable at exit (`evtrack sync` sends them). Default: ~/.cache/evtrack/spool.",
    ),
    Setting(
        "scoring_handoff",
        None,
        "EVTRACK_SCORING_HANDOFF",
        "Internal: `evtrack models serve -w N` hands the model folder and options to its worker processes here (JSON). Not for users to set.",
    ),
    # -- projects: `evtrack run` (evtrack/projects/) --
    Setting(
        "projects_cache_dir",
        None,
        "EVTRACK_PROJECTS_CACHE_DIR",
        "Where `evtrack run` keeps git clones and built environments. Default: ~/.cache/evtrack/projects.",
    ),
)

_BY_NAME = {s.name: s for s in SETTINGS}


def get(name: str) -> Any:
    """The value of setting ``name``: its environment variable, else MLflow's spelling of
    it (``mlflow_env``), else its default. ``EVTRACK_*`` wins when both are set."""
    setting = _BY_NAME[name]
    raw = os.environ.get(setting.env)
    if (raw is None or raw == "") and setting.mlflow_env:
        raw = os.environ.get(setting.mlflow_env)
    if raw is None or raw == "":
        return setting.default
    return setting.parse(raw)
