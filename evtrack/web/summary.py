"""Summaries: an experiment's events with each metric history cut down to its latest point.

The runs table, the run page and the experiments list need every run's attributes,
params and tags, but of metrics only the latest value (MLflow's rule, decided by
:func:`evtrack.store.log.fold.latest_metric_positions`). A metric history can be millions of rows; everything
else is small. :func:`summarize` keeps all non-metric events and, per (run, metric
key), the one metric event that wins, so the folded views of :mod:`evtrack.store.log.views`
(``runs``, ``params``, ``tags``, ``latest_metrics``, ``artifacts``...) give the same
answer on the summary as on the full log, except ``metrics``, which is not used here.

Summarising is associative: ``summarize(concat(summarize(a), b))`` equals
``summarize(concat(a, b))``, which is what lets a snapshot absorb new segments
without reading old ones again.

The work is done on the dictionary indices with NumPy: comparing dictionary-encoded
strings through Arrow compute or grouping them in DuckDB decodes every row, which
costs seconds on ten million points; comparing the int32 indices costs milliseconds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from evtrack.store.log.fold import latest_metric_positions

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import pyarrow as pa

__all__ = ["Summary", "summarize"]


class Summary:
    """A summarised event table and the latest event time it has seen (ms, or None)."""

    __slots__ = ("max_time", "table")

    def __init__(self, table: pa.Table, max_time: int | None) -> None:
        self.table = table
        self.max_time = max_time


def _codes(column: pa.Array, wanted: str | None = None) -> tuple[np.ndarray, int]:
    """Integer codes of a dictionary column (nulls -1) and the dictionary size.

    With ``wanted``, returns a boolean mask of rows equal to it instead of codes.
    """
    import numpy as np
    import pyarrow as pa

    if not pa.types.is_dictionary(column.type):
        column = column.dictionary_encode()
    indices = column.indices
    if indices.null_count:
        indices = indices.fill_null(-1)
    codes = indices.to_numpy(zero_copy_only=False)  # int32, zero-copy without nulls
    if wanted is None:
        return codes.astype(np.int64), len(column.dictionary)
    hits = np.flatnonzero(column.dictionary.to_numpy(zero_copy_only=False) == wanted)
    if hits.size == 1:
        return codes == hits[0], len(column.dictionary)
    return np.isin(codes, hits), len(column.dictionary)


def _numbers(batch: pa.RecordBatch, name: str, fill: float | int) -> np.ndarray:
    """A numeric column as NumPy (zero-copy when it has no nulls)."""
    column = batch.column(name)
    if column.null_count:
        column = column.fill_null(fill)
    return column.to_numpy(zero_copy_only=False)


def _unique_events(batch: pa.RecordBatch, rows: np.ndarray) -> np.ndarray:
    """``rows`` without repeats of the same event identity (writer, seq)."""
    import numpy as np

    if rows.size < 2:
        return rows
    writer, _ = _codes(batch.column("writer"))
    seq = _numbers(batch, "seq", -1)
    order = np.lexsort((seq[rows], writer[rows]))
    w, s = writer[rows][order], seq[rows][order]
    first = np.append(True, (w[1:] != w[:-1]) | (s[1:] != s[:-1]))
    return np.sort(rows[order][first])


def _summarize_batch(batch: pa.RecordBatch, dedupe: bool = False) -> tuple[pa.Table, int | None]:
    import numpy as np
    import pyarrow as pa

    n = batch.num_rows
    times = _numbers(batch, "time", 0)
    max_time = int(times.max()) if n else None
    is_metric, _ = _codes(batch.column("kind"), "metric")
    others = np.flatnonzero(~is_metric)
    if dedupe:
        # A segment read twice (listed during a full read, then again as "new") must not
        # count twice in the views that do not fold (inputs).
        others = _unique_events(batch, others)
    if not is_metric.any():
        if others.size == n:
            return pa.Table.from_batches([batch]), max_time
        return pa.Table.from_batches([batch]).take(pa.array(others)), max_time
    rows = np.flatnonzero(is_metric)
    run, _ = _codes(batch.column("run_id"))
    key, n_keys = _codes(batch.column("key"))
    code = run[rows] * (n_keys + 1) + key[rows]
    every = rows.size == n  # a metric-only segment: no copies
    step = _numbers(batch, "step", 0) if every else _numbers(batch, "step", 0)[rows]
    stamp = _numbers(batch, "timestamp", 0) if every else _numbers(batch, "timestamp", 0)[rows]
    value = _numbers(batch, "value", np.nan) if every else _numbers(batch, "value", np.nan)[rows]
    seq = _numbers(batch, "seq", 0) if every else _numbers(batch, "seq", 0)[rows]
    latest = latest_metric_positions(code, step, stamp, value, times if every else times[rows], seq)
    keep = np.sort(np.concatenate([others, rows[latest]]))
    return pa.Table.from_batches([batch]).take(pa.array(keep)), max_time


#: Batches at least this long are summarised one by one (their metric histories shrink
#: before anything is copied); shorter ones are first combined into one batch, since
#: per-batch overhead dominates when a store holds thousands of small segments.
_BIG_BATCH = 65_536


def _combined(batches: list[pa.RecordBatch]) -> pa.RecordBatch | None:
    """One batch holding all of ``batches``.

    ``combine_chunks`` merges differing dictionaries itself and keeps the indices of
    chunks that share one (the readers share a dictionary across segments);
    ``unify_dictionaries`` first would compare every chunk's dictionary with the
    merged one, quadratic over thousands of segments.
    """
    import pyarrow as pa

    if not batches:
        return None
    if len(batches) == 1:
        return batches[0]
    table = pa.Table.from_batches(batches).combine_chunks()
    return table.to_batches()[0] if table.num_rows else None


def summarize(table: pa.Table, max_time: int | None = None) -> Summary:
    """Cut every metric history in ``table`` down to its latest point (see module doc)."""
    import pyarrow as pa

    batches = [b for b in table.to_batches() if b.num_rows]
    small = [b for b in batches if b.num_rows < _BIG_BATCH]
    big = [b for b in batches if b.num_rows >= _BIG_BATCH]
    parts: list[pa.Table] = []
    times = [] if max_time is None else [max_time]
    combined = _combined(small)
    for batch in [*big, *([combined] if combined is not None else [])]:
        part, t = _summarize_batch(batch, dedupe=len(big) == 0)
        parts.append(part)
        if t is not None:
            times.append(t)
    if not parts:
        return Summary(table.schema.empty_table(), max_time)
    if len(parts) == 1:
        return Summary(parts[0], max(times) if times else None)
    # The same (run, key) may win in several parts, or an event be read twice: fold once more.
    merged = _combined(pa.concat_tables(parts).to_batches())
    result, _ = _summarize_batch(merged, dedupe=True)
    return Summary(result, max(times) if times else None)
