"""Maintenance: garbage collection (``evtrack gc``) and store checks (``evtrack doctor``).

**gc** deletes what no reader can still need. A reader finishes within the grace period
(setting ``gc_grace_seconds``), so:

* a segment is deleted once a manifest created more than the grace period ago covers it
  (every reader that could still be using an older manifest would be older than that);
  its coverage is then dropped from the manifest, which keeps manifests small;
* a compacted file is deleted once no manifest that was newest within the grace period
  lists it, and it is older than the grace period (an unreferenced young file may belong
  to a compaction in progress);
* manifests that were superseded more than the grace period ago are deleted, except the
  last :data:`KEEP_MANIFESTS` versions;
* ``.tmp-`` files (left by a process killed mid-write) older than the grace period;
* with ``older_than_seconds``, or always when it is ``None`` (as ``mlflow gc`` does), runs
  in the ``deleted`` lifecycle stage that long: their events leave the compacted files,
  their segments, artifacts and run-id claim are deleted. This is the one irreversible
  operation of evtrack.

**doctor** reads every file of a store and reports damaged or torn files, orphan
segments, manifests that list missing files, duplicated events, stale or missing
claims, and orphan run-id claims (a claim whose run never got events). With ``repair=True`` it rebuilds what is derived (compacted files, manifests,
``names/`` and ``runs/`` claims) from the segments and sets damaged segments aside under
``experiments/<id>/damaged/``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from evtrack import settings
from evtrack.clock import now_ms
from evtrack.errors import StoreError
from evtrack.store.log.manifest import (
    Conflict,
    Manifest,
    commit,
    compacted_dir,
    list_versions,
    manifest_dir,
    read_manifest,
    read_version,
    version_path,
)
from evtrack.store.log.segments import decode
from evtrack.store.log.snapshot import (
    Snapshot,
    decode_compacted,
    fetch,
    list_segments,
    read_file_tables,
    read_segment_tables,
)

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa

    from evtrack.store.log.layout import Store

__all__ = ["KEEP_MANIFESTS", "DoctorReport", "Finding", "GcReport", "doctor", "gc", "rebuild"]

_log = logging.getLogger(__name__)

#: Newest manifest versions that gc always keeps.
KEEP_MANIFESTS = 10


def _mtime_ms(store: Store, path: str) -> int | None:
    try:
        info = store.fs.info(path)
    except FileNotFoundError:
        return None
    for key in ("mtime", "LastModified", "last_modified", "created"):
        value = info.get(key)
        if value is None:
            continue
        if hasattr(value, "timestamp"):
            return int(value.timestamp() * 1000)
        return int(float(value) * 1000)
    return None


def _rm(store: Store, path: str) -> bool:
    try:
        store.fs.rm_file(path)
        return True
    except FileNotFoundError:
        return False


# -- gc ---------------------------------------------------------------------------------------


@dataclass
class GcReport:
    """What one ``gc`` deleted."""

    segments_deleted: int = 0
    compacted_files_deleted: int = 0
    manifests_deleted: int = 0
    temp_files_deleted: int = 0
    runs_deleted: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def gc(
    store: Store,
    older_than_seconds: float | None = None,
    *,
    grace_seconds: float | None = None,
    delete_runs: bool = True,
) -> GcReport:
    """Delete replaced segments, unreferenced files and long-deleted runs (see module doc)."""
    grace = settings.get("gc_grace_seconds") if grace_seconds is None else grace_seconds
    now = now_ms()
    cutoff = now - int(grace * 1000)
    report = GcReport()
    if delete_runs:
        _gc_runs(store, older_than_seconds, now, report)
    for experiment_id in store.list_experiment_ids():
        try:
            _gc_experiment(store, experiment_id, cutoff, report)
        except (Conflict, StoreError) as exc:
            report.errors.append(f"experiment {experiment_id}: {exc}")
    for folder in (store.path("runs"), store.path("names"), store.path("experiments")):
        report.temp_files_deleted += _gc_temps(store, folder, cutoff)
    return report


def _gc_temps(store: Store, folder: str, cutoff: int) -> int:
    n = 0
    for name in store.listdir(folder):
        if name.startswith(".tmp-"):
            path = f"{folder}/{name}"
            mtime = _mtime_ms(store, path)
            if mtime is not None and mtime <= cutoff and _rm(store, path):
                n += 1
    return n


def _gc_experiment(store: Store, experiment_id: str, cutoff: int, report: GcReport) -> None:
    versions = list_versions(store, experiment_id)
    # Newest first. A manifest is live if it was the newest at some moment after the
    # cutoff: the newest one, and each whose successor was created after the cutoff.
    manifests: list[Manifest] = []
    old_enough: Manifest | None = None  # newest manifest created before the cutoff
    for version in reversed(versions):
        try:
            m = read_version(store, experiment_id, version)
        except (FileNotFoundError, StoreError):
            continue
        manifests.append(m)
        if m.created_ms <= cutoff:
            old_enough = m  # live itself; everything older is not
            break
    newest = manifests[0] if manifests else Manifest(experiment_id)

    # 1. segments covered long enough ago
    deleted = []
    if old_enough is not None:
        for path, seg in list_segments(store, experiment_id):
            if old_enough.coverage.covers(seg) and newest.coverage.covers(seg):
                if _rm(store, path):
                    deleted.append(seg)
                    report.segments_deleted += 1
    if deleted:
        base = newest
        for _ in range(5):
            try:
                commit(store, base, uncover=deleted, operation="gc")
                break
            except Conflict:
                base = read_manifest(store, experiment_id)

    # 2. compacted files no live manifest lists
    referenced = {f.name for m in manifests for f in m.files}
    folder = compacted_dir(store, experiment_id)
    for name in store.listdir(folder):
        if name in referenced:
            continue
        path = f"{folder}/{name}"
        mtime = _mtime_ms(store, path)
        if mtime is not None and mtime <= cutoff and _rm(store, path):
            if name.startswith(".tmp-"):
                report.temp_files_deleted += 1
            else:
                report.compacted_files_deleted += 1

    # 3. manifests superseded long ago
    keep_from = max(versions, default=0) - KEEP_MANIFESTS + 1
    for version in versions:
        if old_enough is not None and version < min(keep_from, old_enough.version):
            if _rm(store, version_path(store, experiment_id, version)):
                report.manifests_deleted += 1
    report.temp_files_deleted += _gc_temps(store, manifest_dir(store, experiment_id), cutoff)
    report.temp_files_deleted += _gc_temps(store, store.events_dir(experiment_id), cutoff)


def _deleted_runs(store: Store, older_than_seconds: float | None, now: int) -> list[dict[str, Any]]:
    from evtrack.store.log.views import connect, load_events, rows

    con = connect(load_events(store, history=False))
    sql = "select run_id, experiment_id, artifact_uri, deleted_time from runs "
    sql += "where lifecycle_stage = 'deleted'"
    params: list[Any] = []
    if older_than_seconds is not None:
        sql += " and coalesce(deleted_time, 0) <= ?"
        params.append(now - int(older_than_seconds * 1000))
    try:
        return rows(con, sql, params)
    finally:
        con.close()


def _gc_runs(store: Store, older_than_seconds: float | None, now: int, report: GcReport) -> None:
    by_experiment: dict[str, list[dict[str, Any]]] = {}
    for r in _deleted_runs(store, older_than_seconds, now):
        by_experiment.setdefault(r["experiment_id"], []).append(r)
    for experiment_id, runs in by_experiment.items():
        run_ids = {r["run_id"] for r in runs}
        try:
            purge_runs(store, experiment_id, run_ids)
        except (Conflict, StoreError) as exc:
            report.errors.append(f"runs of experiment {experiment_id}: {exc}")
            continue
        for r in runs:
            uri = r.get("artifact_uri")
            if uri:
                try:
                    import fsspec

                    fs, path = fsspec.core.url_to_fs(uri, **store.storage_options)
                    if fs.exists(path):
                        fs.rm(path, recursive=True)
                except Exception as exc:  # noqa: BLE001 - report, go on with the others
                    report.errors.append(f"artifacts of run {r['run_id']}: {exc}")
            _rm(store, store.path("runs", r["run_id"] + ".json"))
            report.runs_deleted.append(r["run_id"])


def purge_runs(store: Store, experiment_id: str, run_ids: set[str], attempts: int = 5) -> None:
    """Remove every event of ``run_ids`` for good: from compacted files, then segments."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from evtrack.store.log.compaction import _remove_quietly, _write, reduce_events, sort_events

    for _ in range(attempts):
        base = read_manifest(store, experiment_id)
        segs = [(p, s) for p, s in list_segments(store, experiment_id) if s.scope in run_ids]
        touched = [f for f in base.files if any(f.may_hold(r) for r in run_ids)]
        written = []
        try:
            for f in touched:
                snap = Snapshot(base, [f], [])
                (table,) = read_file_tables(store, snap)
                keep = pc.invert(
                    pc.is_in(table["run_id"].cast("string"), pa.array(sorted(run_ids)))
                )
                keep = pc.fill_null(keep, True)
                table = table.filter(keep)
                if table.num_rows:
                    order = sort_events if f.family == "full" else reduce_events
                    written.append(_write(store, experiment_id, f.family, order(table)))
            uncovered = [s for _, s in segs if not base.coverage.covers(s)]
            manifest = commit(
                store,
                base,
                remove=[f.name for f in touched],
                add=written,
                cover=uncovered,
                operation="purge_runs",
            )
        except (Conflict, FileNotFoundError):
            _remove_quietly(store, experiment_id, written)
            continue
        gone = [s for p, s in segs if _rm(store, p)]
        if gone:
            try:
                commit(store, manifest, uncover=gone, operation="purge_runs")
            except Conflict:
                pass  # the coverage stays; harmless, the next gc prunes nothing more
        return
    raise Conflict(f"could not purge runs of experiment {experiment_id}: lost every race")


# -- doctor -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """One thing ``doctor`` found. ``severity``: error (data at risk or wrong answers),
    warning (something to fix; queries are right), info (garbage that gc removes)."""

    kind: str
    path: str
    detail: str
    severity: str
    repaired: bool = False


@dataclass
class DoctorReport:
    """Everything ``doctor`` checked and found."""

    experiments: int = 0
    segments: int = 0
    compacted_files: int = 0
    events: int = 0
    findings: list[Finding] = field(default_factory=list)

    @property
    def problems(self) -> list[Finding]:
        """Errors and warnings not repaired."""
        return [f for f in self.findings if f.severity != "info" and not f.repaired]

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, kind: str, path: str, detail: str, severity: str) -> None:
        self.findings.append(Finding(kind, path, detail, severity))

    def mark_repaired(self, kinds: set[str], experiment_path: str | None = None) -> None:
        self.findings = [
            Finding(f.kind, f.path, f.detail, f.severity, True)
            if f.kind in kinds and (experiment_path is None or f.path.startswith(experiment_path))
            else f
            for f in self.findings
        ]


_REBUILD_KINDS = {"missing_file", "damaged_compacted", "damaged_manifest", "duplicate_events"}


def doctor(store: Store, repair: bool = False) -> DoctorReport:
    """Check every file of a store; with ``repair``, rebuild what is derived."""
    report = DoctorReport()
    for experiment_id in store.list_experiment_ids():
        report.experiments += 1
        _doctor_experiment(store, experiment_id, report, repair)
    _doctor_claims(store, report, repair)
    return report


def _doctor_experiment(
    store: Store, experiment_id: str, report: DoctorReport, repair: bool
) -> None:
    import pyarrow as pa

    exp_path = store.experiment_dir(experiment_id)
    needs_rebuild = False
    # manifests
    versions = list_versions(store, experiment_id)
    for version in versions[-1:]:
        try:
            read_version(store, experiment_id, version)
        except StoreError as exc:
            report.add(
                "damaged_manifest", version_path(store, experiment_id, version), str(exc), "error"
            )
            needs_rebuild = True
    manifest = read_manifest(store, experiment_id)
    folder = compacted_dir(store, experiment_id)
    present = set(store.listdir(folder))
    tables: list[pa.Table] = []
    for f in manifest.files:
        path = f"{folder}/{f.name}"
        report.compacted_files += 1
        if f.name not in present:
            report.add("missing_file", path, f"listed by manifest {manifest.version}", "error")
            needs_rebuild = True
            continue
        try:
            table = decode_compacted(fetch(store, [path])[path], path)  # type: ignore[arg-type]
        except Exception as exc:  # noqa: BLE001
            report.add("damaged_compacted", path, str(exc), "error")
            needs_rebuild = True
            continue
        if f.family == "full":
            tables.append(table)
    for name in sorted(present - manifest.file_names):
        kind = "torn_temp" if name.startswith(".tmp-") else "unreferenced_file"
        report.add(kind, f"{folder}/{name}", "not in the newest manifest; gc removes it", "info")
    # segments
    events_dir = store.events_dir(experiment_id)
    segs = list_segments(store, experiment_id)
    report.segments += len(segs)
    claimed_runs = set()
    for name in store.listdir(events_dir):
        if name.startswith(".tmp-"):
            report.add("torn_temp", f"{events_dir}/{name}", "left by a killed writer", "info")
    damaged = []
    for path, seg in segs:
        data = fetch(store, [path])[path]
        if isinstance(data, BaseException):
            continue  # removed since listing
        try:
            table = decode(data, seg.ext, where=path)
        except StoreError as exc:
            report.add("damaged_segment", path, str(exc), "error")
            damaged.append(path)
            continue
        if not manifest.coverage.covers(seg):
            tables.append(table)
        if seg.scope != "_" and seg.scope not in claimed_runs:
            owner = store.experiment_of_run(seg.scope)
            if owner == experiment_id:
                claimed_runs.add(seg.scope)
            else:
                report.add(
                    "orphan_segment",
                    path,
                    f"run {seg.scope} is claimed by experiment {owner}"
                    if owner
                    else f"run {seg.scope} has no runs/ claim",
                    "warning",
                )
    # exactly once: every (writer, seq) appears once in what a reader sees
    if tables:
        events = pa.concat_tables(tables)
        report.events += events.num_rows
        dups = _duplicates(events)
        if dups:
            report.add("duplicate_events", exp_path, f"{dups} events counted twice", "error")
            needs_rebuild = True
    if repair:
        for path in damaged:
            name = path.rsplit("/", 1)[-1]
            store.put(
                store.path("experiments", experiment_id, "damaged", name),
                store.read_bytes(path),
            )
            _rm(store, path)
        report.mark_repaired({"damaged_segment"}, events_dir)
        if needs_rebuild:
            rebuild(store, experiment_id)
            report.mark_repaired(_REBUILD_KINDS, exp_path)


def _duplicates(events: pa.Table) -> int:
    from evtrack.store.log.compaction import _duck

    (n,) = _duck(
        events.select(["writer", "seq"]),
        "select (select count(*) from ev) - (select count(*) from (select distinct writer, seq"
        " from ev)) as n",
    )["n"].to_pylist()
    return int(n)


def rebuild(store: Store, experiment_id: str) -> Manifest:
    """Rebuild an experiment's compacted files and manifest from what is readable.

    Events are gathered from the newest manifest's readable full files and every readable
    segment, de-duplicated by their ``(writer, seq)`` identity, and written as one full and
    one reduced file covering every segment read.
    """
    from evtrack.store.log.compaction import _concat, _duck, _write, reduce_events, sort_events

    base = read_manifest(store, experiment_id)
    folder = compacted_dir(store, experiment_id)
    tables = []
    for f in base.full:
        path = f"{folder}/{f.name}"
        data = fetch(store, [path])[path]
        if isinstance(data, BaseException):
            continue
        try:
            tables.append(decode_compacted(data, path))
        except StoreError:
            continue
    seg_tables, read = read_segment_tables(store, list_segments(store, experiment_id))
    events = _concat([*tables, *seg_tables])
    if events.num_rows:
        events = _duck(
            events, "select * from ev qualify row_number() over (partition by writer, seq) = 1"
        )
    written = [
        _write(store, experiment_id, "full", sort_events(events)),
        _write(store, experiment_id, "reduced", reduce_events(events)),
    ]
    return commit(
        store,
        base,
        remove=[f.name for f in base.files],
        add=written,
        cover=[s for _, s in read if not base.coverage.covers(s)],
        operation="rebuild",
    )


def _doctor_claims(store: Store, report: DoctorReport, repair: bool) -> None:
    import hashlib

    from evtrack.store.log.views import connect, load_events, rows

    con = connect(load_events(store, history=False))
    try:
        experiments = rows(con, "select experiment_id, name, lifecycle_stage from experiments")
        runs = rows(con, "select run_id, experiment_id from runs")
    finally:
        con.close()
    names = {r["name"]: r["experiment_id"] for r in experiments}
    folder = store.path("names")
    for file in store.listdir(folder):
        if file.startswith(".tmp-"):
            continue
        path = f"{folder}/{file}"
        try:
            claim = json.loads(store.read_bytes(path))
        except Exception as exc:  # noqa: BLE001
            report.add("damaged_claim", path, str(exc), "warning")
            continue
        if names.get(claim.get("name")) != claim.get("experiment_id"):
            report.add(
                "stale_name_claim",
                path,
                f"{claim.get('name')!r} → experiment {claim.get('experiment_id')}, "
                "which no longer has that name",
                "warning",
            )
            if repair:
                _rm(store, path)
                report.mark_repaired({"stale_name_claim"}, path)
    for name, experiment_id in names.items():
        path = store.path("names", hashlib.sha256(name.encode()).hexdigest() + ".json")
        if store.name_owner(name) is None:
            report.add(
                "missing_name_claim", path, f"experiment {experiment_id} {name!r}", "warning"
            )
            if repair:
                store.claim_name(name, experiment_id)
                report.mark_repaired({"missing_name_claim"}, path)
    _doctor_orphan_run_claims(store, {r["run_id"] for r in runs}, report, repair)
    for r in runs:
        path = store.path("runs", r["run_id"] + ".json")
        if store.experiment_of_run(r["run_id"]) is None:
            report.add(
                "missing_run_claim", path, f"run of experiment {r['experiment_id']}", "warning"
            )
            if repair:
                store.claim_run_id(r["run_id"], r["experiment_id"])
                report.mark_repaired({"missing_run_claim"}, path)


def _doctor_orphan_run_claims(
    store: Store, known: set[str], report: DoctorReport, repair: bool
) -> None:
    """Run-id claims with no run events: a create that failed after claiming the id.

    A claim is written just before its run's first events, so a young orphan may be a
    create in progress; ``repair`` removes only those older than ``gc_grace_seconds``.
    """
    folder = store.path("runs")
    cutoff = now_ms() - int(settings.get("gc_grace_seconds") * 1000)
    for file in store.listdir(folder):
        if file.startswith(".tmp-") or not file.endswith(".json"):
            continue
        run_id = file[: -len(".json")]
        if run_id in known:
            continue
        path = f"{folder}/{file}"
        report.add("orphan_run_claim", path, f"run {run_id} has no events", "warning")
        if repair:
            mtime = _mtime_ms(store, path)
            if mtime is not None and mtime < cutoff:
                _rm(store, path)
                report.mark_repaired({"orphan_run_claim"}, path)
