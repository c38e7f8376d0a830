"""Many writers, one run, no coordination (DESIGN.md invariant 2 and 3).

Several processes resume the same run by id and log to it at once; threads of one
process share its writer. Every event must be counted exactly once: exact totals, no
``(writer, seq)`` twice, and each writer's points in the order it logged them.
"""

from __future__ import annotations

import subprocess
import sys
import threading

from helpers import subprocess_env

import evtrack
from evtrack import MlflowClient
from evtrack.entities import Metric

PROCESSES = 4
POINTS = 20_000

WORKER = r"""
import sys, evtrack
store, run_id, index = sys.argv[1], sys.argv[2], int(sys.argv[3])
evtrack.set_tracking_uri(store)
run = evtrack.start_run(run_id=run_id)
evtrack.log_param("shared", "same value")
evtrack.log_param(f"p{index}", index)
print("READY", flush=True)
sys.stdin.readline()  # start together
for step in range(int(sys.argv[4])):
    evtrack.log_metric("loss", float(index), step=step)
    if step % 2500 == 2499:
        evtrack.flush()
evtrack.set_tag(f"done{index}", "yes")
evtrack.end_run()
"""


def test_processes_logging_to_one_run(tmp_path):
    store = str(tmp_path / "store")
    client = MlflowClient(store)
    run_id = client.create_run("0").info.run_id
    client.flush()
    env = subprocess_env(None, EVTRACK_FLUSH_INTERVAL="0.01")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, store, run_id, str(i), str(POINTS)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for i in range(PROCESSES)
    ]
    try:
        for proc in procs:
            assert proc.stdout.readline().strip() == "READY", proc.stderr.read()
        for proc in procs:
            proc.stdin.write("go\n")
            proc.stdin.flush()
        for proc in procs:
            _, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()

    assert client.sql(
        "select count(*) from metrics where run_id = ? and key = 'loss'", [run_id]
    ).fetchall() == [(PROCESSES * POINTS,)]
    doubled = client.sql("select writer, seq from events group by all having count(*) > 1")
    assert doubled.fetchall() == []
    per_writer = client.sql(
        """
        select writer, count(*) as n, count(distinct step) as steps, min(step), max(step),
               count(distinct value) as values,
               bool_and(step = rank - 1) as in_order
        from (
            select writer, step, value,
                   row_number() over (partition by writer order by seq) as rank
            from events where kind = 'metric' and run_id = ?
        ) group by writer
        """,
        [run_id],
    ).fetchall()
    assert len(per_writer) == PROCESSES
    for _writer, n, steps, lo, hi, values, in_order in per_writer:
        assert (n, steps, lo, hi, values, in_order) == (POINTS, POINTS, 0, POINTS - 1, 1, True)

    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params == {
        "shared": "same value",
        **{f"p{i}": str(i) for i in range(PROCESSES)},
    }
    assert all(run.data.tags[f"done{i}"] == "yes" for i in range(PROCESSES))
    history = client.get_metric_history(run_id, "loss")
    assert len(history) == PROCESSES * POINTS
    assert sorted({m.value for m in history}) == [float(i) for i in range(PROCESSES)]


def test_threads_logging_to_one_run(tmp_path):
    store = str(tmp_path / "store")
    evtrack.set_tracking_uri(store)
    client = MlflowClient(store)
    run = evtrack.start_run()
    run_id = run.info.run_id
    threads_n, points = 6, 10_000
    errors: list[BaseException] = []
    stop = threading.Event()

    def fluent(i: int) -> None:
        for step in range(points):
            evtrack.log_metric(f"fluent{i}", float(step), step=step, run_id=run_id)

    def via_client(i: int) -> None:
        for step in range(points):
            client.log_metric(run_id, f"client{i}", float(step), step=step)

    def batches(i: int) -> None:
        for start in range(0, points, 1000):
            client.log_batch(
                run_id,
                metrics=[Metric(f"batch{i}", float(s), 1, s) for s in range(start, start + 1000)],
            )

    def flusher() -> None:
        while not stop.is_set():
            evtrack.flush()

    def guarded(fn, i):
        def body():
            try:
                fn(i)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        return body

    kinds = [fluent, via_client, batches]
    workers = [threading.Thread(target=guarded(kinds[i % 3], i)) for i in range(threads_n)]
    background = threading.Thread(target=flusher)
    background.start()
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    stop.set()
    background.join()
    assert errors == []
    # The active run in the main thread logs too, by the hot path.
    for step in range(points):
        evtrack.log_metric("main", float(step), step=step)
    evtrack.end_run()

    counts = dict(
        client.sql(
            "select key, count(*) from metrics where run_id = ? group by key", [run_id]
        ).fetchall()
    )
    prefix = {fluent: "fluent", via_client: "client", batches: "batch"}
    expected = {f"{prefix[kinds[i % 3]]}{i}": points for i in range(threads_n)}
    expected["main"] = points
    assert counts == expected
    steps_ok = client.sql(
        "select key from metrics where run_id = ? group by key "
        "having count(distinct step) <> count(*) or min(step) <> 0 or max(step) <> ?",
        [run_id, points - 1],
    ).fetchall()
    assert steps_ok == []
    doubled = client.sql("select writer, seq from events group by all having count(*) > 1")
    assert doubled.fetchall() == []
    # One process, one writer: its sequence numbers have no gaps.
    gaps = client.sql(
        "select count(distinct writer), max(seq) + 1 - count(*) from events"
    ).fetchall()
    assert gaps == [(1, 0)]
