"""Arrow columns from the writer's Python buffers, for Parquet segments.

``pa.array()`` on anything, a NumPy array included, imports pandas on first use (its
pandas shim checks the argument): up to a second, once per process, inside the first
Parquet flush. These build the columns of :func:`~evtrack.store.log.events.event_schema`
from NumPy buffers with ``pa.Array.from_buffers``, which needs no such check, and are
faster than ``pa.array`` on Python lists (1 M metric points: ~70 ms). Readers compare
columns with :func:`column_equals` for the same reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa

__all__ = ["column_equals", "from_python", "metric_columns", "numeric", "strings"]


def metric_columns(chunk: list[Any]) -> tuple[Any, Any, Any, Any]:
    """Arrow columns from a flat ``[key, value, step, timestamp, ...]`` list.

    ``np.fromiter`` over each stride and a dictionary built in Python from the few
    distinct keys. The values were checked when logged (float, int64 step and timestamp).
    """
    import numpy as np
    import pyarrow as pa

    n = len(chunk) // 4
    names = chunk[0::4]
    uniq = list(dict.fromkeys(names))
    if len(uniq) == 1:
        idx = np.zeros(n, dtype=np.int32)
    else:
        codes = {k: i for i, k in enumerate(uniq)}
        idx = np.fromiter(map(codes.__getitem__, names), np.int32, n)
    keys = pa.DictionaryArray.from_arrays(numeric(idx, pa.int32()), strings(uniq))
    values = numeric(np.fromiter(chunk[1::4], np.float64, n), pa.float64())
    steps = numeric(np.fromiter(chunk[2::4], np.int64, n), pa.int64())
    stamps = numeric(np.fromiter(chunk[3::4], np.int64, n), pa.int64())
    return keys, values, steps, stamps


def numeric(values: Any, typ: Any) -> Any:
    """An Arrow array viewing a NumPy array of the matching type (no nulls)."""
    import numpy as np
    import pyarrow as pa

    values = np.ascontiguousarray(values)
    return pa.Array.from_buffers(typ, len(values), [None, pa.py_buffer(values)])


def _validity(items: Sequence[Any]) -> tuple[Any, int]:
    """Arrow's validity bitmap of ``items`` (None is null) and the null count."""
    import numpy as np
    import pyarrow as pa

    valid = np.fromiter((item is not None for item in items), bool, len(items))
    nulls = len(items) - int(valid.sum())
    if not nulls:
        return None, 0
    return pa.py_buffer(np.packbits(valid, bitorder="little")), nulls


def strings(items: Sequence[str | None]) -> Any:
    """An Arrow string array from Python strings (None is null)."""
    import numpy as np
    import pyarrow as pa

    validity, nulls = _validity(items)
    encoded = [b"" if item is None else item.encode() for item in items]
    data = b"".join(encoded)
    large = len(data) >= 2**31  # string offsets are int32
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64 if large else np.int32)
    np.cumsum([len(e) for e in encoded], out=offsets[1:])
    array = pa.Array.from_buffers(
        pa.large_string() if large else pa.string(),
        len(encoded),
        [validity, pa.py_buffer(offsets), pa.py_buffer(data)],
        null_count=nulls,
    )
    return array.cast(pa.string()) if large else array


def from_python(items: Sequence[Any], typ: Any) -> Any:
    """An Arrow column of ``typ`` (int64, float64, string, or dictionary of strings)."""
    import numpy as np
    import pyarrow as pa

    if pa.types.is_dictionary(typ):
        uniq = list(dict.fromkeys(items))
        codes = {k: i for i, k in enumerate(uniq)}
        idx = np.fromiter(map(codes.__getitem__, items), np.int32, len(items))
        if None in codes:  # a null entry in the dictionary reads back as a null row
            validity, nulls = _validity(items)
            indices = pa.Array.from_buffers(
                pa.int32(), len(idx), [validity, pa.py_buffer(idx)], null_count=nulls
            )
            uniq[codes[None]] = ""
        else:
            indices = numeric(idx, pa.int32())
        return pa.DictionaryArray.from_arrays(indices, strings(uniq))
    if pa.types.is_string(typ):
        return strings(items)
    validity, nulls = _validity(items)
    dtype = np.float64 if pa.types.is_floating(typ) else np.int64
    data = np.fromiter((0 if item is None else item for item in items), dtype, len(items))
    return pa.Array.from_buffers(typ, len(data), [validity, pa.py_buffer(data)], null_count=nulls)


def column_equals(column: pa.ChunkedArray, value: str) -> pa.ChunkedArray:
    """``column == value`` for a dictionary-encoded column, comparing integer indices.

    ``pc.equal`` on a dictionary column decodes every row (~3.5 s for 10 M rows); looking
    the value up once per chunk's dictionary makes it an integer compare (milliseconds).
    The scalars are built from buffers (:func:`from_python`):
    a Python value handed to pyarrow's compute imports pandas (~0.3 s on a first read).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    text = from_python([value], pa.string())[0]
    out = []
    for chunk in column.chunks:
        if pa.types.is_dictionary(chunk.type):
            # -1 (absent) matches no index: the result is all false, nulls kept.
            code = from_python([pc.index(chunk.dictionary, text).as_py()], pa.int64())[0]
            out.append(pc.equal(chunk.indices, code))
        else:
            out.append(pc.equal(chunk, text))
    return pa.chunked_array(out, pa.bool_())
