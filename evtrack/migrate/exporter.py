"""``export_mlflow``: write an evtrack store out as an MLflow store, so nobody is locked in.

A folder (or ``file://``) target becomes an MLflow file store, written natively in the
layout MLflow 3's ``FileStore`` reads (``meta.yaml`` per experiment and run, one file per
param and tag, metric lines ``<timestamp> <value> <step>``, deleted experiments under
``.trash/``); artifacts are copied under each run's ``artifacts/`` folder. Experiment
ids, run ids, names, times, statuses, lifecycle stages, params, tags and full metric
histories are kept.

A ``sqlite:///`` target is made by MLflow itself: the file store is written to a
temporary folder, then ``mlflow migrate-filestore`` (MLflow's own lossless migration)
loads it into the database; this needs ``mlflow`` importable in the same environment
(``pip install 'evtrack[mlflow]'``). MLflow's migration only targets SQLite, so other
databases are refused with that explanation. MLflow 3 opens file stores only with
``MLFLOW_ALLOW_FILE_STORE=true`` (it calls them "maintenance mode").

Not exported: dataset inputs, logged models, the model registry, traces.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass

import yaml

import evtrack
from evtrack.entities import RunStatus, ViewType
from evtrack.errors import InvalidParameterValue, ResourceDoesNotExist

__all__ = ["ExportReport", "export_mlflow"]

_STATUS_NUMBERS = {"RUNNING": 1, "SCHEDULED": 2, "FINISHED": 3, "FAILED": 4, "KILLED": 5}


@dataclass
class ExportReport:
    destination: str
    experiments: int = 0
    runs: int = 0
    points: int = 0
    artifacts: int = 0
    seconds: float = 0.0


def _write(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def _yaml(path: str, body: dict) -> None:
    _write(path, yaml.safe_dump(body, default_flow_style=False, sort_keys=True))


def _key_path(folder: str, key: str) -> str:
    # MLflow keys may contain '/', which the file store keeps as nested folders.
    return os.path.join(folder, *key.split("/"))


def _write_file_store(
    client: evtrack.MlflowClient,
    root: str,
    experiments: Sequence[str] | None,
    artifacts: bool,
    report: ExportReport,
) -> None:
    if os.path.exists(root) and os.listdir(root):
        raise InvalidParameterValue(
            f"{root!r} is not empty: export writes a new MLflow store, choose an empty folder."
        )
    chosen = list(client.search_experiments(ViewType.ALL, max_results=50_000))
    if experiments:
        missing = set(experiments) - {e.name for e in chosen}
        if missing:
            raise ResourceDoesNotExist(f"No experiment named {', '.join(sorted(missing))}.")
        chosen = [e for e in chosen if e.name in set(experiments)]
    for exp in chosen:
        deleted = exp.lifecycle_stage == "deleted"
        exp_dir = os.path.join(root, ".trash" if deleted else "", exp.experiment_id)
        location = "file://" + os.path.join(root, exp.experiment_id)
        _yaml(
            os.path.join(exp_dir, "meta.yaml"),
            {
                "artifact_location": location,
                "creation_time": exp.creation_time,
                "experiment_id": exp.experiment_id,
                "last_update_time": exp.last_update_time,
                "lifecycle_stage": exp.lifecycle_stage,
                "name": exp.name,
            },
        )
        for key, value in exp.tags.items():
            _write(_key_path(os.path.join(exp_dir, "tags"), key), value)
        report.experiments += 1
        _write_runs(client, exp, exp_dir, location, artifacts, report)


def _write_runs(client, exp, exp_dir: str, location: str, artifacts: bool, report) -> None:
    runs, token = [], None
    while True:
        page = client.search_runs(
            [exp.experiment_id], "", ViewType.ALL, max_results=50_000, page_token=token
        )
        runs += page
        token = page.token
        if not token:
            break
    if not runs:
        return
    points = client.sql(
        "select run_id, key, step, timestamp, value from metrics where experiment_id = ? "
        "order by run_id, key, step, timestamp",
        [exp.experiment_id],
    ).to_arrow_table()
    lines: dict[tuple[str, str], list[str]] = {}
    for run_id, key, step, stamp, value in zip(
        *(points[c].to_pylist() for c in ("run_id", "key", "step", "timestamp", "value"))
    ):
        lines.setdefault((run_id, key), []).append(f"{stamp} {value} {step}\n")
    for run in runs:
        info = run.info
        run_dir = os.path.join(exp_dir, info.run_id)
        meta = {
            "artifact_uri": f"{location}/{info.run_id}/artifacts",
            "end_time": info.end_time,
            "entry_point_name": "",
            "experiment_id": info.experiment_id,
            "lifecycle_stage": info.lifecycle_stage,
            "run_id": info.run_id,
            "run_name": info.run_name,
            "run_uuid": info.run_id,
            "source_name": "",
            "source_type": 4,  # LOCAL, as MLflow writes it
            "source_version": "",
            "start_time": info.start_time,
            "status": _STATUS_NUMBERS.get(info.status, RunStatus.RUNNING),
            "tags": [],
            "user_id": info.user_id,
        }
        _yaml(os.path.join(run_dir, "meta.yaml"), meta)
        for key, value in run.data.params.items():
            _write(_key_path(os.path.join(run_dir, "params"), key), value)
        for key, value in run.data.tags.items():
            _write(_key_path(os.path.join(run_dir, "tags"), key), value)
        for sub in ("metrics", "params", "tags"):  # MLflow's FileStore requires them
            os.makedirs(os.path.join(run_dir, sub), exist_ok=True)
        for key in run.data.metrics:
            series = lines.get((info.run_id, key), [])
            _write(_key_path(os.path.join(run_dir, "metrics"), key), "".join(series))
            report.points += len(series)
        art_dir = os.path.join(run_dir, "artifacts")
        os.makedirs(art_dir, exist_ok=True)
        if artifacts and client.list_artifacts(info.run_id):
            client.download_artifacts(info.run_id, "", art_dir)
            report.artifacts += sum(len(files) for _, _, files in os.walk(art_dir))
        report.runs += 1


def export_mlflow(
    to: str,
    tracking_uri: str | None = None,
    experiments: Sequence[str] | None = None,
    *,
    artifacts: bool = True,
) -> ExportReport:
    """Write the evtrack store at ``tracking_uri`` as an MLflow store at ``to``: an empty
    folder (file store) or a ``sqlite:///`` URI (through ``mlflow migrate-filestore``)."""
    started = time.perf_counter()
    client = evtrack.MlflowClient(tracking_uri)
    report = ExportReport(to)
    if to.startswith("file://") or "://" not in to:
        root = os.path.abspath(
            os.path.expanduser(to[len("file://") :] if to.startswith("file://") else to)
        )
        _write_file_store(client, root, experiments, artifacts, report)
    elif to.startswith("sqlite:///"):
        path = to[len("sqlite:///") :]
        if os.path.exists(path):
            raise InvalidParameterValue(f"{path!r} exists: export writes a new database.")
        try:
            import mlflow  # noqa: F401 - only to check that MLflow can run the migration
        except ImportError as exc:
            raise InvalidParameterValue(
                "Exporting to a database uses MLflow's own migration: pip install "
                "'evtrack[mlflow]', or export to a folder and run `mlflow migrate-filestore`."
            ) from exc
        with tempfile.TemporaryDirectory(prefix="evtrack-export-") as tmp:
            _write_file_store(client, os.path.join(tmp, "mlruns"), experiments, artifacts, report)
            # Artifacts must outlive the temporary file store: keep them beside the database.
            art_root = os.path.join(os.path.dirname(os.path.abspath(path)), "mlartifacts")
            _relocate_artifacts(os.path.join(tmp, "mlruns"), art_root)
            proc = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "mlflow",
                    "migrate-filestore",
                    "--source",
                    tmp,
                    "--target",
                    to,
                    "--no-progress",
                ],
                capture_output=True,
                text=True,
                env={**os.environ, "MLFLOW_ALLOW_FILE_STORE": "true"},
            )
            if proc.returncode != 0:
                raise InvalidParameterValue(
                    f"mlflow migrate-filestore failed: {proc.stderr.strip()[-2000:]}"
                )
    else:
        raise InvalidParameterValue(
            f"Cannot export to {to!r}: give an empty folder (MLflow file store) or a "
            "sqlite:/// URI. MLflow's own migration writes only SQLite; for PostgreSQL or "
            "MySQL, export to SQLite and move it with your database's tools."
        )
    report.seconds = time.perf_counter() - started
    return report


def _relocate_artifacts(store_root: str, art_root: str) -> None:
    """Move each run's artifacts to ``art_root/<exp>/<run>/artifacts`` and point the meta
    files there, before the temporary file store is migrated and thrown away."""
    for parent in (store_root, os.path.join(store_root, ".trash")):
        if not os.path.isdir(parent):
            continue
        for exp_id in os.listdir(parent):
            exp_dir = os.path.join(parent, exp_id)
            meta_path = os.path.join(exp_dir, "meta.yaml")
            if exp_id.startswith(".") or not os.path.isfile(meta_path):
                continue
            with open(meta_path, encoding="utf-8") as f:
                meta = yaml.safe_load(f)
            meta["artifact_location"] = "file://" + os.path.join(art_root, exp_id)
            _yaml(meta_path, meta)
            for run_id in os.listdir(exp_dir):
                run_meta = os.path.join(exp_dir, run_id, "meta.yaml")
                if not os.path.isfile(run_meta):
                    continue
                target = os.path.join(art_root, exp_id, run_id, "artifacts")
                os.makedirs(os.path.dirname(target), exist_ok=True)
                shutil.move(os.path.join(exp_dir, run_id, "artifacts"), target)
                os.makedirs(os.path.join(exp_dir, run_id, "artifacts"), exist_ok=True)
                with open(run_meta, encoding="utf-8") as f:
                    meta = yaml.safe_load(f)
                meta["artifact_uri"] = "file://" + target
                _yaml(run_meta, meta)
