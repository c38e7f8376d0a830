"""Metric series for charts: one run's history of one key, sorted, indexed, cached.

A :class:`Series` holds the points of one (run, key) as NumPy arrays in step order
plus a :class:`~evtrack.web.downsample.SeriesIndex`, so every chart request (first
draw, zoom, live refresh) is a binary search and a few thousand candidate points,
whatever the length of the history.

The cache is keyed by the run's segment names, like snapshots (same rules, see
:mod:`evtrack.web.snapshots`): new segments are read alone and merged; a listing that
lost names (garbage collection) reads the run again through
:func:`evtrack.store.log.views.load_events`, which reads compacted files too. It holds at most ``max_points`` points in
total (least recently used series go first).
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import pyarrow as pa

    from evtrack.store.log.layout import Store

__all__ = ["Series", "SeriesCache", "X_AXES"]

#: Chart x axes: ``step``, ``relative`` (seconds since the run started) and ``wall``
#: (seconds since the epoch, shown as dates).
X_AXES = ("step", "relative", "wall")


def _points(tables: list[pa.Table], key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(step, timestamp, value) of every ``metric`` event of ``key`` in ``tables``."""
    import numpy as np

    from evtrack.web.summary import _codes, _numbers

    steps, stamps, values = [], [], []
    for table in tables:
        for batch in table.to_batches():
            is_metric, _ = _codes(batch.column("kind"), "metric")
            is_key, _ = _codes(batch.column("key"), key)
            mask = is_metric & is_key
            count = int(np.count_nonzero(mask))
            if count == 0:
                continue
            columns = [_numbers(batch, "step", 0), _numbers(batch, "timestamp", 0)]
            columns.append(_numbers(batch, "value", np.nan))
            if count < batch.num_rows:  # else the whole batch is this series: no copy
                rows = np.flatnonzero(mask)
                columns = [c[rows] for c in columns]
            steps.append(columns[0])
            stamps.append(columns[1])
            values.append(columns[2])
    if not steps:
        empty_i, empty_f = np.empty(0, np.int64), np.empty(0, np.float64)
        return empty_i, empty_i, empty_f
    if len(steps) == 1:
        return steps[0], stamps[0], values[0]
    return np.concatenate(steps), np.concatenate(stamps), np.concatenate(values)


def _sorted(step: np.ndarray, stamp: np.ndarray, value: np.ndarray):
    """In (step, timestamp) order; a no-op pass when already ordered (the usual case)."""
    import numpy as np

    if len(step) > 1:
        # Slice comparisons, not np.diff: no 80 MB temporary per ten million points.
        ordered = bool((step[1:] > step[:-1]).all()) or (
            bool((step[1:] >= step[:-1]).all())
            and bool(((step[1:] > step[:-1]) | (stamp[1:] >= stamp[:-1])).all())
        )
        if not ordered:
            order = np.lexsort((stamp, step))
            step, stamp, value = step[order], stamp[order], value[order]
    return step, stamp, value


class Series:
    """The points of one metric of one run, in step order."""

    def __init__(self, step: np.ndarray, stamp: np.ndarray, value: np.ndarray) -> None:

        self.step, self.stamp, self.value = _sorted(step, stamp, value)
        self.n = len(self.step)
        self.version = 0
        self._index: Any = None
        self._by_time: Any = None  # (order, SeriesIndex) when timestamps are not monotonic
        self._time_monotonic = bool(self.n < 2 or (self.stamp[1:] >= self.stamp[:-1]).all())
        self._lock = threading.Lock()

    def _indexed(self, axis: str):
        """(positions in x order or None, x values, y values, SeriesIndex)."""
        from evtrack.web.downsample import SeriesIndex

        with self._lock:
            if axis == "step" or self._time_monotonic:
                if self._index is None:
                    self._index = SeriesIndex(self.value)
                return None, self._index
            if self._by_time is None:
                import numpy as np

                order = np.argsort(self.stamp, kind="stable")
                self._by_time = (order, SeriesIndex(self.value[order]))
            return self._by_time

    def window(
        self,
        axis: str = "step",
        lo: float | None = None,
        hi: float | None = None,
        width: int = 1000,
        origin_ms: int | None = None,
    ) -> dict[str, Any]:
        """The points to draw ``[lo, hi]`` (x units of ``axis``) ``width`` pixels wide.

        Returns ``x``, ``y`` (lists; non-finite y as None, their real values in
        ``nonfinite``), ``total`` (points in the series), ``in_range`` (points in the
        window) and ``downsampled``. One point beyond each end of the window is
        included so the line runs to the edge when zoomed in.
        """
        import numpy as np

        from evtrack.web.downsample import m4

        width = int(min(max(width, 16), 8192))
        order, index = self._indexed(axis)
        step = self.step if order is None else self.step[order]
        stamp = self.stamp if order is None else self.stamp[order]
        y = self.value if order is None else self.value[order]
        if axis == "step":
            x_all: np.ndarray | None = step
        elif axis == "relative":
            origin = origin_ms if origin_ms is not None else (int(stamp.min()) if self.n else 0)
            x_all = None  # computed on the candidates only: saves a pass over n points
        else:
            origin = 0
            x_all = None
        # Binary search in the native integer unit (step, or ms for time axes): a float
        # needle would make NumPy convert the whole array first.
        keys = step if axis == "step" else stamp
        scale = 1.0 if axis == "step" else 1000.0
        offset = 0 if axis == "step" else origin
        i0, i1 = 0, self.n
        if lo is not None and self.n:
            needle = np.int64(math.ceil(min(max(lo * scale + offset, -(2.0**62)), 2.0**62)))
            i0 = max(int(np.searchsorted(keys, needle, side="left")) - 1, 0)
        if hi is not None and self.n:
            needle = np.int64(math.floor(min(max(hi * scale + offset, -(2.0**62)), 2.0**62)))
            i1 = min(int(np.searchsorted(keys, needle, side="right")) + 1, self.n)
        i1 = max(i1, i0)
        in_range = i1 - i0
        downsampled = in_range > 4 * width
        if downsampled:
            pos = index.candidates(i0, i1, width)
        else:
            pos = np.arange(i0, i1)
        if x_all is not None:
            xs = x_all[pos].astype(np.float64)
        else:
            xs = (stamp[pos] - offset) / scale
        ys = y[pos]
        if downsampled:
            x_lo = xs[0] if lo is None else lo
            x_hi = xs[-1] if hi is None else hi
            keep = m4(xs, ys, float(x_lo), float(x_hi), width)
            xs, ys, pos = xs[keep], ys[keep], pos[keep]
        finite = np.isfinite(ys)
        y_list: list = ys.tolist()
        nonfinite = {}
        if not finite.all():
            for i in np.flatnonzero(~finite).tolist():
                nonfinite[i] = str(y_list[i]).replace("inf", "Infinity").replace("nan", "NaN")
                y_list[i] = None
        return {
            "x": xs.tolist(),
            "y": y_list,
            "step": step[pos].tolist() if axis != "step" else None,
            "nonfinite": nonfinite,
            "total": self.n,
            "in_range": in_range,
            "downsampled": bool(downsampled),
        }


class _Entry:
    __slots__ = ("checked", "paths", "series")

    def __init__(self, paths: frozenset[str], series: Series) -> None:
        self.paths = paths
        self.series = series
        self.checked = time.monotonic()


class SeriesCache:
    """Series by (run id, key), fresh with respect to the run's segments."""

    def __init__(self, store: Store, max_points: int = 40_000_000) -> None:
        self.store = store
        self.max_points = max_points
        self._entries: OrderedDict[tuple[str, str], _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self._building: dict[tuple[str, str], threading.Lock] = {}
        self._pool: Any = None
        self._closed = False

    def prefetch(self, experiment_id: str, run_id: str, keys: list[str]) -> None:
        """Start loading some series in the background (the run page's charts ask next).

        One worker thread: a long history is read while the browser loads the page, and
        the chart's own request then waits for it instead of reading it a second time.
        """
        from concurrent.futures import ThreadPoolExecutor

        with self._lock:
            if self._closed:
                return  # a closed cache starts no thread; get() still reads on demand
            if self._pool is None:
                self._pool = ThreadPoolExecutor(1, thread_name_prefix="evtrack-series")
            pool = self._pool
            for key in keys:
                pool.submit(self._quietly, experiment_id, run_id, key)

    def close(self) -> None:
        """Stop the prefetch thread: queued prefetches are dropped, a running one ends.

        Idempotent. The cache still answers :meth:`get` afterwards (reading on demand),
        it only never prefetches again.
        """
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def _quietly(self, experiment_id: str, run_id: str, key: str) -> None:
        try:
            self.get(experiment_id, run_id, key)
        except Exception:  # noqa: BLE001 - the chart's request reports it
            pass

    def get(self, experiment_id: str, run_id: str, key: str) -> Series:
        import numpy as np

        from evtrack.store.log.snapshot import read_segment_tables
        from evtrack.store.log.views import load_events
        from evtrack.web.snapshots import list_segments, stale

        ident = (run_id, key)
        with self._lock:
            build_lock = self._building.setdefault(ident, threading.Lock())
        with build_lock:
            listing = list_segments(self.store, experiment_id, run_id)
            paths = frozenset(p for p, _ in listing)
            with self._lock:
                entry = self._entries.get(ident)
                if entry is not None:
                    self._entries.move_to_end(ident)
            if entry is not None and stale(entry.checked):
                entry = None
            if entry is not None and entry.paths == paths:
                entry.checked = time.monotonic()
                return entry.series
            series = None
            if entry is not None and entry.paths <= paths:
                try:
                    new = [(p, s) for p, s in listing if p not in entry.paths]
                    tables, _ = read_segment_tables(self.store, new)
                except FileNotFoundError:
                    tables = None
                if tables is not None:
                    old = entry.series
                    s, t, v = _points(tables, key)
                    series = Series(
                        np.concatenate([old.step, s]),
                        np.concatenate([old.stamp, t]),
                        np.concatenate([old.value, v]),
                    )
            if series is None:
                events = load_events(self.store, [experiment_id], run_id)
                series = Series(*_points([events], key))
            with self._lock:
                self._entries[ident] = _Entry(paths, series)
                self._entries.move_to_end(ident)
                total = sum(e.series.n for e in self._entries.values())
                while total > self.max_points and len(self._entries) > 1:
                    _, old_entry = self._entries.popitem(last=False)
                    total -= old_entry.series.n
            return series
