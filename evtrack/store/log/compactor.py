"""A long-running compactor: what ``evtrack compact --watch`` runs next to a team's server.

Writers only append segments; readers are fast when an experiment's events are in a
few compacted files (see :mod:`evtrack.store.log.compaction`). A training script
compacts its own run at ``end_run`` (``auto_compact``), but runs logged through
``evtrack server``, by the stock MLflow client, or by scripts that die before
``end_run`` leave their segments uncovered. A :class:`Compactor` watches the store
(:class:`~evtrack.store.log.watch.StoreWatcher`: watchdog on a local folder, listing
on an object store) and

* compacts a **run as it ends**: when a new segment of the run holds its ``end_time``
  (and again when late segments of a run it saw end arrive);
* compacts an **experiment** when its uncovered segments reach ``threshold``, which
  also folds in runs that never end (a crashed script, a long-running service).

At start it looks at every experiment once, so what happened while it was down is
caught up. Several compactors may watch the same store (a replica per host, an
overlap during a deploy): the manifest protocol makes racing compactions safe; the
loser retries on the new manifest or finds nothing left to do. Nothing is ever lost
by stopping one: compaction is an optimisation over immutable segments.

Limits: a run that ended before this compactor started and gets a late segment later
waits for the experiment threshold. Garbage collection of replaced segments is
``evtrack gc``'s job, not this one's.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from evtrack.store.log.compaction import (
    CompactionResult,
    compact_experiment,
    compact_run,
    compact_runs,
)
from evtrack.store.log.snapshot import read_segment_tables, take_snapshot
from evtrack.store.log.watch import StoreWatcher

if TYPE_CHECKING:  # pragma: no cover
    from evtrack.store.log.layout import Store
    from evtrack.store.log.segments import SegmentName

__all__ = ["Compactor", "WatchReport"]

_log = logging.getLogger(__name__)

#: Uncovered segments that make a whole experiment worth compacting.
DEFAULT_THRESHOLD = 256


@dataclass
class WatchReport:
    """What a compactor did while it ran."""

    runs: int = 0  # runs compacted as they ended (alone or in a batch)
    experiments: int = 0  # experiment compactions that covered or merged something
    gave_up: int = 0  # compactions that lost every race (another compactor won)
    errors: list[str] = field(default_factory=list)


class Compactor:
    """Compacts runs as they end and experiments past ``threshold`` uncovered segments.

    ``on_result`` is called with each :class:`CompactionResult` that did something (the
    CLI prints them). ``settle`` seconds of quiet are waited after a change before
    acting, so a burst of flushes costs one compaction.
    """

    def __init__(
        self,
        store: Store,
        *,
        threshold: int = DEFAULT_THRESHOLD,
        interval: float = 2.0,
        settle: float = 0.2,
        use_watchdog: bool | None = None,
        on_result: Callable[[CompactionResult], None] | None = None,
    ) -> None:
        if threshold < 1:
            from evtrack.errors import InvalidParameterValue

            raise InvalidParameterValue(f"threshold must be at least 1, got {threshold}.")
        self.store = store
        self.threshold = threshold
        self.settle = settle
        self.watcher = StoreWatcher(store, interval=interval, use_watchdog=use_watchdog)
        self.on_result = on_result
        self.report = WatchReport()
        self._ended: set[str] = set()  # runs seen ending: late segments compact them again

    @property
    def mode(self) -> str | None:
        return self.watcher.mode

    def run(self, stop: threading.Event, ready: Callable[[], None] | None = None) -> WatchReport:
        """Watch and compact until ``stop`` is set; returns what was done.

        Subscribes before the first sweep, so a run ending during the sweep is seen.
        ``ready`` is called once watching has started (the CLI prints a line).
        """
        sub = self.watcher.subscribe(None)
        try:
            if ready is not None:
                ready()
            for experiment_id in self.store.list_experiment_ids():
                if stop.is_set():
                    break
                self._check(experiment_id, None)
            while not stop.is_set():
                changes = sub.wait(0.5)
                if not changes:
                    continue
                if self.settle > 0 and not stop.wait(self.settle):
                    changes += sub.wait(0)
                touched: dict[str, set[str]] = defaultdict(set)
                for change in changes:
                    touched[change.experiment_id] |= change.run_ids
                for experiment_id, run_ids in touched.items():
                    if stop.is_set():
                        break
                    self._check(experiment_id, run_ids)
        finally:
            sub.close()
            self.watcher.close()
        return self.report

    # -- deciding ----------------------------------------------------------------------

    def _check(self, experiment_id: str, run_ids: set[str] | None) -> None:
        """Compact what is due in one experiment (``run_ids``: the runs that changed)."""
        try:
            snap = take_snapshot(self.store, experiment_id, history=False)
            if len(snap.segments) >= self.threshold:
                self._record(compact_experiment(self.store, experiment_id))
                return
            by_run: dict[str, list[tuple[str, SegmentName]]] = defaultdict(list)
            for path, seg in snap.segments:
                if seg.scope != "_" and (run_ids is None or seg.scope in run_ids):
                    by_run[seg.scope].append((path, seg))
            ended = [
                run_id
                for run_id, segments in sorted(by_run.items())
                if run_id in self._ended or _ends(self.store, segments)
            ]
            self._ended.update(ended)
            if len(ended) == 1:
                self._record(compact_run(self.store, experiment_id, ended[0]))
            elif ended:  # a burst of runs ending (a sweep): one compaction for all
                self._record(compact_runs(self.store, experiment_id, ended))
        except Exception as exc:  # noqa: BLE001 - keep watching; the next change retries
            message = f"experiment {experiment_id}: {type(exc).__name__}: {exc}"
            _log.warning("evtrack compact --watch: %s", message)
            self.report.errors.append(message)

    def _record(self, result: CompactionResult) -> None:
        if result.gave_up:
            self.report.gave_up += 1
        elif result.segments or result.files_replaced:
            if result.run_id is None and not result.batch:
                self.report.experiments += 1
            else:
                self.report.runs += result.runs
        else:
            return  # another compactor covered it first: nothing to tell
        if self.on_result is not None:
            self.on_result(result)


def _ends(store: Store, segments: list[tuple[str, SegmentName]]) -> bool:
    """Whether these segments of a run hold its end (a ``run`` event ``end_time``)."""
    import pyarrow.compute as pc

    try:
        tables, _ = read_segment_tables(store, segments)
    except FileNotFoundError:
        return False  # compacted and collected meanwhile: nothing left to do
    for table in tables:
        kind = pc.cast(table.column("kind"), "string")
        key = pc.cast(table.column("key"), "string")
        hit = pc.and_(pc.equal(kind, "run"), pc.equal(key, "end_time"))
        if pc.any(hit).as_py():
            return True
    return False
