"""A plain-Python summary of an experiment's runs, so a fresh process's first search needs
neither pyarrow nor DuckDB.

The saved run index (:mod:`evtrack.store.log.index_cache`) spares a new process the
folding, but reading it and searching it still import pyarrow (~0.18 s) and DuckDB
(~0.14 s): ten times what MLflow's sqlite store spends on a first search of 1,000 runs.
When the index is saved, this module saves next to it (same folder, same key, its own
``.summary`` file) what a search answers with, per run, as plain types in a ``marshal``
blob (never pickle: it holds only lists, strings and numbers):

* the run's row of the ``runs`` view (every :class:`~evtrack.entities.RunInfo` field);
* its params and tags, and its latest metrics ``(key, value, timestamp, step)``;
* its dataset inputs ``(name, digest, context)``, which the ``datasets.*`` filters read.

With it the format version, the versions of the event schema and views, the store and
experiment, the manifest mark and the segment names the index covered. A search uses it
only when a fresh listing proves it current: the same manifest mark, and the events
folder lists *exactly* those segment names (no segment new, none gone). Anything else
(a run logged to since, a compaction, gc, a damaged or other-format file) and the search
takes the index path, which folds and rewrites both files.

Limits: written only for experiments of at most :data:`MAX_RUNS` runs, and only when
the index is saved (so after a few new runs a fresh process takes the index path until
the next save). A process answering from summaries evaluates each search in Python
(~3 ms per 1,000 runs once loaded) and never folds, until the store changes. Writes are atomic (temporary file, then rename), so
processes sharing the folder see one whole file or the other.
"""

from __future__ import annotations

import logging
import marshal
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa

    from evtrack.entities import Run
    from evtrack.store.log.layout import Store

__all__ = ["MAX_RUNS", "RunSummary", "load", "save", "summary_path"]

_log = logging.getLogger(__name__)

#: Bumped whenever the file's layout or the meaning of anything in it changes.
FORMAT = 1
_MAGIC = b"EVTRACK-RUN-SUMMARY\n"

#: Experiments with more runs get no summary. Measured at 10,000 runs of 3 params, 3
#: metrics, 2 tags: a 4.8 MB file, a first search of ~0.09 s (load ~0.03 s, listing, the
#: Python evaluation), later ones ~0.03 s; writing it adds ~0.14 s to each save of the
#: index. Twice that at 20,000 still beats importing pyarrow and DuckDB (~0.3 s); beyond,
#: the index path catches up (1.0 s vs MLflow's 2.2 s at 100,000) and the file would cost
#: every save more than it saves.
MAX_RUNS = 20_000

#: The runs view's columns, in the order a summary's run row holds them.
RUN_COLUMNS = (
    "run_id",
    "experiment_id",
    "run_name",
    "user_id",
    "status",
    "start_time",
    "end_time",
    "lifecycle_stage",
    "artifact_uri",
)

Pairs = list[tuple[str, str]]
Metrics = list[tuple[str, float, int, int]]  # key, value, timestamp, step
Inputs = list[tuple[str | None, str | None, str | None]]  # name, digest, context


@dataclass
class SummaryRun:
    """One run as a search reads it."""

    info: dict[str, Any]  # the runs view's row (RUN_COLUMNS)
    params: dict[str, str]
    tags: dict[str, str]
    metrics: Metrics
    inputs: Inputs

    def to_run(self) -> Run:
        """A fresh :class:`~evtrack.entities.Run` (callers may change it)."""
        from evtrack.entities import Metric, Run, RunData, RunInfo

        data = RunData(params=dict(self.params), tags=dict(self.tags))
        for key, value, ts, step in self.metrics:
            data.metrics[key] = value
            data._metric_objs.append(Metric(key, value, ts, step))
        fields = RunInfo.__dataclass_fields__
        return Run(RunInfo(**{k: self.info[k] for k in fields}), data)


@dataclass
class RunSummary:
    """An experiment's runs at one manifest mark and set of segment names."""

    mark: list[str]
    names: frozenset[str]
    runs: list[SummaryRun]


def summary_path(store: Store, experiment_id: str) -> str | None:
    """Where the summary lives: next to the saved index, or None when there is none."""
    from evtrack.store.log.index_cache import cache_path

    path = cache_path(store, experiment_id)
    return None if path is None else path.rsplit(".", 1)[0] + ".summary"


def from_tables(
    mark: list[str], names: frozenset[str], tables: dict[str, pa.Table]
) -> RunSummary | None:
    """The summary of an experiment's materialised views; None beyond :data:`MAX_RUNS`."""
    runs_table = tables["runs"]
    if runs_table.num_rows > MAX_RUNS:
        return None

    # One object per distinct string (keys, repeated values): marshal writes an object
    # met again as a back-reference, so the file is smaller and decodes faster. Strings
    # only: numbers that compare equal (0.0 and -0.0, 1 and 1.0) must stay apart.
    memo: dict[str, str] = {}

    def share(col: list[Any]) -> list[Any]:
        return [memo.setdefault(v, v) if type(v) is str else v for v in col]

    def columns(name: str, cols: tuple[str, ...]) -> list[tuple[Any, ...]]:
        t = tables[name]
        return list(zip(*(share(t.column(c).to_pylist()) for c in cols)))

    runs: dict[str, SummaryRun] = {}
    for row in columns("runs", RUN_COLUMNS):
        info = dict(zip(RUN_COLUMNS, row))
        runs[info["run_id"]] = SummaryRun(info, {}, {}, [], [])
    for rid, key, value in columns("params", ("run_id", "key", "value")):
        if rid in runs:
            runs[rid].params[key] = value
    for rid, key, value in columns("tags", ("run_id", "key", "value")):
        if rid in runs:
            runs[rid].tags[key] = value
    metric_cols = ("run_id", "key", "value", "timestamp", "step")
    for rid, key, value, ts, step in columns("latest_metrics", metric_cols):
        if rid in runs:
            runs[rid].metrics.append((key, value, ts, step))
    for rid, name, digest, context in columns("inputs", ("run_id", "name", "digest", "context")):
        if rid in runs:
            runs[rid].inputs.append((name, digest, context))
    return RunSummary(list(mark), frozenset(names), list(runs.values()))


def _header(store: Store, experiment_id: str) -> list[Any]:
    from evtrack.store.log.events import SCHEMA_VERSION
    from evtrack.store.log.views import VIEWS_VERSION

    return [FORMAT, SCHEMA_VERSION, VIEWS_VERSION, store.uri, experiment_id]


def save(store: Store, experiment_id: str, summary: RunSummary | None) -> None:
    """Write (or, for None, remove) an experiment's summary; best effort."""
    path = summary_path(store, experiment_id)
    if path is None:
        return
    if summary is None:
        try:
            os.unlink(path)  # an older, smaller experiment's summary: never current again
        except OSError:
            pass
        return
    from evtrack.store.log.index_cache import write_file

    body = [
        _header(store, experiment_id),
        summary.mark,
        "\n".join(sorted(summary.names)),  # one string: decoded much faster than a list
        [
            [[r.info[c] for c in RUN_COLUMNS], r.params, r.tags, r.metrics, r.inputs]
            for r in summary.runs
        ],
    ]
    write_file(path, lambda: _MAGIC + marshal.dumps(body, 4))


def load(store: Store, experiment_id: str) -> RunSummary | None:
    """The saved summary of an experiment, or None (none, damaged, other format)."""
    path = summary_path(store, experiment_id)
    if path is None:
        return None
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return None
    try:
        if not data.startswith(_MAGIC):
            return None
        header, mark, names, rows = marshal.loads(data[len(_MAGIC) :])
        if header != _header(store, experiment_id):
            return None
        runs = [
            SummaryRun(dict(zip(RUN_COLUMNS, info)), params, tags, metrics, inputs)
            for info, params, tags, metrics, inputs in rows
        ]
        return RunSummary(list(mark), frozenset(names.split("\n") if names else ()), runs)
    except Exception as exc:  # noqa: BLE001 - a damaged file is ignored and rewritten
        _log.debug("evtrack: ignoring a damaged run summary %s: %s", path, exc)
        return None
