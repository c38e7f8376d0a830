"""Nothing acknowledged is lost (DESIGN.md invariants 1 and 6), checked across processes.

* ``kill -9`` of a process that logs in a loop: everything flushed before its last
  checkpoint is readable, nothing is doubled, and the store is never unreadable (torn
  segments are temporary files that readers ignore).
* Interpreter exit without ``end_run``: atexit flushes everything and ends the run FINISHED.
* ``synchronous=True`` and ``end_run()`` are durable on return, as seen by another process
  long before the writer's flush interval.
* Without any flush call, the flush interval and the buffer size bound what is waiting.
"""

from __future__ import annotations

import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time

import pytest
from helpers import subprocess_env

import evtrack
from evtrack import MlflowClient


class Child:
    """A Python child process whose stdout lines can be awaited with a timeout."""

    def __init__(self, script: str, store: str, **env: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", script, store],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=subprocess_env(None, **env),
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def expect(self, prefix: str, timeout: float = 60) -> list[str]:
        """The fields of the next line starting with ``prefix``."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.kill()
                pytest.fail(f"child printed no {prefix!r} line in {timeout} s")
            if line is None:
                pytest.fail(f"child exited before {prefix!r}: {self.proc.wait()} {self.stderr()}")
            if line.startswith(prefix):
                return line.split()[1:]

    def send(self, text: str = "go") -> None:
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def finish(self, timeout: float = 60) -> None:
        self.proc.stdin.close()
        assert self.proc.wait(timeout) == 0, self.stderr()

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stderr(self) -> str:
        return self.proc.stderr.read() if self.proc.stderr else ""

    def close(self) -> None:
        if self.proc.poll() is None:
            self.kill()
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream and not stream.closed:
                try:
                    stream.close()
                except OSError:
                    pass


@pytest.fixture
def children():
    made: list[Child] = []

    def start(script: str, store: str, **env: str) -> Child:
        child = Child(script, store, **env)
        made.append(child)
        return child

    yield start
    for child in made:
        child.close()


LOGGER = r"""
import sys, evtrack
evtrack.set_tracking_uri(sys.argv[1])
run = evtrack.start_run()
print("RUN", run.info.run_id, flush=True)
step = 0
for _ in range(20):  # then idle until killed: keeps the store small enough to read fast
    for _ in range(2000):
        evtrack.log_metric("loss", step * 0.5, step=step)
        step += 1
    evtrack.flush()
    print("CHECKPOINT", step, flush=True)
sys.stdin.readline()
"""


def test_kill_9_loses_nothing_flushed_and_leaves_a_readable_store(children, tmp_path):
    seed = int.from_bytes(os.urandom(4), "big")
    rng = random.Random(seed)
    store = str(tmp_path / "store")
    # Three writers on one store at once, each killed at its own random moment. A tiny
    # flush interval keeps their background threads writing segments all the time, so
    # a kill often lands in the middle of one.
    loggers = [children(LOGGER, store, EVTRACK_FLUSH_INTERVAL="0.005") for _ in range(3)]
    run_ids = [child.expect("RUN")[0] for child in loggers]
    flushed = []
    for child in loggers:
        last = 0
        for _ in range(rng.randint(1, 8)):
            last = int(child.expect("CHECKPOINT")[0])
        time.sleep(rng.random() * 0.05)
        child.kill()
        assert child.proc.returncode == -signal.SIGKILL
        flushed.append(last)

    client = MlflowClient(store)  # the store opens and reads after the crashes
    doubled = client.sql("select writer, seq from events group by all having count(*) > 1")
    assert doubled.fetchall() == [], f"seed={seed}"
    for run_id, last in zip(run_ids, flushed, strict=True):
        steps = [m.step for m in client.get_metric_history(run_id, "loss")]
        context = f"seed={seed} flushed={last} found={len(steps)}"
        assert len(steps) >= last, context
        # A prefix of what was logged, each point once, values intact.
        assert steps == list(range(len(steps))), context
        values = client.sql(
            "select min(value = step * 0.5) from metrics where run_id = ?", [run_id]
        ).fetchall()
        assert values == [(True,)], context
        run = client.get_run(run_id)
        assert run.info.status == "RUNNING"  # nobody ended it: that is the truth
        assert run.data.metrics["loss"] == (len(steps) - 1) * 0.5

    # Whatever a crash leaves half-written is a temporary file, and readers skip it.
    run_id = run_ids[0]
    events_dir = tmp_path / "store" / "experiments" / "0" / "events"
    torn = events_dir / f".tmp-0badc0ffee00-{run_id}.0123456789abcdef-0000000042.jsonl"
    torn.write_text('{"evtrack_segment": 1}\n{"writer": "0123456789abcdef", "seq": 0, "ti')
    before = len(client.get_metric_history(run_id, "loss"))
    assert len(MlflowClient(store).get_metric_history(run_id, "loss")) == before
    # A crashed run can be resumed and ended by another process.
    evtrack.set_tracking_uri(store)
    with evtrack.start_run(run_id=run_id):
        evtrack.log_metric("after-crash", 1.0)
    assert client.get_run(run_id).info.status == "FINISHED"


AT_EXIT = r"""
import sys, evtrack
evtrack.set_tracking_uri(sys.argv[1])
evtrack.set_experiment("atexit")
for i in range(10_000):
    evtrack.log_metric("m", float(i), step=i)
evtrack.log_param("p", "1")   # params flush; what follows only waits in the buffer
evtrack.log_metric("last", 42.0)
evtrack.log_metric_series("series", [1.0, 2.0, 3.0])
print("RUN", evtrack.active_run().info.run_id, flush=True)
"""


def test_interpreter_exit_flushes_and_ends_the_run(children, tmp_path):
    store = str(tmp_path / "store")
    child = children(AT_EXIT, store, EVTRACK_FLUSH_INTERVAL="3600")
    (run_id,) = child.expect("RUN")
    child.finish()
    client = MlflowClient(store)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.info.end_time is not None and run.info.end_time >= run.info.start_time
    assert run.data.metrics == {"m": 9999.0, "last": 42.0, "series": 3.0}
    assert run.data.params == {"p": "1"}
    assert [m.step for m in client.get_metric_history(run_id, "m")] == list(range(10_000))
    assert client.get_experiment(run.info.experiment_id).name == "atexit"


SYNC = r"""
import sys, evtrack
evtrack.set_tracking_uri(sys.argv[1])
run = evtrack.start_run()
run_id = run.info.run_id
evtrack.log_metric("fluent_sync", 1.0, synchronous=True)
evtrack.MlflowClient().log_metric(run_id, "client_sync", 2.0, synchronous=True)
evtrack.log_metrics({"metrics_sync": 3.0}, synchronous=True)
evtrack.log_metric("buffered", 4.0)
print("LOGGED", run_id, flush=True)
sys.stdin.readline()
evtrack.log_metric("before_end", 5.0)
evtrack.end_run()
print("ENDED", flush=True)
sys.stdin.readline()
"""


def test_synchronous_and_end_run_are_durable_for_other_processes(children, tmp_path):
    store = str(tmp_path / "store")
    # With an hour between background flushes, only the calls themselves can have
    # written anything that this (other) process sees.
    child = children(SYNC, store, EVTRACK_FLUSH_INTERVAL="3600")
    (run_id,) = child.expect("LOGGED")
    reader = MlflowClient(store)
    run = reader.get_run(run_id)
    assert run.data.metrics == {"fluent_sync": 1.0, "client_sync": 2.0, "metrics_sync": 3.0}
    assert run.info.status == "RUNNING"

    child.send()
    child.expect("ENDED")
    run = reader.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.metrics["before_end"] == 5.0
    assert run.data.metrics["buffered"] == 4.0
    child.finish()


WAITING = r"""
import sys, evtrack
evtrack.set_tracking_uri(sys.argv[1])
run = evtrack.start_run()
for i in range(int(sys.argv[2]) if len(sys.argv) > 2 else 10_000):
    evtrack.log_metric("m", float(i), step=i)
print("LOGGED", run.info.run_id, flush=True)
sys.stdin.readline()
"""


def test_the_unflushed_window_is_bounded(children, tmp_path):
    """Without flush calls, events wait at most the flush interval, or until the
    buffer holds ``buffer_events`` of them (the window a kill -9 can lose)."""
    by_interval = children(WAITING, str(tmp_path / "a"), EVTRACK_FLUSH_INTERVAL="0.1")
    by_size = children(
        WAITING,
        str(tmp_path / "b"),
        EVTRACK_FLUSH_INTERVAL="3600",
        EVTRACK_BUFFER_EVENTS="1000",
    )
    cases = [(by_interval, "a", 10_000), (by_size, "b", 9_000)]
    for child, folder, at_least in cases:
        (run_id,) = child.expect("LOGGED")
        reader = MlflowClient(str(tmp_path / folder))
        deadline = time.monotonic() + 15
        while True:
            found = len(reader.get_metric_history(run_id, "m"))
            if found >= at_least or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert found >= at_least, folder
        child.finish()
        assert len(reader.get_metric_history(run_id, "m")) == 10_000
