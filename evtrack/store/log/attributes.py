"""Attributes of one run or experiment, read without DuckDB or pyarrow when that is cheap.

Creating a run needs its experiment's lifecycle stage and artifact location; logging a
param needs the run's lifecycle stage. Read through the views, either costs importing
DuckDB and pyarrow (and pandas through it), several times the whole run of a short
script. While a run's or an experiment's own events are all in JSONL segments (not yet
compacted, the usual case for a live run and for an experiment's few metadata
events), they are a handful of small files: this module parses them with the standard
library and folds them with the views' rule for attributes and tags — of two events
for one key, the larger ``(time, seq, writer)`` wins — which a test checks against the
views on the same events. Whenever a compacted file may hold the scope's events, or a
segment is Parquet or cannot be read, or there are more than a few dozen segments (a
long run; the views' path caches what it decodes), it answers ``None`` and the caller
reads through the views as before.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from evtrack.entities import Experiment
    from evtrack.store.log.layout import Store

__all__ = ["Folded", "experiment_from_segments", "read_scope", "run_stage_from_segments"]

#: Above this many segments in the scope, read through the views instead.
_MAX_SEGMENTS = 32

#: kind -> key -> text (``None``: a deleted tag or a cleared attribute)
Folded = dict[str, dict[str, "str | None"]]


def read_scope(
    store: Store, experiment_id: str, scope: str, kinds: tuple[str, ...]
) -> Folded | None:
    """The folded attributes of ``kinds`` in one scope (a run id, or ``"_"`` for the
    experiment's own events); ``None`` if the events are not all in JSONL segments."""
    from evtrack.store.log.manifest import read_manifest
    from evtrack.store.log.snapshot import fetch, list_segments

    manifest = read_manifest(store, experiment_id)
    if scope == "_" and manifest.full:
        return None  # compacted files do not index experiment events by run
    if any(f.may_hold(scope) for f in manifest.full):
        return None
    segments = [
        (p, s)
        for p, s in list_segments(store, experiment_id, scope)
        if not manifest.coverage.covers(s)
    ]
    if len(segments) > _MAX_SEGMENTS or any(s.ext != "jsonl" for _, s in segments):
        return None  # a long run: the views' path caches what it decodes, this one does not
    blobs = fetch(store, [p for p, _ in segments])
    best: dict[tuple[str, str], tuple[tuple[int, int, str], str | None]] = {}
    try:
        for data in blobs.values():
            if isinstance(data, BaseException):
                return None  # removed by gc since the listing, or unreadable: the slow path
            text = data.decode()
            if not text.endswith("\n"):
                return None  # torn: the slow path reports it
            for line in text.splitlines()[1:]:
                row = json.loads(line)
                kind = row.get("kind")
                if kind not in kinds:
                    continue
                order = (row["time"], row["seq"], row["writer"])
                slot = (kind, row["key"])
                if slot not in best or order > best[slot][0]:
                    best[slot] = (order, row.get("text"))
    except (ValueError, KeyError, TypeError):
        return None
    out: Folded = {kind: {} for kind in kinds}
    for (kind, attr), (_, value) in best.items():
        out[kind][attr] = value
    return out


def experiment_from_segments(store: Store, experiment_id: str) -> Experiment | None:
    """An experiment (with its tags) from its JSONL segments, or ``None`` (use the views)."""
    from evtrack.entities import Experiment

    if getattr(store, "is_remote", False):
        return None
    folded = read_scope(store, experiment_id, "_", ("experiment", "experiment_tag"))
    if folded is None:
        return None
    attrs = folded["experiment"]
    name, location = attrs.get("name"), attrs.get("artifact_location")
    if name is None or location is None:
        return None  # not (yet) readable here: let the views decide what to say
    return Experiment(
        experiment_id=experiment_id,
        name=name,
        artifact_location=location,
        lifecycle_stage=attrs.get("lifecycle_stage") or "active",
        tags={k: v for k, v in folded["experiment_tag"].items() if v is not None},
        creation_time=_int(attrs.get("creation_time")),
        last_update_time=_int(attrs.get("last_update_time")),
    )


def run_stage_from_segments(store: Store, experiment_id: str, run_id: str) -> str | None:
    """A run's lifecycle stage from its JSONL segments, or ``None`` (use the views)."""
    if getattr(store, "is_remote", False):
        return None
    folded = read_scope(store, experiment_id, run_id, ("run",))
    if folded is None or "experiment_id" not in folded["run"]:
        return None
    return folded["run"].get("lifecycle_stage") or "active"


def _int(text: str | None) -> int | None:
    return None if text is None else int(text)
