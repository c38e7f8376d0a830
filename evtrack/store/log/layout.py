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
storage it is one PUT, create-only where the filesystem supports it (s3fs sends a
conditional PUT). Everything under ``names/`` and ``runs/`` can be rebuilt from the
events by ``evtrack doctor --repair``.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from evtrack import settings
from evtrack.errors import ResourceAlreadyExists, StoreError, StoreVersionError

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa

__all__ = ["STORE_FORMAT_VERSION", "Store", "get_store", "resolve_uri"]

#: Version of the store layout. A store written by an older version stays readable.
STORE_FORMAT_VERSION = 1

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
    """The process-wide :class:`Store` for ``uri`` (one per URI and options)."""
    canonical = resolve_uri(uri)
    key = (canonical, json.dumps(storage_options or {}, sort_keys=True, default=str))
    with _STORES_LOCK:
        store = _STORES.get(key)
        if store is None:
            store = _STORES[key] = Store(canonical, storage_options)
        return store


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


class Store:
    """One store: its filesystem, its layout, atomic writes and cached reads."""

    def __init__(self, uri: str, storage_options: dict[str, Any] | None = None) -> None:
        import fsspec

        self.uri = uri
        self.storage_options = dict(storage_options or {})
        try:
            self.fs, root = fsspec.core.url_to_fs(uri, **self.storage_options)
        except (ImportError, ValueError) as exc:
            from evtrack.errors import InvalidParameterValue

            raise InvalidParameterValue(
                f"Cannot open tracking URI {uri!r}: {exc}. Use a folder, file://, memory://, "
                "or an object store URL such as s3://bucket/prefix (pip install 'evtrack[s3]')."
            ) from exc
        self.root = root.rstrip("/") or "/"
        protocol = self.fs.protocol
        protocols = protocol if isinstance(protocol, (tuple, list)) else (protocol,)
        self.is_local = "file" in protocols or "local" in protocols
        self.cache = _TableCache()
        self._initialized = False

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
            info = json.loads(self.fs.cat_file(marker))
        except FileNotFoundError:
            body = {"format": "evtrack", "format_version": STORE_FORMAT_VERSION}
            try:
                self.put(marker, json.dumps(body).encode(), create_only=True)
            except FileExistsError:
                pass
            info = json.loads(self.fs.cat_file(marker))
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
        return self.fs.cat_file(path)

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
            return json.loads(self.fs.cat_file(self._name_path(name)))["experiment_id"]
        except FileNotFoundError:
            return None

    def release_name(self, name: str) -> None:
        try:
            self.fs.rm_file(self._name_path(name))
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
            return json.loads(self.fs.cat_file(self.path("runs", run_id + ".json")))[
                "experiment_id"
            ]
        except FileNotFoundError:
            return None
