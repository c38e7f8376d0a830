"""Events: the only thing evtrack ever writes to a store.

Every log call becomes one immutable event. An event is a row of :data:`COLUMNS`;
its identity is ``(writer, seq)``: the random id of the process-level writer that
made it and that writer's event counter. A run's or an experiment's state is a fold
of its events (see :mod:`evtrack.store.log.views`), never a record edited in place.

The kinds of event, and which columns each uses:

``metric``
    One metric point: ``run_id, key, value (float64, NaN/±inf kept), step (int64),
    timestamp (ms)``. ``time`` equals ``timestamp``.
``param``
    ``run_id, key, text``. Params are immutable; a different value is refused before
    it is written.
``tag``
    ``run_id, key, text``; ``text`` NULL means the tag was deleted.
``run``
    One attribute of a run: ``run_id, key`` (``experiment_id``, ``run_name``,
    ``user_id``, ``status``, ``start_time``, ``end_time``, ``lifecycle_stage``,
    ``deleted_time``, ``artifact_uri``), ``text`` its value as a string.
``experiment``
    One attribute of an experiment: ``key`` (``name``, ``artifact_location``,
    ``lifecycle_stage``, ``creation_time``, ``last_update_time``), ``text``.
``experiment_tag``
    ``key, text``; ``text`` NULL means the tag was deleted.
``artifact``
    A file logged to a run: ``run_id, key`` = its path in the run's artifact tree,
    ``text`` = JSON ``{"size": …, "sha256": …}``, ``value`` = 1.0 for a write and
    NULL for a deletion.
``input``
    A dataset input of a run (``log_inputs``): ``run_id, key`` = dataset digest,
    ``text`` = JSON of the dataset and its tags.

``logged_model``, ``registered_model``, ``model_version``
    Logged models and the model registry (``experiment_id`` is the logged model's
    experiment, or ``registry`` for registered models and versions): ``key`` is a
    JSON array naming one fact, ``["m-…", "status"]``, ``["m-…", "tag", "k"]``,
    ``[id, "alias", "prod"]``, ``[id, "3", "description"]``; ``text`` its value, NULL
    when removed. See :mod:`evtrack.store.log.model_views`.

``time`` is the wall-clock time of the call in milliseconds since the epoch (UTC);
of two events for the same key, the later ``(time, seq, writer)`` wins.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa

__all__ = [
    "COLUMNS",
    "DICTIONARY_COLUMNS",
    "KINDS",
    "SCHEMA_VERSION",
    "empty_table",
    "event_schema",
]

#: Version of the stored event layout, written into every segment.
SCHEMA_VERSION = 1

KINDS = (
    "metric",
    "param",
    "tag",
    "run",
    "experiment",
    "experiment_tag",
    "artifact",
    "input",
    "logged_model",
    "registered_model",
    "model_version",
)

#: Column names and Arrow types, in stored order. "dictionary" is a dictionary-encoded
#: string (int32 indices): these columns repeat a handful of values over millions of
#: rows, and comparisons on them then cost an integer compare.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("writer", "dictionary"),
    ("seq", "int64"),
    ("time", "int64"),
    ("kind", "dictionary"),
    ("experiment_id", "dictionary"),
    ("run_id", "dictionary"),
    ("key", "dictionary"),
    ("value", "float64"),
    ("step", "int64"),
    ("timestamp", "int64"),
    ("text", "string"),
)

DICTIONARY_COLUMNS = [name for name, kind in COLUMNS if kind == "dictionary"]

_SCHEMA = None


def event_schema() -> pa.Schema:
    """The Arrow schema of events (pyarrow is imported on first use)."""
    global _SCHEMA
    if _SCHEMA is None:
        import pyarrow as pa

        def arrow_type(kind: str) -> pa.DataType:
            if kind == "dictionary":
                return pa.dictionary(pa.int32(), pa.string())
            return getattr(pa, kind)()

        _SCHEMA = pa.schema(
            [pa.field(name, arrow_type(kind)) for name, kind in COLUMNS],
            metadata={"evtrack.schema_version": str(SCHEMA_VERSION)},
        )
    return _SCHEMA


def empty_table(schema: pa.Schema | None = None) -> pa.Table:
    """A table with no rows (default: of :func:`event_schema`).

    Not ``schema.empty_table()``: that builds its columns from Python lists, and pyarrow
    imports pandas (~0.3 s) the first time it converts a Python value.
    """
    import pyarrow as pa

    return pa.Table.from_batches([], event_schema() if schema is None else schema)
