"""``import_mlflow``: copy an MLflow store's history into an evtrack store.

Experiments are matched by name (their ids are remapped: evtrack numbers its own), runs
keep their ids, names, status, times, parent links (the ``mlflow.parentRunId`` tag),
params, tags, full metric histories and artifacts; deleted runs and experiments arrive
deleted. Everything goes through evtrack's public client API.

Resumable and idempotent per run, without a journal: before writing, the importer reads
what the evtrack store already holds for each run (params, tags, status, points per
metric key) and writes only the difference. Each metric key's history is written as one
``log_metric_series`` call, i.e. one segment, so an interrupted import leaves every key
either complete or absent, never half there. Importing the same source twice adds no
event. The one thing a crash can leave behind is a run created but still RUNNING: the
next import completes it.
"""

from __future__ import annotations

import os
import tempfile
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import evtrack
from evtrack.entities import Param, RunTag
from evtrack.errors import ResourceAlreadyExists
from evtrack.migrate.source import Source, SourceExperiment, SourceRun, open_source

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa

__all__ = ["ImportReport", "import_mlflow"]


@dataclass
class ImportReport:
    """What was read from the source and what the evtrack store holds afterwards."""

    source: str
    destination: str
    experiments: dict[str, str] = field(default_factory=dict)  # source id -> evtrack id
    runs_imported: int = 0
    runs_skipped: int = 0
    points_written: int = 0
    artifacts_copied: int = 0
    #: the import itself: reading the source and writing evtrack's store
    seconds: float = 0.0
    #: reading both stores back for ``counts`` afterwards
    count_seconds: float = 0.0
    #: name -> (in the source, in evtrack): experiments, runs, deleted runs, params,
    #: tags, metric points, for the experiments imported.
    counts: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def points_per_second(self) -> float:
        return self.points_written / self.seconds if self.seconds else 0.0


class _Progress:
    """A tqdm bar when tqdm is installed and wanted, else nothing."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.bar = None
        if enabled:
            try:
                from tqdm import tqdm
            except ImportError:  # the bar is optional (the migrate extra)
                pass
            else:
                self.bar = tqdm(total=total, unit="run", desc="import", dynamic_ncols=True)

    def step(self, points: int) -> None:
        if self.bar is not None:
            self.bar.update(1)
            # a string: tqdm would print a number as 7e+4
            self.bar.set_postfix(points=f"{points:,}", refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class _Prefetch:
    """The source's metric histories of ``runs``, read ``depth`` runs ahead on a thread.

    Reading the source (SQLite through ADBC, metric files, HTTP) and writing evtrack's
    segments (Arrow, Parquet encoding, file writes) both spend much of their time outside
    the GIL, so they overlap: on two idle cores the 10 M-point benchmark's import takes
    the writing's time instead of the sum. Every
    ``Source.metrics`` call happens on the one worker thread, in run order; a source
    that keeps a connection per thread (:class:`~evtrack.migrate.database.DatabaseSource`)
    opens its own there. At most ``depth`` runs' histories wait in memory.
    """

    def __init__(self, source: Source, runs: Sequence[SourceRun], depth: int = 2) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.source = source
        self.runs = list(runs)
        self.depth = depth
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="evtrack-import-read")
        self.pending: deque[tuple[SourceRun, Future[dict[str, pa.Table]]]] = deque()

    def __enter__(self) -> Iterator[tuple[SourceRun, dict[str, pa.Table]]]:
        return self._iterate()

    def _iterate(self) -> Iterator[tuple[SourceRun, dict[str, pa.Table]]]:
        upcoming = iter(self.runs)
        for run in upcoming:
            self.pending.append((run, self.pool.submit(self.source.metrics, run)))
            if len(self.pending) >= self.depth:
                break
        while self.pending:
            run, future = self.pending.popleft()
            nxt = next(upcoming, None)
            if nxt is not None:
                self.pending.append((nxt, self.pool.submit(self.source.metrics, nxt)))
            yield run, future.result()

    def __exit__(self, *exc: object) -> None:
        for _run, future in self.pending:
            future.cancel()
        self.pool.shutdown(wait=True)


class _Importer:
    def __init__(self, source: Source, client: evtrack.MlflowClient, artifacts: bool) -> None:
        self.source = source
        self.client = client
        self.artifacts = artifacts
        self.report = ImportReport(source.uri, client.tracking_uri)
        self.progress = _Progress(0, False)
        self.source_counts: dict[str, dict[str, int]] = {}
        self._load_state()

    def _load_state(self) -> None:
        """What the evtrack store already holds, in one query over the whole store (each
        ``sql`` call reads the store afresh: four separate queries cost four reads)."""
        self.have_runs: dict[str, tuple] = {}
        self.have_points: dict[tuple[str, str], int] = {}
        # Params and current tags of every run, so that checking a run already imported
        # costs no per-run read (a get_run is a DuckDB fold of its own).
        self.have_params: dict[str, dict[str, str]] = {}
        self.have_tags: dict[str, dict[str, str]] = {}
        rows = self.client.sql(
            """select 'r', run_id, status, end_time, lifecycle_stage from runs
            union all select 'm', run_id, key, count(*), null from metrics group by all
            union all select 'p', run_id, key, null, value from params
            union all select 't', run_id, key, null, value from tags"""
        ).fetchall()
        for kind, run_id, a, b, c in rows:
            if kind == "r":
                self.have_runs[run_id] = (a, b, c)
            elif kind == "m":
                self.have_points[(run_id, a)] = b
            else:
                target = self.have_params if kind == "p" else self.have_tags
                target.setdefault(run_id, {})[a] = c

    def _source_counts(self, run: SourceRun) -> dict[str, int]:
        """Points per key in the source, asked once per run (the side-by-side counts at the
        end reuse it: an HTTP source would otherwise fetch every history again)."""
        counts = self.source_counts.get(run.run_id)
        if counts is None:
            counts = self.source_counts[run.run_id] = self.source.metric_counts(run)
        return counts

    # -- experiments ---------------------------------------------------------------------

    def experiment(self, exp: SourceExperiment, runs: Sequence[SourceRun]) -> None:
        client = self.client
        target = client.get_experiment_by_name(exp.name)
        if target is None:
            exp_id = client.create_experiment(exp.name, tags=exp.tags or None)
            target = client.get_experiment(exp_id)
        else:
            for key, value in exp.tags.items():
                if target.tags.get(key) != value:
                    client.set_experiment_tag(target.experiment_id, key, value)
        self.report.experiments[exp.experiment_id] = target.experiment_id
        todo = [r for r in runs if not self._complete(r)]
        self.report.runs_skipped += len(runs) - len(todo)
        restored = False
        if todo and target.lifecycle_stage == "deleted":
            client.restore_experiment(target.experiment_id)  # runs need an active home
            restored = True
        with _Prefetch(self.source, todo) as fetched:
            for run, tables in fetched:
                self.run(run, target.experiment_id, tables)
                self.progress.step(self.report.points_written)
        for _ in range(len(runs) - len(todo)):
            self.progress.step(self.report.points_written)
        if exp.lifecycle_stage == "deleted" and (restored or target.lifecycle_stage != "deleted"):
            client.delete_experiment(target.experiment_id)

    # -- runs ------------------------------------------------------------------------------

    def _complete(self, run: SourceRun) -> bool:
        have = self.have_runs.get(run.run_id)
        if have is None:
            return False
        status, end_time, stage = have
        if stage != run.lifecycle_stage or status != run.status:
            return False
        if run.status != "RUNNING" and run.end_time is not None and end_time != run.end_time:
            return False
        counts = self._source_counts(run)
        if any(self.have_points.get((run.run_id, k), 0) != n for k, n in counts.items()):
            return False
        params = self.have_params.get(run.run_id, {})
        tags = self.have_tags.get(run.run_id, {})
        return all(params.get(k) == v for k, v in run.params.items()) and all(
            tags.get(k) == v for k, v in run.tags.items()
        )

    def run(self, run: SourceRun, experiment_id: str, tables: dict[str, pa.Table]) -> None:
        """Bring one run up to date; ``tables`` are its metric histories from the source."""
        client = self.client
        have = self.have_runs.get(run.run_id)
        if have is None:
            tags = dict(run.tags)
            try:
                client.create_run(
                    experiment_id,
                    start_time=run.start_time,
                    tags=tags,
                    run_name=run.run_name or None,
                    run_id=run.run_id,
                    user_id=run.user_id or None,
                )
            except ResourceAlreadyExists:
                self._finish_claimed_run(run, experiment_id)
            params, tags_now = {}, dict(tags)
            stage = "active"
        else:
            stage = have[2]
            if stage == "deleted":
                client.restore_run(run.run_id)  # finish it, then delete it again below
            params = self.have_params.get(run.run_id, {})
            tags_now = self.have_tags.get(run.run_id, {})
        new_params = [Param(k, v) for k, v in run.params.items() if k not in params]
        new_tags = [RunTag(k, v) for k, v in run.tags.items() if tags_now.get(k) != v]
        if new_params or new_tags:
            client.log_batch(run.run_id, params=new_params, tags=new_tags, synchronous=False)
        self.source_counts[run.run_id] = {k: t.num_rows for k, t in tables.items()}
        for key, table in tables.items():
            have_n = self.have_points.get((run.run_id, key), 0)
            if have_n >= table.num_rows:
                continue
            rest = table.slice(have_n)
            client.log_metric_series(
                run.run_id, key, rest["value"], rest["step"], rest["timestamp"]
            )
            self.report.points_written += rest.num_rows
        if self.artifacts:
            self.copy_artifacts(run)
        if run.status != "RUNNING" and (
            have is None or have[0] != run.status or have[1] != run.end_time
        ):
            client.set_terminated(run.run_id, run.status, run.end_time)
        else:
            client.flush()
        if run.lifecycle_stage == "deleted":
            client.delete_run(run.run_id)
        self.report.runs_imported += 1

    def _finish_claimed_run(self, run: SourceRun, experiment_id: str) -> None:
        """A run id claimed by an import killed before the run's first events were flushed:
        the claim exists, the run does not, and ``create_run`` refuses the id. Write the
        creation events ``create_run`` would have written. The one place the importer goes
        past the client's public methods (to its store's writer): the client has no public way to
        finish creating a claimed run."""
        from evtrack.clock import now_ms
        from evtrack.errors import StoreError
        from evtrack.store.log.store import LogStore

        client = self.client
        store = client.store
        if not isinstance(store, LogStore):  # the claim and its repair are event-log things
            raise StoreError(
                f"Run '{run.run_id}' was claimed by an interrupted import but never created; "
                f"{type(store).__name__} cannot finish it. Import into the store directly."
            )
        if store.layout.experiment_of_run(run.run_id) != experiment_id:
            raise ResourceAlreadyExists(
                f"Run '{run.run_id}' already exists in another experiment of {client.tracking_uri}."
            )
        location = client.get_experiment(experiment_id).artifact_location
        attrs = {
            "experiment_id": experiment_id,
            "run_name": run.run_name or run.tags.get("mlflow.runName") or run.run_id,
            "user_id": run.user_id or run.tags.get("mlflow.user") or "unknown",
            "status": "RUNNING",
            "start_time": str(run.start_time if run.start_time is not None else now_ms()),
            "lifecycle_stage": "active",
            "artifact_uri": f"{location.rstrip('/')}/{run.run_id}/artifacts",
        }
        t = now_ms()
        for key, value in attrs.items():
            store.writer.add(experiment_id, run.run_id, "run", key, value, time_ms=t)
        tags = {**run.tags, "mlflow.runName": attrs["run_name"]}
        client.log_batch(run.run_id, tags=[RunTag(k, v) for k, v in tags.items()], synchronous=True)

    def copy_artifacts(self, run: SourceRun) -> None:
        fs, root, files = self.source.artifact_files(run)
        if not files:
            return
        present = set(self._artifact_paths(run.run_id, None))
        protocols = fs.protocol if isinstance(fs.protocol, (tuple, list)) else (fs.protocol,)
        local = "file" in protocols or "local" in protocols
        with tempfile.TemporaryDirectory(prefix="evtrack-import-") as tmp:
            for rel in files:
                if rel in present:
                    continue
                src = f"{root}/{rel}"
                if not local:
                    dst = os.path.join(tmp, *rel.split("/"))
                    os.makedirs(os.path.dirname(dst), exist_ok=True)
                    fs.get_file(src, dst)
                    src = dst
                folder = os.path.dirname(rel)
                self.client.log_artifact(run.run_id, src, folder or None)
                self.report.artifacts_copied += 1

    def _artifact_paths(self, run_id: str, path: str | None) -> list[str]:
        out = []
        for info in self.client.list_artifacts(run_id, path):
            if info.is_dir:
                out.extend(self._artifact_paths(run_id, info.path))
            else:
                out.append(info.path)
        return out

    # -- the side-by-side counts ----------------------------------------------------------

    def count(self, chosen: Sequence[SourceExperiment], runs: dict[str, list[SourceRun]]) -> None:
        src_runs = [r for e in chosen for r in runs[e.experiment_id]]
        points = sum(sum(self._source_counts(r).values()) for r in src_runs)
        ids = sorted(self.report.experiments[e.experiment_id] for e in chosen)
        counts = getattr(self.client.store, "counts", None)
        if counts is not None:  # the event log: without decoding every point
            have = counts(ids)
            n_runs, n_deleted, n_params, n_tags, n_points = (
                have[k] for k in ("runs", "deleted runs", "params", "tags", "metric points")
            )
        else:  # an evtrack server: through its SQL endpoint
            in_ids = "experiment_id in (select unnest($ids))"
            n_runs, n_deleted, n_params, n_tags, n_points = self.client.sql(
                f"""select
                    (select count(*) from runs where {in_ids}),
                    (select count(*) from runs where {in_ids} and lifecycle_stage = 'deleted'),
                    (select count(*) from params where {in_ids}),
                    (select count(*) from tags where {in_ids}),
                    (select count(*) from metrics where {in_ids})""",
                {"ids": ids},
            ).fetchall()[0]
        self.report.counts = {
            "experiments": (len(chosen), len(ids)),
            "runs": (len(src_runs), n_runs),
            "deleted runs": (sum(r.lifecycle_stage == "deleted" for r in src_runs), n_deleted),
            "params": (sum(len(r.params) for r in src_runs), n_params),
            "tags": (sum(len(r.tags) for r in src_runs), n_tags),
            "metric points": (points, n_points),
        }


def import_mlflow(
    source: str,
    tracking_uri: str | None = None,
    experiments: Sequence[str] | None = None,
    *,
    artifacts: bool = True,
    progress: bool = False,
) -> ImportReport:
    """Import an MLflow store (file store folder, database URI or ``http(s)://`` server)
    into the evtrack store at ``tracking_uri``; ``experiments`` limits it to those names.

    ``progress`` shows a tqdm bar (``pip install 'evtrack[migrate]'``). Returns an
    :class:`ImportReport` whose ``counts`` put the source's numbers beside evtrack's.
    """
    import time

    started = time.perf_counter()
    src = open_source(source)
    try:
        client = evtrack.MlflowClient(tracking_uri)
        imp = _Importer(src, client, artifacts)
        chosen = [e for e in src.experiments() if not experiments or e.name in set(experiments)]
        if experiments:
            missing = set(experiments) - {e.name for e in chosen}
            if missing:
                from evtrack.errors import ResourceDoesNotExist

                raise ResourceDoesNotExist(
                    f"No experiment named {', '.join(sorted(missing))} in {source}."
                )
        runs = {e.experiment_id: src.runs(e.experiment_id) for e in chosen}
        imp.progress = _Progress(sum(len(v) for v in runs.values()), progress)
        try:
            for exp in chosen:
                imp.experiment(exp, runs[exp.experiment_id])
        finally:
            imp.progress.close()
        client.flush()
        imp.report.seconds = time.perf_counter() - started
        imp.count(chosen, runs)
        imp.report.count_seconds = time.perf_counter() - started - imp.report.seconds
        return imp.report
    finally:
        src.close()
