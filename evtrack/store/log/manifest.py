"""Manifests: which compacted files are in force, and which segments they replace.

Each experiment has a log of versioned, create-only manifests
``experiments/<id>/_manifest/<N:020d>.json`` (Delta Lake's commit log, one snapshot per
version). Version ``N`` lists

* ``files``: the compacted Parquet files in force under ``experiments/<id>/compacted/``,
  in two families that cover the same events: **full** files (every event, sorted by
  ``run_id, kind, key, step``) and **reduced** files (only the events that can win a fold
  of :mod:`evtrack.store.log.views`, sorted by ``run_id, kind, key``);
* ``covered``: the segments whose events those files hold, as
  ``{scope: {writer: [seq | [first, last], ...]}}``. A range only ever joins sequence
  numbers that were each seen in a listing, so it never claims a segment that might
  appear later.

A reader takes the newest version and every listed segment it does not cover. A writer of
version ``N + 1`` uses a create-only PUT (``Store.put(..., create_only=True)``); if another
process took that number first, :func:`commit` re-reads the newest manifest and either
rebases (nothing it replaces was replaced meanwhile, none of its segments was covered
meanwhile) or gives up, so no event is ever covered twice. Coverage only grows, except
that ``evtrack gc`` drops the coverage of segments it has deleted.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import threading
import time
from bisect import bisect_right
from collections import OrderedDict, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from evtrack.clock import now_ms
from evtrack.errors import ConcurrentUpdate, StoreError

if TYPE_CHECKING:  # pragma: no cover
    from evtrack.store.log.layout import Store
    from evtrack.store.log.segments import SegmentName

__all__ = [
    "MANIFEST_FORMAT",
    "CompactedFile",
    "Coverage",
    "Manifest",
    "commit",
    "list_versions",
    "manifest_dir",
    "read_manifest",
    "read_version",
]

_log = logging.getLogger(__name__)

#: Version of the manifest body; a reader refuses newer ones.
MANIFEST_FORMAT = 1

_NAME = re.compile(r"^(\d{20})\.json$")


def manifest_dir(store: Store, experiment_id: str) -> str:
    return store.path("experiments", experiment_id, "_manifest")


def compacted_dir(store: Store, experiment_id: str) -> str:
    return store.path("experiments", experiment_id, "compacted")


# -- coverage -----------------------------------------------------------------------------


def _compress(seqs: Iterable[int]) -> tuple[list[int], list[int]]:
    los: list[int] = []
    his: list[int] = []
    for s in sorted(set(seqs)):
        if his and s == his[-1] + 1:
            his[-1] = s
        else:
            los.append(s)
            his.append(s)
    return los, his


def _expand(los: list[int], his: list[int]) -> set[int]:
    out: set[int] = set()
    for lo, hi in zip(los, his, strict=True):
        out.update(range(lo, hi + 1))
    return out


class Coverage:
    """A set of segment identities ``(scope, writer, seq)``, stored as ranges."""

    def __init__(self, ranges: dict[str, dict[str, tuple[list[int], list[int]]]] | None = None):
        self._ranges = ranges or {}

    @classmethod
    def from_json(cls, body: dict[str, dict[str, list[Any]]]) -> Coverage:
        ranges: dict[str, dict[str, tuple[list[int], list[int]]]] = {}
        for scope, writers in body.items():
            for writer, items in writers.items():
                los, his = [], []
                for item in items:
                    lo, hi = (item, item) if isinstance(item, int) else item
                    los.append(int(lo))
                    his.append(int(hi))
                ranges.setdefault(scope, {})[writer] = (los, his)
        return cls(ranges)

    def to_json(self) -> dict[str, dict[str, list[int | list[int]]]]:
        return {
            scope: {
                w: [lo if lo == hi else [lo, hi] for lo, hi in zip(*r, strict=True)]
                for w, r in writers.items()
            }
            for scope, writers in self._ranges.items()
        }

    def covers(self, seg: SegmentName) -> bool:
        r = self._ranges.get(seg.scope, {}).get(seg.writer)
        if r is None:
            return False
        los, his = r
        i = bisect_right(los, seg.seq) - 1
        return i >= 0 and seg.seq <= his[i]

    def overlaps(self, segs: Iterable[SegmentName]) -> bool:
        return any(self.covers(s) for s in segs)

    def scopes(self) -> list[str]:
        return list(self._ranges)

    def count(self) -> int:
        return sum(
            sum(hi - lo + 1 for lo, hi in zip(*r, strict=True))
            for writers in self._ranges.values()
            for r in writers.values()
        )

    def _change(self, segs: Iterable[SegmentName], add: bool) -> Coverage:
        by_key: dict[tuple[str, str], set[int]] = defaultdict(set)
        for s in segs:
            by_key[(s.scope, s.writer)].add(s.seq)
        ranges = {scope: dict(writers) for scope, writers in self._ranges.items()}
        for (scope, writer), seqs in by_key.items():
            old = ranges.get(scope, {}).get(writer)
            current = _expand(*old) if old else set()
            current = current | seqs if add else current - seqs
            if current:
                ranges.setdefault(scope, {})[writer] = _compress(current)
            elif scope in ranges:
                ranges[scope].pop(writer, None)
                if not ranges[scope]:
                    del ranges[scope]
        return Coverage(ranges)

    def union(self, segs: Iterable[SegmentName]) -> Coverage:
        return self._change(segs, add=True)

    def without(self, segs: Iterable[SegmentName]) -> Coverage:
        return self._change(segs, add=False)


# -- files and manifests ------------------------------------------------------------------


@dataclass(frozen=True)
class CompactedFile:
    """One compacted Parquet file, as a manifest lists it."""

    name: str  # file name under experiments/<id>/compacted/
    family: str  # "full" or "reduced"
    rows: int
    run_min: str | None = None
    run_max: str | None = None
    runs: tuple[str, ...] | None = None  # the runs it holds, when there are few

    def may_hold(self, run_id: str) -> bool:
        if self.runs is not None:
            return run_id in self.runs
        if self.run_min is None or self.run_max is None:
            return False
        return self.run_min <= run_id <= self.run_max

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": self.name,
            "family": self.family,
            "rows": self.rows,
            "run_min": self.run_min,
            "run_max": self.run_max,
        }
        if self.runs is not None:
            body["runs"] = list(self.runs)
        return body

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> CompactedFile:
        runs = body.get("runs")
        return cls(
            body["name"],
            body["family"],
            int(body["rows"]),
            body.get("run_min"),
            body.get("run_max"),
            tuple(runs) if runs is not None else None,
        )


@dataclass(frozen=True)
class Manifest:
    """One version of an experiment's manifest (version 0: nothing compacted yet)."""

    experiment_id: str
    version: int = 0
    created_ms: int = 0
    files: tuple[CompactedFile, ...] = ()
    coverage: Coverage = field(default_factory=Coverage)
    operation: str = ""

    @property
    def full(self) -> list[CompactedFile]:
        return [f for f in self.files if f.family == "full"]

    @property
    def reduced(self) -> list[CompactedFile]:
        return [f for f in self.files if f.family == "reduced"]

    @property
    def file_names(self) -> set[str]:
        return {f.name for f in self.files}

    def to_bytes(self) -> bytes:
        body = {
            "evtrack_manifest": MANIFEST_FORMAT,
            "experiment_id": self.experiment_id,
            "version": self.version,
            "created_ms": self.created_ms,
            "operation": self.operation,
            "files": [f.to_json() for f in self.files],
            "covered": self.coverage.to_json(),
        }
        return json.dumps(body, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes, where: str = "manifest") -> Manifest:
        try:
            body = json.loads(data)
            fmt = body.get("evtrack_manifest")
            if not isinstance(fmt, int) or fmt > MANIFEST_FORMAT:
                raise ValueError(f"unknown manifest format {fmt!r}")
            return cls(
                experiment_id=str(body["experiment_id"]),
                version=int(body["version"]),
                created_ms=int(body["created_ms"]),
                files=tuple(CompactedFile.from_json(f) for f in body["files"]),
                coverage=Coverage.from_json(body["covered"]),
                operation=str(body.get("operation", "")),
            )
        except Exception as exc:  # noqa: BLE001 - any parse failure means a damaged file
            raise StoreError(f"cannot read {where}: {exc}") from exc


def version_path(store: Store, experiment_id: str, version: int) -> str:
    return f"{manifest_dir(store, experiment_id)}/{version:020d}.json"


def list_versions(store: Store, experiment_id: str) -> list[int]:
    """Manifest versions present, ascending (one listing, never cached)."""
    out = []
    for name in store.listdir(manifest_dir(store, experiment_id)):
        m = _NAME.match(name)
        if m:
            out.append(int(m.group(1)))
    return sorted(out)


# Manifests never change once written, so a parsed one is cached by path.
_CACHE: OrderedDict[str, Manifest] = OrderedDict()
_CACHE_LOCK = threading.Lock()
_CACHE_MAX = 256


def read_version(store: Store, experiment_id: str, version: int) -> Manifest:
    """One manifest version; :class:`FileNotFoundError` or :class:`StoreError`."""
    path = version_path(store, experiment_id, version)
    key = f"{id(store)}:{path}"
    with _CACHE_LOCK:
        hit = _CACHE.get(key)
        if hit is not None:
            _CACHE.move_to_end(key)
            return hit
    manifest = Manifest.from_bytes(store.read_bytes(path), where=path)
    if manifest.version != version:
        raise StoreError(f"cannot read {path}: it says it is version {manifest.version}")
    with _CACHE_LOCK:
        _CACHE[key] = manifest
        while len(_CACHE) > _CACHE_MAX:
            _CACHE.popitem(last=False)
    return manifest


def read_manifest(store: Store, experiment_id: str) -> Manifest:
    """The newest readable manifest of an experiment (version 0 if there is none).

    A damaged newest manifest (it cannot be torn: it was written in one atomic step, so
    this means a disk fault or a hand edit) is reported and the previous one used.
    """
    versions = list_versions(store, experiment_id)
    for version in reversed(versions):
        try:
            return read_version(store, experiment_id, version)
        except StoreError as exc:
            _log.warning("evtrack: skipping damaged manifest: %s", exc)
        except FileNotFoundError:
            continue  # removed by gc since listing: an older one is still valid for us
    return Manifest(experiment_id)


class Conflict(ConcurrentUpdate):
    """Another process replaced what this commit replaces, or covered its segments."""


def commit(
    store: Store,
    base: Manifest,
    *,
    remove: Iterable[str] = (),
    add: Iterable[CompactedFile] = (),
    cover: Iterable[SegmentName] = (),
    uncover: Iterable[SegmentName] = (),
    operation: str = "compact",
    attempts: int = 20,
) -> Manifest:
    """Publish ``base`` with files removed/added and segments covered, as a new version.

    Optimistic concurrency: the new version is written create-only. When another
    process wrote that version first, the newest manifest is re-read; if it still holds
    every file in ``remove`` and covers none of ``cover``, the change is rebased onto it
    and tried again, else :class:`Conflict` is raised (the caller's new files are then
    unreferenced; gc removes them after the grace period).
    """
    remove, add, cover, uncover = set(remove), list(add), list(cover), list(uncover)
    state = base
    top = base.version  # highest version number taken, readable or not
    for _ in range(attempts):
        if not remove <= state.file_names or state.coverage.overlaps(cover):
            raise Conflict(f"experiment {base.experiment_id}: manifest moved on under us")
        files = tuple(f for f in state.files if f.name not in remove) + tuple(add)
        coverage = state.coverage.union(cover) if cover else state.coverage
        if uncover:
            coverage = coverage.without(uncover)
        new = Manifest(
            base.experiment_id,
            top + 1,
            now_ms(),
            files,
            coverage,
            operation,
        )
        try:
            store.put(
                version_path(store, base.experiment_id, new.version),
                new.to_bytes(),
                create_only=True,
            )
            return new
        except FileExistsError:
            pass
        # Someone took that number: look at what they published (a damaged version is
        # skipped by read_manifest, but its number stays taken).
        top = max([new.version, *list_versions(store, base.experiment_id)])
        newer = read_manifest(store, base.experiment_id)
        if newer.version > state.version:
            state = newer
        else:  # pragma: no cover - the listing lagged behind the PUT; look again shortly
            time.sleep(0.01 + secrets.randbelow(20) / 1000)
    raise Conflict(f"experiment {base.experiment_id}: gave up after {attempts} attempts")
