"""The run index kept on local disk, so a fresh process does not fold again what an
earlier one already folded.

:class:`~evtrack.store.log.index.RunIndex` folds an experiment's events into its reduced
events and the tables a search reads. A new process (a script, a notebook, a CLI call)
used to do that from scratch: ~1 s for 10,000 uncompacted runs, most of it reading and
decoding 20,000 small files. This module saves what the index folded, per store and
experiment, in one file under :func:`cache_dir` (setting ``index_cache_dir``):

* the manifest it was folded at (version and the names of the compacted files, which are
  random, so the cache of another store once at the same URI never matches);
* the segment names the events folder held then (covered or not; no temporary files);
* the reduced events and the experiment's materialised tables, as Arrow IPC streams
  (the reduced events are decoded only if newer segments are folded on top).

It is never trusted beyond what the store shows: the reader lists the store as it
always does and uses the file only if the manifest is the same and every name it
recorded is still listed; new segments are then folded on top (on an object store: a
LIST, the manifest, and GETs of those segments only). Anything else (a compaction, gc,
a different store) means the experiment is read afresh and the file rewritten. Writes go
to a temporary file renamed over the old one, so several processes may share the
folder: the last complete write wins and a reader sees one whole file or the other. A
file that cannot be decoded (cut short, another format version) is ignored and
rewritten. Deleting the folder at any time is safe (derived data is disposable); a
store's files not rewritten for :data:`PRUNE_AFTER_S` are deleted by the next save.

Limits: stores that live in one process (``memory://``) are not cached. The file holds
about two dozen rows per run and every segment name: 5.4 MB per 10,000 runs of 3 params,
3 metrics and 2 tags (54 MB per 100,000; saving it costs ~0.5 s there, loading ~0.25 s).
A process that re-read an experiment (after a compaction) saves it at most every
``index.SAVE_INTERVAL_S``; until then a new process reads that experiment afresh.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Callable

    import pyarrow as pa

    from evtrack.store.log.layout import Store
    from evtrack.store.log.manifest import Manifest

__all__ = ["CachedExperiment", "cache_dir", "cache_path", "load", "manifest_mark", "save"]

_log = logging.getLogger(__name__)

#: Bumped whenever the file's layout or anything folded into it changes meaning.
FORMAT = 1
_MAGIC = b"EVTRACK-RUN-INDEX\n"


@dataclass
class CachedExperiment:
    """What an earlier process folded of one experiment."""

    mark: list[str]  # manifest_mark() of the manifest folded
    names: frozenset[str]  # the events folder's names when folded
    reduced: pa.Table | Callable[[], pa.Table]  # loaded: a loader, decoded when called
    tables: dict[str, pa.Table]  # the experiment's materialised views


def manifest_mark(manifest: Manifest) -> list[str]:
    """The manifest's version and compacted files: equal marks, same compacted data."""
    return [str(manifest.version), *sorted(f.name for f in manifest.files)]


def cache_dir() -> str | None:
    """The folder of the saved run indexes; None when turned off (``off``)."""
    from evtrack import settings

    value: str | None = settings.get("index_cache_dir")
    if value is not None and value.strip().lower() in ("off", "none", "false", "0"):
        return None
    if value:
        return os.path.expanduser(value)
    # Next to evtrack's other caches (spool, projects, model environments).
    return os.path.join(os.path.expanduser("~"), ".cache", "evtrack", "index")


def cache_path(store: Store, experiment_id: str) -> str | None:
    """Where one experiment's index is saved; None for process-local stores or when off."""
    folder = cache_dir()
    if folder is None or getattr(store, "_process_local", False):
        return None
    where = f"{store.uri}\x00{store.root}"
    key = hashlib.sha256(where.encode()).hexdigest()[:24]
    safe = hashlib.sha256(experiment_id.encode()).hexdigest()[:16]
    return os.path.join(folder, key, f"{safe}.arrow")


def load(store: Store, experiment_id: str) -> CachedExperiment | None:
    """The saved index of an experiment, or None (none saved, damaged, other format)."""
    path = cache_path(store, experiment_id)
    if path is None:
        return None
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return None
    try:
        return _decode(data, store, experiment_id)
    except Exception as exc:  # noqa: BLE001 - a damaged cache is ignored and rewritten
        _log.debug("evtrack: ignoring a damaged run index cache %s: %s", path, exc)
        return None


def save(store: Store, experiment_id: str, cached: CachedExperiment) -> None:
    """Save an experiment's index (best effort: a failure only costs the next process)."""
    path = cache_path(store, experiment_id)
    if path is None:
        return
    _prune(os.path.dirname(os.path.dirname(path)))
    write_file(path, lambda: _encode(store, experiment_id, cached))


def write_file(path: str, encode: Callable[[], bytes]) -> None:
    """Write ``encode()`` to ``path`` atomically, best effort (a failure is logged)."""
    tmp = f"{path}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(tmp, "wb") as f:
            f.write(encode())
        os.replace(tmp, path)  # atomic: readers see the old file or the new one
    except (OSError, ValueError) as exc:  # ValueError: marshal of an unexpected value
        _log.debug("evtrack: could not save %s: %s", path, exc)
        try:
            os.unlink(tmp)
        except OSError:
            pass


#: A store's saved indexes unused (not rewritten) this long are deleted, and temporary
#: files left by a process killed mid-save after an hour.
PRUNE_AFTER_S = 30 * 86_400
_TMP_AFTER_S = 3_600
_pruned: set[str] = set()


def _prune(folder: str) -> None:
    """Delete long-unused stores' folders and stale temporary files (once per process)."""
    import shutil
    import time

    if folder in _pruned:
        return
    _pruned.add(folder)
    now = time.time()
    try:
        stores = [e for e in os.scandir(folder) if e.is_dir(follow_symlinks=False)]
    except OSError:
        return
    for store in stores:
        try:
            if now - store.stat().st_mtime > PRUNE_AFTER_S:
                shutil.rmtree(store.path, ignore_errors=True)
                continue
            for f in os.scandir(store.path):
                if f.name.endswith(".tmp") and now - f.stat().st_mtime > _TMP_AFTER_S:
                    os.unlink(f.path)
        except OSError:
            continue  # another process pruned it first


# -- the file: magic line, JSON header line, then Arrow IPC streams -----------------------


def _ipc(table: pa.Table) -> bytes:
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(compression="zstd")
    with pa.ipc.new_stream(sink, table.schema, options=options) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue())


def _encode(store: Store, experiment_id: str, cached: CachedExperiment) -> bytes:
    from evtrack.store.log.events import SCHEMA_VERSION
    from evtrack.store.log.views import VIEWS_VERSION

    parts = [("names", "\n".join(sorted(cached.names)).encode())]
    reduced = cached.reduced() if callable(cached.reduced) else cached.reduced
    parts.append(("reduced", _ipc(reduced)))
    parts += [(f"table:{name}", _ipc(t)) for name, t in cached.tables.items()]
    offsets, at = {}, 0
    for name, blob in parts:
        offsets[name] = [at, len(blob)]
        at += len(blob)
    header = {
        "format": FORMAT,
        "events": SCHEMA_VERSION,
        "views": VIEWS_VERSION,
        "store": store.uri,
        "experiment_id": experiment_id,
        "mark": cached.mark,
        "parts": offsets,
    }
    return b"".join([_MAGIC, json.dumps(header).encode(), b"\n", *(b for _, b in parts)])


def _decode(data: bytes, store: Store, experiment_id: str) -> CachedExperiment | None:
    import pyarrow as pa

    from evtrack.store.log.events import SCHEMA_VERSION
    from evtrack.store.log.views import VIEWS_VERSION

    if not data.startswith(_MAGIC):
        return None
    end = data.index(b"\n", len(_MAGIC))
    header = json.loads(data[len(_MAGIC) : end])
    expected = (FORMAT, SCHEMA_VERSION, VIEWS_VERSION, store.uri, experiment_id)
    got = (header["format"], header["events"], header["views"], header["store"])
    if (*got, header["experiment_id"]) != expected:
        return None
    body = pa.py_buffer(data)[end + 1 :]
    parts: dict[str, list[int]] = header["parts"]
    if sum(n for _, n in parts.values()) != len(body):
        raise ValueError("cut short")

    def part(name: str) -> pa.Buffer:
        at, n = parts[name]
        return body[at : at + n]

    def table(name: str) -> pa.Table:
        return pa.ipc.open_stream(part(name)).read_all()

    text = part("names").to_pybytes().decode()
    names = frozenset(text.split("\n")) if text else frozenset()
    tables = {k.split(":", 1)[1]: table(k) for k in parts if k.startswith("table:")}
    return CachedExperiment(list(header["mark"]), names, lambda: table("reduced"), tables)
