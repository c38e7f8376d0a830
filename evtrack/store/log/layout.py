"""The store: a folder or bucket on any fsspec filesystem, and its layout.

::

    <root>/evtrack.json                                  format marker and version
    <root>/experiments/<exp_id>/experiment.json           create-only id claim
    <root>/experiments/<exp_id>/events/<segment>          immutable segments (see segments.py)
    <root>/experiments/<exp_id>/_manifest/<N>.json        compaction manifests (compaction.py)
    <root>/experiments/<exp_id>/compacted/<file>.parquet  compacted events
    <root>/experiments/<exp_id>/artifacts/<run_id>/artifacts/…   default artifact location
    <root>/runs/<run_id>.json                             create-only run id claim → experiment
    <root>/names/<sha256(name)>.json                      create-only experiment name claim

Segments, manifests and claims are written once and never modified. On a local
folder a file is written under a temporary name (``.tmp-…``, ignored by readers) and
then linked into place, which is atomic and fails if the name exists; on object
storage it is one PUT. Claims and manifests need that PUT to be *create-only* and
atomic — of two processes creating one name, exactly one wins — and fsspec's generic
``pipe_file(mode="create")`` only checks, then writes. So a store opens only on a
filesystem known to have a real precondition (:data:`ATOMIC_CREATE`): s3fs sends
``If-None-Match: *``, gcsfs ``ifGenerationMatch=0``, adlfs ``overwrite=False`` (Azure's
``If-None-Match: *``); ``memory://`` lives in one process, where a lock makes the
check-then-write atomic. Any other filesystem is refused at open time unless the
``allow_non_atomic_create`` setting accepts the race (one writing process only).
Everything under ``names/`` and ``runs/`` can be rebuilt from the events by
``evtrack doctor --repair``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from evtrack import settings
from evtrack.errors import ResourceAlreadyExists, StoreError, StoreVersionError

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa

__all__ = ["ATOMIC_CREATE", "STORE_FORMAT_VERSION", "Store", "get_store", "resolve_uri"]

_log = logging.getLogger(__name__)

#: Version of the store layout. A store written by an older version stays readable.
STORE_FORMAT_VERSION = 1

#: fsspec protocols whose ``pipe_file(path, data, mode="create")`` is an atomic,
#: server-side create-only write (``file``/``local`` use ``os.link`` instead, and
#: ``memory`` a process lock; see the module docstring).
ATOMIC_CREATE = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss"})
_PROCESS_LOCAL = frozenset({"memory"})
_MEMORY_CREATE_LOCK = threading.Lock()  # every memory:// store of the process shares one fs

_STORES: dict[tuple[str, str], Store] = {}
_STORES_LOCK = threading.Lock()


def resolve_uri(uri: str | None) -> str:
    """Turn a tracking URI into a canonical store URL (local paths become absolute)."""
    if uri is None or uri == "":
        uri = settings.get("tracking_uri")
    uri = str(uri)
    if uri.startswith("evtrack"):  # MLflow plugin spellings: evtrack:///p, evtrack+s3://…
        from evtrack.mlflow_plugin.uris import to_store_url

        uri = to_store_url(uri)
    if uri.startswith("file://"):
        return "file://" + os.path.abspath(uri[len("file://") :])
    if "://" not in uri:
        return "file://" + os.path.abspath(os.path.expanduser(uri))
    return uri.rstrip("/")


def get_store(uri: str | None = None, storage_options: dict[str, Any] | None = None) -> Store:
    """The process-wide :class:`Store` for ``uri`` (one per URI and options).

    It lives until :meth:`Store.close`; a long-running process that opens many stores
    (a test suite, a notebook switching URIs) should close the ones it is done with.
    """
    canonical = resolve_uri(uri)
    key = (canonical, json.dumps(storage_options or {}, sort_keys=True, default=str))
    with _STORES_LOCK:
        store = _STORES.get(key)
        if store is None:
            store = _STORES[key] = Store(canonical, storage_options)
            store._key = key
        return store


def _after_fork() -> None:
    # Locks another thread held at the fork would never be released in the child.
    global _STORES_LOCK, _MEMORY_CREATE_LOCK
    _STORES_LOCK = threading.Lock()
    _MEMORY_CREATE_LOCK = threading.Lock()
    for store in list(_STORES.values()):
        store.cache = _TableCache()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


class _TableCache:
    """Decoded segments by path. Safe because a segment never changes once visible."""

    def __init__(self, max_rows: int = 20_000_000) -> None:
        self._items: OrderedDict[str, pa.Table] = OrderedDict()
        self._rows = 0
        self._max_rows = max_rows
        self._lock = threading.Lock()

    def get(self, path: str) -> pa.Table | None:
        with self._lock:
            table = self._items.get(path)
            if table is not None:
                self._items.move_to_end(path)
            return table

    def put(self, path: str, table: pa.Table) -> None:
        with self._lock:
            if path in self._items:
                return
            self._items[path] = table
            self._rows += table.num_rows
            while self._rows > self._max_rows and len(self._items) > 1:
                _, old = self._items.popitem(last=False)
                self._rows -= old.num_rows


class _RecentWrites:
    """Bytes of small segments this process wrote to an object store, by path.

    A segment never changes once written, so a read of one of them (a batch compaction
    of the runs this process just ended, a search right after a sweep) is answered from
    here instead of a GET. Bounded: the oldest are dropped past ``max_bytes``.
    """

    MAX_SEGMENT = 256 * 1024  # larger segments are not kept (metric streams, models)

    def __init__(self, max_bytes: int = 32 * 1024 * 1024) -> None:
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._bytes = 0
        self._max_bytes = max_bytes
        self._lock = threading.Lock()

    def remember(self, path: str, data: bytes) -> None:
        if len(data) > self.MAX_SEGMENT:
            return
        with self._lock:
            if path in self._items:
                return
            self._items[path] = data
            self._bytes += len(data)
            while self._bytes > self._max_bytes:
                _, old = self._items.popitem(last=False)
                self._bytes -= len(old)

    def get(self, path: str) -> bytes | None:
        with self._lock:
            return self._items.get(path)


class Store:
    """One store: its filesystem, its layout, atomic writes and cached reads."""

    def __init__(self, uri: str, storage_options: dict[str, Any] | None = None) -> None:
        self.uri = uri
        self.storage_options = dict(storage_options or {})
        self._fs: Any = None
        if uri.startswith("file://") and not self.storage_options:
            # A local folder is read and written with os calls; fsspec (and asyncio with
            # it, ~0.1 s) is imported only if something asks for ``fs``.
            self.root = uri[len("file://") :].rstrip("/") or "/"
            protocols: tuple[str, ...] = ("file",)
        else:
            import fsspec

            try:
                self._fs, root = fsspec.core.url_to_fs(uri, **self.storage_options)
            except (ImportError, ValueError) as exc:
                from evtrack.errors import InvalidParameterValue

                raise InvalidParameterValue(
                    f"Cannot open tracking URI {uri!r}: {exc}. Use a folder, file://, "
                    "memory://, or an object store URL such as s3://bucket/prefix "
                    "(pip install 'evtrack[s3]')."
                ) from exc
            self.root = root.rstrip("/") or "/"
            protocol = self._fs.protocol
            protocols = tuple(protocol) if isinstance(protocol, (tuple, list)) else (protocol,)
        self.is_local = "file" in protocols or "local" in protocols
        self._process_local = bool(_PROCESS_LOCAL & set(protocols))
        if not (self.is_local or self._process_local or ATOMIC_CREATE & set(protocols)):
            self._refuse_non_atomic(protocols)
        self.cache = _TableCache()
        # Object stores only: a local (or memory://) read is cheaper than keeping a copy.
        remote = not (self.is_local or self._process_local)
        self.recent: _RecentWrites | None = _RecentWrites() if remote else None
        self._initialized = False
        self._key: tuple[str, str] | None = None  # set by get_store

    @property
    def fs(self) -> Any:
        """The store's fsspec filesystem (for a local folder, made on first use)."""
        if self._fs is None:
            from fsspec.implementations.local import LocalFileSystem

            self._fs = LocalFileSystem()
        return self._fs

    def _refuse_non_atomic(self, protocols: tuple[str, ...]) -> None:
        name = "/".join(protocols)
        if not settings.get("allow_non_atomic_create"):
            from evtrack.errors import InvalidParameterValue

            raise InvalidParameterValue(
                f"Cannot open {self.uri!r}: the {name!r} filesystem has no atomic create-only "
                "write, so two processes could both claim one experiment name, run id or "
                "manifest version. Use a local folder, memory://, s3://, gs:// or az://; or, "
                "with a single writing process, set EVTRACK_ALLOW_NON_ATOMIC_CREATE=1."
            )
        _log.warning(
            "evtrack: %s has no atomic create-only write (%s); allowed by "
            "allow_non_atomic_create, so only one process may write to it at a time.",
            self.uri,
            name,
        )

    def close(self) -> None:
        """Flush and stop this store's writer, drop its caches and forget the store.

        The next :func:`get_store` for the URI opens a fresh one. Closing is optional
        for a script (exit flushes everything), but a process that opens many stores
        should close them, or their threads and caches live as long as it does.
        """
        from evtrack.store.log.autocompact import close_ended_runs
        from evtrack.store.log.writer import close_writer

        close_ended_runs(self)
        close_writer(self)
        with _STORES_LOCK:
            if self._key is not None and _STORES.get(self._key) is self:
                del _STORES[self._key]
        self.cache = _TableCache()

    def __repr__(self) -> str:
        return f"Store({self.uri!r})"

    # -- paths ---------------------------------------------------------------------

    def path(self, *parts: str) -> str:
        return "/".join((self.root, *parts))

    def url(self, *parts: str) -> str:
        """A full URL (with protocol) for a path in the store, e.g. for artifact roots."""
        if self.is_local:
            return "file://" + self.path(*parts)
        return self.uri + "/" + "/".join(parts)

    def experiment_dir(self, experiment_id: str) -> str:
        return self.path("experiments", experiment_id)

    def events_dir(self, experiment_id: str) -> str:
        return self.path("experiments", experiment_id, "events")

    # -- format --------------------------------------------------------------------

    def ensure(self) -> None:
        """Create the store's format marker if missing; refuse a newer format."""
        if self._initialized:
            return
        marker = self.path("evtrack.json")
        try:
            info = json.loads(self.read_bytes(marker))
        except FileNotFoundError:
            body = {"format": "evtrack", "format_version": STORE_FORMAT_VERSION}
            try:
                self.put(marker, json.dumps(body).encode(), create_only=True)
            except FileExistsError:
                pass
            info = json.loads(self.read_bytes(marker))
        version = info.get("format_version")
        if not isinstance(version, int) or version > STORE_FORMAT_VERSION:
            raise StoreVersionError(
                f"The store at {self.uri} has format version {version!r}; this evtrack reads "
                f"up to {STORE_FORMAT_VERSION}. Upgrade evtrack to read it."
            )
        self._initialized = True

    # -- writes --------------------------------------------------------------------

    def put(self, path: str, data: bytes, *, create_only: bool = False) -> None:
        """Write ``data`` at ``path`` so readers see all of it or nothing.

        With ``create_only`` an existing file raises :class:`FileExistsError`. Without it
        the name must be fresh anyway (segment names are unique), and an existing file is
        replaced atomically.
        """
        if self.is_local:
            self._put_local(path, data, create_only)
        elif create_only and self._process_local:
            with _MEMORY_CREATE_LOCK:  # memory://: check-then-write, made atomic here
                self.fs.pipe_file(path, data, mode="create")
        elif create_only:
            self.fs.pipe_file(path, data, mode="create")
        else:
            self.fs.pipe_file(path, data)

    def _put_local(self, path: str, data: bytes, create_only: bool) -> None:
        folder, name = os.path.split(path)
        tmp = os.path.join(folder, f".tmp-{secrets.token_hex(6)}-{name}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileNotFoundError:
            os.makedirs(folder, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if settings.get("fsync"):
                os.fsync(fd)
        finally:
            os.close(fd)
        try:
            if create_only:
                os.link(tmp, path)  # atomic, and fails if the name is taken
            else:
                os.replace(tmp, path)
                return
        finally:
            if create_only:
                os.unlink(tmp)

    # -- listing and reading -------------------------------------------------------

    def listdir(self, path: str) -> list[str]:
        """Names (not paths) in a folder; empty if it does not exist. Never cached."""
        if self.is_local:
            try:
                return os.listdir(path)
            except (FileNotFoundError, NotADirectoryError):
                return []
        try:
            entries = self.fs.ls(path, detail=False, refresh=True)
        except FileNotFoundError:
            return []
        return [e.rstrip("/").rsplit("/", 1)[-1] for e in entries]

    def read_bytes(self, path: str) -> bytes:
        if self.is_local:
            with open(path, "rb") as f:
                return f.read()
        data: bytes = self.fs.cat_file(path)  # fsspec is untyped: its results are Any
        return data

    def exists(self, path: str) -> bool:
        if self.is_local:
            return os.path.exists(path)
        found: bool = self.fs.exists(path)
        return found

    def rm_file(self, path: str) -> None:
        """Delete one file; :class:`FileNotFoundError` if it is not there."""
        if self.is_local:
            os.unlink(path)
        else:
            self.fs.rm_file(path)

    def list_experiment_ids(self) -> list[str]:
        return sorted(
            (n for n in self.listdir(self.path("experiments")) if not n.startswith(".")),
            key=lambda n: (len(n), n),
        )

    # -- claims: experiment ids, experiment names, run ids --------------------------

    def claim_experiment_id(self, body: dict[str, Any]) -> str:
        """Take the next free integer experiment id with a create-only marker file."""
        taken = [int(i) for i in self.list_experiment_ids() if i.isdigit()]
        candidate = max(taken, default=0) + 1
        for _ in range(1000):
            try:
                self.put(
                    self.path("experiments", str(candidate), "experiment.json"),
                    json.dumps(body).encode(),
                    create_only=True,
                )
                return str(candidate)
            except FileExistsError:
                candidate += 1
        raise StoreError("could not claim an experiment id after 1000 attempts")

    def ensure_experiment_dir(self, experiment_id: str, body: dict[str, Any]) -> None:
        try:
            self.put(
                self.path("experiments", experiment_id, "experiment.json"),
                json.dumps(body).encode(),
                create_only=True,
            )
        except FileExistsError:
            pass

    def _name_path(self, name: str) -> str:
        return self.path("names", hashlib.sha256(name.encode()).hexdigest() + ".json")

    def claim_name(self, name: str, experiment_id: str) -> None:
        """Reserve an experiment name; :class:`ResourceAlreadyExists` if it is taken."""
        try:
            self.put(
                self._name_path(name),
                json.dumps({"name": name, "experiment_id": experiment_id}).encode(),
                create_only=True,
            )
        except FileExistsError:
            owner = self.name_owner(name)
            if owner != experiment_id:
                raise ResourceAlreadyExists(
                    f"Experiment '{name}' already exists (id {owner}). Choose another name, "
                    "or restore and reuse that experiment."
                ) from None

    def name_owner(self, name: str) -> str | None:
        try:
            owner: str = json.loads(self.read_bytes(self._name_path(name)))["experiment_id"]
        except FileNotFoundError:
            return None
        return owner

    def release_name(self, name: str) -> None:
        try:
            self.rm_file(self._name_path(name))
        except FileNotFoundError:
            pass

    def claim_run_id(self, run_id: str, experiment_id: str) -> None:
        """Record which experiment a run is in; :class:`ResourceAlreadyExists` if taken."""
        try:
            self.put(
                self.path("runs", run_id + ".json"),
                json.dumps({"experiment_id": experiment_id}).encode(),
                create_only=True,
            )
        except FileExistsError:
            raise ResourceAlreadyExists(f"Run '{run_id}' already exists.") from None

    def experiment_of_run(self, run_id: str) -> str | None:
        try:
            body = json.loads(self.read_bytes(self.path("runs", run_id + ".json")))
        except FileNotFoundError:
            return None
        experiment_id: str = body["experiment_id"]
        return experiment_id
