"""The store watcher: segments written by other processes reach subscribers, on every
backend (watchdog on local folders, listing on ``memory://`` and S3), filtered by
experiment and run, with one observer however many subscribers."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

from helpers import run_python, subprocess_env

from evtrack.store.log.layout import get_store
from evtrack.store.log.snapshot import list_segments
from evtrack.store.log.watch import Change, StoreWatcher
from evtrack.tracking.client import MlflowClient

ROOT = Path(__file__).resolve().parent.parent


def collect(sub, until, rounds: int = 200, step: float = 0.1) -> list[Change]:
    """Changes from ``sub`` until ``until(changes)`` holds (at most rounds × step s)."""
    got: list[Change] = []
    for _ in range(rounds):
        got.extend(sub.wait(step))
        if until(got):
            break
    return got


def names(changes: list[Change]) -> set[str]:
    return set().union(*(c.names for c in changes)) if changes else set()


def log_in_other_process(uri: str, run_id: str, points: int, key: str = "loss") -> None:
    code = textwrap.dedent(
        f"""
        from evtrack.tracking.client import MlflowClient
        c = MlflowClient({uri!r})
        for i in range({points}):
            c.log_metric({run_id!r}, {key!r}, float(i), step=i)
        c.flush()
        """
    )
    run_python(code, env=subprocess_env(), timeout=120)


def test_local_store_is_watched_with_watchdog(tmp_path: Path) -> None:
    uri = str(tmp_path / "store")
    client = MlflowClient(uri)
    exp = client.create_experiment("w")
    run = client.create_run(exp).info.run_id
    other = client.create_run(exp).info.run_id
    client.flush()
    before = {p for p, _ in list_segments(client.store.layout, exp)}
    watcher = StoreWatcher(get_store(uri))
    try:
        with watcher.subscribe(exp, run) as sub, watcher.subscribe(exp) as everything:
            assert watcher.mode == "watchdog"
            log_in_other_process(uri, run, 3)
            log_in_other_process(uri, other, 2)
            after = {p for p, _ in list_segments(client.store.layout, exp)}
            new = {os.path.basename(p) for p in after - before}
            of_run = {n for n in new if n.startswith(run + ".")}
            got = collect(sub, lambda c: names(c) >= of_run)
            assert names(got) == of_run  # only this run's segments, each once
            assert all(c.experiment_id == exp and c.run_ids == {run} for c in got)
            assert names(collect(everything, lambda c: names(c) >= new)) == new
            # temporary files never surface; a stray file in events/ is no segment
            (Path(uri) / "experiments" / exp / "events" / ".tmp-abc-x.jsonl").write_text("{}")
            (Path(uri) / "experiments" / exp / "events" / "notes.txt").write_text("hi")
            assert everything.wait(0.5) == []
    finally:
        watcher.close()
    assert watcher.subscribers == 0


def test_listing_watch_on_every_backend(log_store_uri: str) -> None:
    """memory:// and S3 are listed at an interval; the local folder forced to list too."""
    client = MlflowClient(log_store_uri)
    exp = client.create_experiment("listing")
    run = client.create_run(exp).info.run_id
    client.flush()
    store = get_store(log_store_uri)
    watcher = StoreWatcher(store, interval=0.05, use_watchdog=False)
    try:
        with watcher.subscribe(exp) as sub:
            assert watcher.mode == "listing"
            before = {p for p, _ in list_segments(store, exp)}
            # memory:// lives in this process only: log from a thread's client there
            for i in range(3):
                client.log_metric(run, "m", float(i), step=i)
                client.flush()
            client.set_terminated(run)
            new = {os.path.basename(p) for p, _ in list_segments(store, exp)} - {
                os.path.basename(p) for p in before
            }
            assert len(new) == 4
            got = collect(sub, lambda c: names(c) >= new)
            assert names(got) == new
    finally:
        watcher.close()


def test_one_listing_per_interval_whatever_the_subscribers(tmp_path: Path) -> None:
    uri = str(tmp_path / "store")
    client = MlflowClient(uri)
    exp = client.create_experiment("many")
    client.create_run(exp)
    client.flush()
    store = get_store(uri)
    events_dir = store.events_dir(exp)
    calls: list[str] = []

    class Counting:
        """The store, counting listings of the experiment's events folder."""

        def __getattr__(self, name: str):
            return getattr(store, name)

        def listdir(self, path: str) -> list[str]:
            if path == events_dir:
                calls.append(path)
            return store.listdir(path)

    watcher = StoreWatcher(Counting(), interval=0.05, use_watchdog=False)  # type: ignore[arg-type]
    try:
        # nobody subscribed: nothing is listed
        assert watcher.mode is None and calls == []
        subs = [watcher.subscribe(exp) for _ in range(50)]
        first = len(calls)
        assert first <= 2  # the first subscriber's baseline (and the first round): not 50
        collect(subs[0], lambda c: len(calls) >= first + 10, rounds=400, step=0.01)
        rounds = len(calls) - first
        client.log_metric(client.search_runs([exp])[0].info.run_id, "m", 1.0)
        client.flush()
        got = [collect(s, lambda c: bool(c), rounds=100) for s in subs]
        assert all(len(names(g)) == 1 for g in got)  # every subscriber got it
        assert rounds >= 10  # listing went on: calls count rounds, not subscribers × rounds
        for s in subs:
            s.close()
        assert watcher.subscribers == 0
    finally:
        watcher.close()


def test_closing_the_watcher_wakes_its_subscribers(tmp_path: Path) -> None:
    uri = str(tmp_path / "store")
    MlflowClient(uri).create_experiment("x")
    watcher = StoreWatcher(get_store(uri))
    sub = watcher.subscribe("1")
    watcher.close()
    assert sub.closed and sub.wait(5) == []


def test_a_store_folder_that_does_not_exist_yet_is_listed(tmp_path: Path) -> None:
    """watchdog needs the folder; until it exists the watcher lists, and still hears of
    the first experiment and its segments."""
    uri = str(tmp_path / "not-yet")
    watcher = StoreWatcher(get_store(uri), interval=0.05)
    try:
        with watcher.subscribe(None) as sub:
            assert watcher.mode == "listing"
            client = MlflowClient(uri)
            exp = client.create_experiment("first")
            run = client.create_run(exp).info.run_id
            client.flush()
            got = collect(sub, lambda c: any(run in ch.run_ids for ch in c))
            assert any(ch.experiment_id == exp and run in ch.run_ids for ch in got)
    finally:
        watcher.close()
