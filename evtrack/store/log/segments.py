"""Segments: the immutable files a writer's flush turns events into.

A segment holds the events one writer flushed for one run (or for an experiment's
own events) and is named ``<run_id|_>.<writer>-<sequence>.<jsonl|parquet>``, so two
writers never collide and every name is used once. Small segments (a few tags, a
param, a run's end) are JSONL: cheap to write one at a time and readable with
``cat``. Large ones (metric series) are Parquet: columnar, compressed, and written
straight from Arrow. Both decode to the same Arrow table of :func:`event_schema`.

A JSONL segment starts with a header line ``{"evtrack_segment": <schema version>}``;
each further line is one event with its non-null columns. NaN and ±inf travel as
``NaN`` / ``Infinity`` / ``-Infinity`` (Python's JSON dialect), so metric values keep
their meaning.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from evtrack.errors import StoreError
from evtrack.store.log.events import (
    COLUMNS,
    DICTIONARY_COLUMNS,
    SCHEMA_VERSION,
    empty_table,
    event_schema,
)

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa

__all__ = [
    "SegmentName",
    "decode",
    "decode_jsonl_many",
    "encode",
    "encode_jsonl_rows",
    "parse_name",
]

_NAME = re.compile(
    r"^(?P<scope>[^./]+)\.(?P<writer>[0-9a-zA-Z]+)-(?P<seq>\d+)\.(?P<ext>jsonl|parquet)$"
)


@dataclass(frozen=True)
class SegmentName:
    """The parts of a segment's file name."""

    scope: str  # a run id, or "_" for an experiment's own events
    writer: str
    seq: int
    ext: str

    @property
    def name(self) -> str:
        return f"{self.scope}.{self.writer}-{self.seq:010d}.{self.ext}"


def parse_name(name: str) -> SegmentName | None:
    """Parse a segment file name; ``None`` for anything else (temporary files...)."""
    m = _NAME.match(name)
    if m is None:
        return None
    return SegmentName(m["scope"], m["writer"], int(m["seq"]), m["ext"])


_DICTIONARY_COLUMNS = [*DICTIONARY_COLUMNS, "text"]
_DELTA_COLUMNS = {c: "DELTA_BINARY_PACKED" for c in ("seq", "time", "step", "timestamp")}


_HEADER = json.dumps({"evtrack_segment": SCHEMA_VERSION})


def encode_jsonl_rows(rows: Iterable[dict[str, Any]]) -> bytes:
    """A JSONL segment from event rows (dicts of :data:`COLUMNS`; None values left out).

    Standard library only. The writer calls this directly for small segments: a short
    script then never imports pyarrow, and building an Arrow table for a run's handful
    of events cost more than the rest of a sweep's run together.
    """
    lines = [_HEADER]
    dumps = json.dumps
    for row in rows:
        lines.append(dumps({k: v for k, v in row.items() if v is not None}))
    return ("\n".join(lines) + "\n").encode()


def encode(table: pa.Table, fmt: str) -> bytes:
    """Serialise an event table as ``"jsonl"`` or ``"parquet"``."""
    if fmt == "jsonl":
        return encode_jsonl_rows(table.to_pylist())
    import pyarrow.parquet as pq

    sink = io.BytesIO()
    # Delta encoding keeps sequences, steps and timestamps to a few bits a row;
    # dictionaries suit the repeated strings (writer, kind, ids, keys).
    pq.write_table(
        table,
        sink,
        compression="zstd",
        compression_level=1,
        use_dictionary=_DICTIONARY_COLUMNS,
        column_encoding=_DELTA_COLUMNS,
        # Nothing reads a segment's statistics (it is read whole); computing them for
        # the dictionary columns cost a quarter of the write time.
        write_statistics=False,
    )
    return sink.getvalue()


def decode(data: bytes, fmt: str, *, where: str = "segment") -> pa.Table:
    """Read a segment back into an event table; :class:`StoreError` if it is damaged."""

    schema = event_schema()
    try:
        if fmt == "jsonl":
            # Arrow's JSON reader, as for many segments at once: building the table from
            # Python lists would import pandas (pyarrow's shim checks each argument).
            (table,) = decode_jsonl_many([data], whole=True)
            return table
        import pyarrow.parquet as pq

        # ParquetFile, not read_table: read_table imports pyarrow.dataset (~0.4 s).
        table = pq.ParquetFile(io.BytesIO(data), read_dictionary=DICTIONARY_COLUMNS).read()
        table = table.select([name for name, _ in COLUMNS])
        return table if table.schema.equals(schema) else table.cast(schema)
    except Exception as exc:  # noqa: BLE001 - any decoding failure means a damaged file
        raise StoreError(f"cannot read {where}: {exc}") from exc


def _read_rows(data: bytes) -> pa.Table:
    """Newline-delimited event rows as an event table, parsed by Arrow's JSON reader.

    Ten times faster than ``json.loads`` plus building columns in Python (a first search
    over 10,000 uncompacted runs reads 20,000 small segments). The reader accepts NaN and
    ±Infinity, as the segments write them; a row with an unknown field is an error.
    """
    import pyarrow as pa
    import pyarrow.json as pj

    schema = event_schema()
    if not data:
        return empty_table(schema)
    plain = pa.schema(
        [
            pa.field(f.name, f.type.value_type if pa.types.is_dictionary(f.type) else f.type)
            for f in schema
        ]
    )
    table = pj.read_json(
        io.BytesIO(data),
        read_options=pj.ReadOptions(block_size=max(1 << 20, min(len(data) + 1, 1 << 26))),
        parse_options=pj.ParseOptions(explicit_schema=plain, unexpected_field_behavior="error"),
    )
    return table.cast(schema)


def decode_jsonl_many(blobs: list[bytes], *, whole: bool = False) -> list[pa.Table]:
    """Decode many small JSONL segments at once; the same tables as :func:`decode`.

    Building one Arrow table for all of them and slicing it (zero-copy) costs a third
    of decoding them one by one: a search over runs that are not compacted yet reads
    hundreds of such files. Raises :class:`StoreError` if any one is damaged; the
    caller then decodes them one by one to find it. With ``whole`` the result is one
    table holding every blob's rows (no per-blob slices).
    """

    # Bytes, not str: a first read of 20,000 segments held each one three times over as
    # text (decoded, split, joined) before Arrow saw them.
    header = _HEADER.encode()
    bodies: list[bytes] = []
    counts = []
    try:
        for data in blobs:
            data.decode()  # invalid UTF-8 is damage (checked here, not kept)
            head, _, body = data.partition(b"\n")
            if head != header:  # the usual header is compared, not parsed
                version = json.loads(head).get("evtrack_segment")
                if not isinstance(version, int) or version > SCHEMA_VERSION:
                    raise ValueError(f"unknown segment schema version {version!r}")
            if not data.endswith(b"\n"):
                raise ValueError("truncated")
            body = body.rstrip(b"\n")
            counts.append(body.count(b"\n") + 1 if body else 0)
            if body:
                bodies.append(body)
        joined = b"\n".join(bodies)
        del bodies
        table = _read_rows(joined)
        if table.num_rows != sum(counts):
            raise ValueError("row count mismatch")
    except Exception as exc:  # noqa: BLE001 - any failure: let the caller isolate it
        what = "a JSONL segment" if len(blobs) == 1 else "a batch of JSONL segments"
        raise StoreError(f"cannot decode {what}: {exc}") from exc
    if whole:
        return [table]
    out, start = [], 0
    for n in counts:
        out.append(table.slice(start, n))
        start += n
    return out
