"""Segment codecs: every event survives a round trip through JSONL and Parquet."""

from __future__ import annotations

import math

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evtrack.errors import StoreError
from evtrack.store.log.events import KINDS, event_schema
from evtrack.store.log.segments import decode, decode_jsonl_many, encode, parse_name

texts = st.one_of(st.none(), st.text(max_size=20))
ids = st.one_of(st.none(), st.text(alphabet="abcdef0123456789", min_size=1, max_size=8))
events = st.fixed_dictionaries(
    {
        "writer": st.text(alphabet="abcdef0123456789", min_size=1, max_size=16),
        "seq": st.integers(0, 2**63 - 1),
        "time": st.integers(0, 2**62),
        "kind": st.sampled_from(KINDS),
        "experiment_id": st.text(alphabet="0123456789", min_size=1, max_size=4),
        "run_id": ids,
        "key": texts,
        "value": st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)),
        "step": st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)),
        "timestamp": st.one_of(st.none(), st.integers(0, 2**62)),
        "text": texts,
    }
)


def _same(a: list[dict], b: list[dict]) -> bool:
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        for k in x:
            vx, vy = x[k], y[k]
            if isinstance(vx, float) and isinstance(vy, float) and math.isnan(vx):
                if not math.isnan(vy):
                    return False
            elif vx != vy:
                return False
    return True


@settings(max_examples=60, deadline=None)
@given(st.lists(events, max_size=30), st.sampled_from(["jsonl", "parquet"]))
def test_round_trip(rows, fmt):
    table = pa.Table.from_pylist(rows, schema=event_schema())
    back = decode(encode(table, fmt), fmt)
    assert back.schema.equals(event_schema())
    assert _same(back.to_pylist(), rows)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(events, max_size=6), min_size=2, max_size=6))
def test_batch_jsonl_decoding_equals_one_by_one(groups):
    blobs = [encode(pa.Table.from_pylist(g, schema=event_schema()), "jsonl") for g in groups]
    batch = decode_jsonl_many(blobs)
    for blob, table in zip(blobs, batch):
        assert _same(table.to_pylist(), decode(blob, "jsonl").to_pylist())


def test_a_torn_segment_is_an_error_not_a_crash():
    rows = [{"writer": "w", "seq": 1, "time": 1, "kind": "tag", "experiment_id": "1"}]
    blob = encode(pa.Table.from_pylist(rows, schema=event_schema()), "jsonl")
    with pytest.raises(StoreError):
        decode(blob[:-3], "jsonl")
    with pytest.raises(StoreError):
        decode_jsonl_many([blob, blob[:-3]])
    parquet = encode(pa.Table.from_pylist(rows, schema=event_schema()), "parquet")
    with pytest.raises(StoreError):
        decode(parquet[: len(parquet) // 2], "parquet")


def test_newer_schema_versions_are_refused():
    with pytest.raises(StoreError, match="schema version"):
        decode(b'{"evtrack_segment": 99}\n', "jsonl")


def test_segment_names():
    seg = parse_name("abc123.0f0f0f0f-0000000042.parquet")
    assert seg is not None and (seg.scope, seg.writer, seg.seq, seg.ext) == (
        "abc123",
        "0f0f0f0f",
        42,
        "parquet",
    )
    assert seg.name == "abc123.0f0f0f0f-0000000042.parquet"
    assert parse_name(".tmp-1234-abc123.0f0f0f0f-0000000042.parquet") is None
    assert parse_name("notes.txt") is None
