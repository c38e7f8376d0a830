"""Watching a store for new segments: one observer per store, any number of listeners.

The web view's live pages and ``evtrack compact --watch`` both need to know when a
writer somewhere published a segment. A :class:`StoreWatcher` finds out once per store
and hands each :class:`Change` to every :class:`Subscription` that asked for that
experiment (or that run), so a hundred open tabs cost one observer.

How it finds out depends on the filesystem:

* **Local folders: watchdog.** One recursive observer (inotify on Linux, FSEvents on
  macOS, ReadDirectoryChangesW on Windows) on the store's root. A segment becomes
  visible by a hard link or a rename of a finished temporary file (see
  :mod:`evtrack.store.log.layout`), which the observer reports at once; temporary
  files are ignored. Limit: inotify needs one watch per folder, artifact folders
  included. If the system refuses more watches (``fs.inotify.max_user_watches``), or
  the store's folder does not exist yet, the watcher falls back to listing and logs why.
* **Object stores: listing at an interval.** S3's LIST has no conditional form
  (``If-None-Match`` applies to GETs of one object, not to listings), so each interval
  lists the ``events/`` folder of every experiment somebody subscribed to and compares
  the names with the previous listing; only a difference reaches subscribers. The
  cost is one LIST (one page per 1,000 segments) per watched experiment per interval,
  whatever the number of subscribers, and nothing when nobody subscribes. Compaction
  followed by ``evtrack gc`` shrinks the listings again.

Only segments are reported, never deletions or manifests: compaction and garbage
collection change no event, so no reader has to react to them.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from evtrack.store.log.segments import parse_name

if TYPE_CHECKING:  # pragma: no cover
    from watchdog.events import DirCreatedEvent, DirMovedEvent, FileCreatedEvent, FileMovedEvent
    from watchdog.observers.api import BaseObserver

    from evtrack.store.log.layout import Store

__all__ = ["Change", "StoreWatcher", "Subscription"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Change:
    """Segments that appeared in one experiment's ``events/`` folder.

    ``names`` are file names (``<run_id|_>.<writer>-<seq>.<ext>``); the run of each is
    the part before the first dot.
    """

    experiment_id: str
    names: frozenset[str]

    @property
    def run_ids(self) -> frozenset[str]:
        return frozenset(n.split(".", 1)[0] for n in self.names) - {"_"}


class Subscription:
    """Changes for one experiment (or every experiment), optionally for one run.

    Changes queue up between calls of :meth:`wait`, so a listener that is busy for a
    while misses nothing; use it as a context manager, or :meth:`close` it.
    """

    def __init__(
        self, watcher: StoreWatcher, experiment_id: str | None, run_id: str | None
    ) -> None:
        self.watcher = watcher
        self.experiment_id = experiment_id
        self.run_id = run_id
        self._pending: list[Change] = []
        self._cond = threading.Condition()
        self.closed = False

    def wants(self, change: Change) -> Change | None:
        """The part of ``change`` this subscription asked for, or None."""
        if self.experiment_id is not None and change.experiment_id != self.experiment_id:
            return None
        if self.run_id is None:
            return change
        names = frozenset(n for n in change.names if n.startswith(self.run_id + "."))
        return Change(change.experiment_id, names) if names else None

    def _deliver(self, change: Change) -> None:
        with self._cond:
            self._pending.append(change)
            self._cond.notify_all()

    def wait(self, timeout: float | None = None) -> list[Change]:
        """Changes since the last call; blocks up to ``timeout`` seconds for the first one."""
        with self._cond:
            if not self._pending and not self.closed:
                self._cond.wait(timeout)
            out, self._pending = self._pending, []
            return out

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()
        self.watcher._unsubscribe(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class StoreWatcher:
    """One observer of a store, started by the first subscription.

    ``interval`` is how often an object store is listed (and how often the local
    fallback lists). ``use_watchdog=None`` picks watchdog for local folders and listing
    otherwise; ``False`` forces listing (tests, network filesystems where inotify sees
    nothing of other machines' writes: NFS, SMB).
    """

    def __init__(
        self, store: Store, *, interval: float = 1.0, use_watchdog: bool | None = None
    ) -> None:
        self.store = store
        self.interval = interval
        self._use_watchdog = store.is_local if use_watchdog is None else use_watchdog
        self._subs: list[Subscription] = []
        self._lock = threading.Lock()
        self._observer: BaseObserver | None = None
        self._lister: threading.Thread | None = None
        self._stop = threading.Event()
        self._seen: dict[str, frozenset[str]] = {}  # listing mode: names per experiment
        self._listed = threading.Event()  # listing mode: the first round is done
        self.mode: str | None = None  # "watchdog" or "listing" once started

    # -- subscribers -------------------------------------------------------------------

    def subscribe(
        self, experiment_id: str | None = None, run_id: str | None = None
    ) -> Subscription:
        """Changes of ``experiment_id`` (None: of every experiment), of ``run_id`` if given."""
        sub = Subscription(self, experiment_id, run_id)
        with self._lock:
            self._subs.append(sub)
            if self.mode is None:
                self._start()
        if self.mode == "listing":
            # Return only once the store was listed: whatever appears from now on is a
            # change this subscriber hears of (the compactor's first sweep relies on it).
            self._listed.wait(timeout=60)
            self._baseline(sub)
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            if sub in self._subs:
                self._subs.remove(sub)

    @property
    def subscribers(self) -> int:
        with self._lock:
            return len(self._subs)

    def publish(self, change: Change) -> None:
        """Hand ``change`` to every subscription that wants (a part of) it."""
        with self._lock:
            subs = list(self._subs)
        for sub in subs:
            part = sub.wants(change)
            if part is not None:
                sub._deliver(part)

    # -- starting and stopping ---------------------------------------------------------

    def _start(self) -> None:
        if self._use_watchdog:
            try:
                self._observer = self._start_watchdog()
                self.mode = "watchdog"
                return
            except (OSError, ImportError) as exc:
                _log.warning(
                    "evtrack: cannot watch %s with watchdog (%s); listing it every %.1f s",
                    self.store.root,
                    exc,
                    self.interval,
                )
        self.mode = "listing"
        self._lister = threading.Thread(target=self._list_loop, name="evtrack-watch", daemon=True)
        self._lister.start()

    def close(self) -> None:
        """Stop observing; subscriptions get no more changes."""
        self._stop.set()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
        if self._lister is not None and self._lister is not threading.current_thread():
            self._lister.join(timeout=5)
        with self._lock:
            subs, self._subs = self._subs, []
        for sub in subs:
            with sub._cond:
                sub.closed = True
                sub._cond.notify_all()

    # -- watchdog (local folders) ------------------------------------------------------

    def _start_watchdog(self) -> BaseObserver:
        from watchdog.events import FileSystemEventHandler
        from watchdog.observers import Observer

        root = self.store.root
        if not os.path.isdir(root):
            raise OSError(f"{root} does not exist yet")
        watcher = self

        class Handler(FileSystemEventHandler):
            # A segment appears by link() (created) or rename() (moved); nothing else
            # makes one visible, and its temporary file never parses as a segment.
            def on_created(self, event: DirCreatedEvent | FileCreatedEvent) -> None:
                if not event.is_directory:
                    watcher._seen_path(event.src_path)

            def on_moved(self, event: DirMovedEvent | FileMovedEvent) -> None:
                if not event.is_directory:
                    watcher._seen_path(event.dest_path)

        observer = Observer()
        observer.schedule(Handler(), root, recursive=True)
        observer.daemon = True
        observer.start()
        return observer

    def _seen_path(self, path: str | bytes) -> None:
        path = os.fsdecode(path)
        folder, name = os.path.split(path)
        parent, leaf = os.path.split(folder)
        if leaf != "events" or parse_name(name) is None:
            return
        experiments, experiment_id = os.path.split(parent)
        if os.path.normpath(experiments) != os.path.normpath(self.store.path("experiments")):
            return
        self.publish(Change(experiment_id, frozenset([name])))

    # -- listing (object stores) -------------------------------------------------------

    def _wanted(self) -> Iterable[str]:
        with self._lock:
            wanted = {s.experiment_id for s in self._subs}
        if None in wanted:
            return self.store.list_experiment_ids()
        return sorted(e for e in wanted if e is not None)

    def _names(self, experiment_id: str) -> frozenset[str]:
        names = self.store.listdir(self.store.events_dir(experiment_id))
        return frozenset(n for n in names if parse_name(n) is not None)

    def _baseline(self, sub: Subscription) -> None:
        """List an experiment a new subscriber wants, so its first change is a real one."""
        if sub.experiment_id is not None and sub.experiment_id not in self._seen:
            try:
                self._seen[sub.experiment_id] = self._names(sub.experiment_id)
            except Exception as exc:  # noqa: BLE001 - the next round retries
                _log.info("evtrack: listing %s failed: %s", sub.experiment_id, exc)

    def _list_loop(self) -> None:
        first = True
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                ids = list(self._wanted())
            except Exception as exc:  # noqa: BLE001 - transient: network, throttling
                _log.info("evtrack: listing experiments failed: %s", exc)
                ids = []
            for experiment_id in ids:
                if self._stop.is_set():
                    return
                try:
                    names = self._names(experiment_id)
                except Exception as exc:  # noqa: BLE001 - transient; retried next round
                    _log.info("evtrack: listing %s failed: %s", experiment_id, exc)
                    continue
                old = self._seen.get(experiment_id)
                self._seen[experiment_id] = names
                if old is None and first:
                    continue  # what existed before anyone watched is not a change
                new = names - (old or frozenset())
                if new:
                    self.publish(Change(experiment_id, new))
            first = False
            self._listed.set()
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))
