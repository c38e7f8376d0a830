"""``evtrack compact`` and ``evtrack compact --watch``: runs compacted as they end,
experiments past the threshold, on every backend; two watchers racing while writer
processes log, with exact counts afterwards; a clean stop on SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import run_python, subprocess_env

from evtrack.cli.main import main
from evtrack.store.log.compactor import Compactor
from evtrack.store.log.layout import get_store
from evtrack.store.log.snapshot import take_snapshot
from evtrack.tracking.client import MlflowClient


def uncovered(uri: str, experiment_id: str, run_id: str | None = None) -> int:
    return len(take_snapshot(get_store(uri), experiment_id, run_id).segments)


def uncovered_of_runs(uri: str, experiment_id: str) -> int:
    """Uncovered segments of runs (not of the experiment itself, ``_``)."""
    segments = take_snapshot(get_store(uri), experiment_id).segments
    return sum(seg.scope != "_" for _, seg in segments)


def until(predicate, rounds: int = 300, step: float = 0.1) -> bool:
    """Wait for ``predicate()`` (at most rounds × step seconds); its last value."""
    pause = threading.Event()
    for _ in range(rounds):
        if predicate():
            return True
        pause.wait(step)
    return bool(predicate())


def test_compact_once_from_the_cli(tmp_path: Path) -> None:
    uri = str(tmp_path / "store")
    client = MlflowClient(uri)
    exp = client.create_experiment("once")
    run = client.create_run(exp).info.run_id
    client.log_metric(run, "m", 1.0)
    client.flush()
    result = CliRunner().invoke(main, ["--tracking-uri", uri, "compact", "--run", run])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"run {run}: ")
    assert uncovered(uri, exp, run) == 0
    result = CliRunner().invoke(main, ["--tracking-uri", uri, "compact", "--experiment", exp])
    assert result.exit_code == 0 and result.output.startswith(f"experiment {exp}: ")


def test_watch_refuses_a_run_or_experiment(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["--tracking-uri", str(tmp_path), "compact", "--watch", "--run", "abc"]
    )
    assert result.exit_code == 2 and "--watch watches the whole store" in result.output
    result = CliRunner().invoke(
        main, ["--tracking-uri", str(tmp_path), "compact", "--watch", "--threshold", "0"]
    )
    assert result.exit_code == 2 and "--threshold" in result.output


def test_compactor_on_every_backend(log_store_uri: str) -> None:
    """Ended runs are compacted, running ones left alone until the threshold."""
    client = MlflowClient(log_store_uri)
    exp = client.create_experiment("watched")
    done_before = client.create_run(exp).info.run_id  # ended before the watcher starts
    client.log_metric(done_before, "m", 1.0)
    client.set_terminated(done_before)
    running = client.create_run(exp).info.run_id
    client.flush()
    results = []
    compactor = Compactor(
        get_store(log_store_uri), threshold=12, interval=0.1, on_result=results.append
    )
    stop = threading.Event()
    thread = threading.Thread(target=compactor.run, args=(stop,))
    thread.start()
    try:
        assert until(lambda: uncovered(log_store_uri, exp, done_before) == 0)  # the start sweep
        ends_now = client.create_run(exp).info.run_id
        for i in range(3):
            client.log_metric(ends_now, "m", float(i), step=i)
            client.flush()
        client.set_terminated(ends_now)
        assert until(lambda: uncovered(log_store_uri, exp, ends_now) == 0)
        assert uncovered(log_store_uri, exp, running) > 0  # still running: not yet
        # a late segment of a run seen ending is compacted too
        client.set_tag(ends_now, "late", "yes")
        client.flush()
        assert until(lambda: uncovered(log_store_uri, exp, ends_now) == 0)
        # past the threshold the whole experiment is compacted, running runs included
        for i in range(12):
            client.log_metric(running, "loss", float(i), step=i)
            client.flush()
        assert until(lambda: uncovered(log_store_uri, exp) == 0)
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive()
    report = compactor.report
    assert report.errors == [] and report.runs >= 3 and report.experiments >= 1
    assert {r.run_id for r in results if r.run_id} == {done_before, ends_now}
    history = client.get_metric_history(running, "loss")
    assert [m.value for m in history] == [float(i) for i in range(12)]
    assert compactor.watcher.subscribers == 0


class WatchProcess:
    """``evtrack compact --watch`` in a subprocess; ``lines`` is what it printed."""

    def __init__(self, uri: str, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "evtrack.cli", "--tracking-uri", uri, "compact", "--watch"]
            + list(args),
            env=subprocess_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.first = self.proc.stdout.readline()
        if not self.first.startswith("compact --watch: "):
            self.proc.kill()
            raise RuntimeError(self.first + self.proc.stdout.read() + self.proc.stderr.read())
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)

    def terminate(self) -> tuple[int, str]:
        """SIGTERM, then (exit code, stderr)."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise
        self._reader.join(timeout=10)
        err = self.proc.stderr.read()
        self.proc.stdout.close()
        self.proc.stderr.close()
        return code, err


def test_sigterm_stops_the_watcher_cleanly(tmp_path: Path) -> None:
    uri = str(tmp_path / "store")
    client = MlflowClient(uri)
    exp = client.create_experiment("sigterm")
    client.flush()
    watcher = WatchProcess(uri, "--threshold", "1000")
    assert "(watchdog, threshold 1000 segments)" in watcher.first
    code = f"""
        from evtrack.tracking.client import MlflowClient
        c = MlflowClient({uri!r})
        r = c.create_run({exp!r}).info.run_id
        c.log_metric(r, "m", 1.0)
        c.set_terminated(r)
        print(r)
    """
    run = run_python(textwrap.dedent(code), env=subprocess_env()).stdout.strip()
    assert until(lambda: any(line.startswith(f"run {run}: ") for line in watcher.lines))
    returncode, err = watcher.terminate()
    assert returncode == 0, err
    assert err == ""
    assert watcher.lines[-1].startswith("compact --watch: stopped; compacted 1 runs and 0 ")
    assert uncovered(uri, exp, run) == 0


WRITER = """
import sys
from evtrack.tracking.client import MlflowClient

uri, exp, runs, points = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
c = MlflowClient(uri)
for _ in range(runs):
    r = c.create_run(exp).info.run_id
    c.log_param(r, "p", "1")
    for i in range(points):
        c.log_metric(r, "m", float(i), step=i)
        if i % 10 == 9:
            c.flush()  # several segments per run
    c.set_terminated(r)
c.flush()
"""


@pytest.mark.slow
@pytest.mark.parametrize(("threshold", "kill9"), [(20, False), (1000, False), (20, True)])
def test_two_watchers_race_while_writers_log(tmp_path: Path, threshold: int, kill9: bool) -> None:
    """20: experiment compactions race with run compactions; 1000: both watchers
    compact every run as it ends, racing for each one; kill9: one watcher is killed
    hard while the writers log, the other finishes the work."""
    uri = str(tmp_path / "store")
    client = MlflowClient(uri)
    exp = client.create_experiment("race")
    client.flush()
    writers, runs, points = 3, 8, 40
    watchers = [WatchProcess(uri, "--threshold", str(threshold)) for _ in range(2)]
    try:
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", WRITER, uri, exp, str(runs), str(points)],
                env=subprocess_env(),
            )
            for _ in range(writers)
        ]
        if kill9:
            assert until(lambda: any(w.lines for w in watchers), rounds=600)  # mid-work
            watchers[0].proc.send_signal(signal.SIGKILL)
        assert [p.wait(timeout=300) for p in procs] == [0] * writers
        # every run ended, so the watchers leave none of their segments uncovered
        assert until(lambda: uncovered_of_runs(uri, exp) == 0, rounds=600)
    finally:
        results = [w.terminate() for w in watchers]
    assert [code for code, _ in results] == [-signal.SIGKILL if kill9 else 0, 0], results
    printed = [line for w in watchers for line in w.lines]
    if kill9:
        from evtrack.store.log.maintenance import doctor

        report = doctor(get_store(uri))
        assert report.ok, report.problems  # at most garbage (info) from the killed one
    elif threshold == 1000:
        # each run compacted once in all, alone or in a batch of runs that ended
        # together: the loser of a race finds nothing left to cover
        compacted = sum(
            1 if line.startswith("run ") else int(line.split()[0])
            for line in printed
            if line.startswith("run ") or " runs of experiment " in line
        )
        assert compacted == writers * runs, printed
    else:
        assert any(line.startswith("experiment ") for line in printed)
    fresh = MlflowClient(uri)
    (count,) = fresh.sql("select count(*) from metrics").fetchall()[0]
    assert count == writers * runs * points
    (n_runs, finished) = fresh.sql(
        "select count(*), count(*) filter (where status = 'FINISHED') from runs"
    ).fetchall()[0]
    assert n_runs == finished == writers * runs
    (events, distinct) = fresh.sql(
        "select count(*), count(distinct (writer, seq)) from events"
    ).fetchall()[0]
    assert events == distinct  # no event counted twice
    (params,) = fresh.sql("select count(*) from params").fetchall()[0]
    assert params == writers * runs
