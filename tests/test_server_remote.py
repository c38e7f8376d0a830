"""evtrack's own client over HTTP, the native API (segments, ingest, SQL, series,
OpenAPI), the spool and ``evtrack sync``, and a multi-process load test against a real
gunicorn server that is killed mid-load."""

from __future__ import annotations

import gzip
import json
import math
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request

import pytest

from evtrack.server import create_app
from evtrack.server.testing import ServerProcess, free_port
from evtrack.tracking.client import MlflowClient

API = "/api/2.0/mlflow"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    store = str(tmp_path_factory.mktemp("remote") / "store")
    srv = ServerProcess(store)
    srv.start()
    yield srv.url, store
    srv.stop()


def run_py(code: str, env: dict, timeout: float = 120) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_evtrack_client_over_http(server, tmp_path):
    url, store = server
    out = run_py(
        """
        import json, math, evtrack
        evtrack.set_experiment("over-http")
        with evtrack.start_run(run_name="r") as run:
            evtrack.log_param("lr", 0.1)
            evtrack.set_tag("t", "x")
            for i in range(20000):
                evtrack.log_metric("loss", 1.0 / (i + 1), step=i)
            evtrack.log_metric("bad", float("nan"))
            evtrack.log_dict({"a": 1}, "cfg.json")
            with evtrack.start_run(nested=True) as child:
                evtrack.log_metrics({"c": 2.0})
        c = evtrack.MlflowClient()
        r = c.get_run(run.info.run_id)
        hist = c.get_metric_history(run.info.run_id, "loss")
        found = evtrack.search_runs(experiment_names=["over-http"], output_format="list")
        print("RESULT " + json.dumps({
            "store": type(c.store).__name__, "run_id": run.info.run_id, "child": child.info.run_id,
            "params": r.data.params, "status": r.info.status, "n": len(hist),
            "last": hist[-1].value, "found": sorted(x.info.run_id for x in found),
            "artifacts": [f.path for f in c.list_artifacts(run.info.run_id)],
            "sql": evtrack.sql("select count(*) from metrics where key = 'loss'").fetchall()[0][0],
        }))
        """,
        {"EVTRACK_TRACKING_URI": url, "EVTRACK_SPOOL_DIR": str(tmp_path / "spool")},
    )
    res = json.loads(out.split("RESULT ", 1)[1])
    assert res["store"] == "RestStore"
    assert res["params"] == {"lr": "0.1"} and res["status"] == "FINISHED"
    assert res["n"] == 20000 and res["last"] == 1.0 / 20000
    assert res["found"] == sorted([res["run_id"], res["child"]])
    assert res["artifacts"] == ["cfg.json"] and res["sql"] == 20000
    ev = MlflowClient(store)
    run = ev.get_run(res["run_id"])
    assert run.data.tags["t"] == "x" and math.isnan(run.data.metrics["bad"])
    assert len(ev.get_metric_history(res["run_id"], "loss")) == 20000
    assert not os.listdir(tmp_path / "spool") if (tmp_path / "spool").exists() else True


def test_run_state_set_right_after_creation_wins(tmp_path, monkeypatch):
    """The server writes a run's first state with its writer, the client ends the run
    with its own. In the same millisecond the later event must still win: the fold
    orders two writers' same-millisecond events by sequence and writer id, not arrival.

    The server runs in this process (a real HTTP server on loopback, in a thread) so one
    frozen clock can make every event of both writers fall in the same millisecond.
    """
    import threading

    from werkzeug.serving import make_server

    from evtrack import clock
    from evtrack.server import create_app
    from evtrack.store.log import run_writes, writer
    from evtrack.store.log import store as log_store
    from evtrack.store.rest import store as rest_store

    frozen = clock.now_ms()
    for module in (clock, writer, run_writes, log_store, rest_store):
        monkeypatch.setattr(module, "now_ms", lambda: frozen)
    app = create_app(str(tmp_path / "store"))
    http = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    try:
        remote = MlflowClient(f"http://127.0.0.1:{http.server_port}")
        exp = remote.create_experiment("same-millisecond")
        ids = []
        for _ in range(20):
            run_id = remote.create_run(exp).info.run_id
            remote.set_terminated(run_id, "FAILED")
            ids.append(run_id)
        assert {remote.get_run(r).info.status for r in ids} == {"FAILED"}
    finally:
        http.shutdown()
        thread.join()
        http.server_close()


def test_spool_when_unreachable_then_sync(server, tmp_path):
    url, store = server
    # Create the run while the server is up, then log to a dead port.
    ev_remote = MlflowClient(url)
    exp = ev_remote.create_experiment("spooled")
    run_id = ev_remote.create_run(exp).info.run_id
    dead = f"http://127.0.0.1:{free_port()}"
    spool = tmp_path / "spool"
    run_py(
        f"""
        from evtrack.store.rest.store import RestStore
        c = RestStore({dead!r})
        c._remember_run({run_id!r}, {exp!r}, {{}})
        for i in range(1000):
            c.log_metric({run_id!r}, "m", float(i), timestamp=1000 + i, step=i)
        try:
            c.set_terminated({run_id!r}, "KILLED")  # its flush fails: events stay buffered
        except Exception:
            pass
        """,
        {"EVTRACK_SPOOL_DIR": str(spool), "EVTRACK_HTTP_RETRIES": "1"},
    )
    spooled = [f for _, _, fs in os.walk(spool) for f in fs]
    assert spooled, "segments must be spooled, not dropped"
    assert MlflowClient(store).get_metric_history(run_id, "m") == []
    # The spool is for the dead URL; send it to the live server (same store) by moving it.
    from evtrack.store.rest.sink import spool_folder

    os.makedirs(os.path.dirname(spool_folder(url)), exist_ok=True)
    env = {**os.environ, "EVTRACK_SPOOL_DIR": str(spool)}
    os.rename(
        os.path.join(str(spool), os.path.basename(_spool_name(dead))),
        os.path.join(str(spool), os.path.basename(_spool_name(url))),
    )
    for _ in range(2):  # running sync twice stores nothing twice
        proc = subprocess.run(
            [sys.executable, "-m", "evtrack.cli", "sync", url],
            env=env,
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0, proc.stderr
    assert "Sent 0 segment(s)" in proc.stdout
    hist = MlflowClient(store).get_metric_history(run_id, "m")
    assert [m.step for m in hist] == list(range(1000))
    assert MlflowClient(store).get_run(run_id).info.status == "KILLED"


def _spool_name(uri: str) -> str:
    import urllib.parse

    return urllib.parse.quote(uri.rstrip("/"), safe="")


# -- the native API in-process ---------------------------------------------------------


@pytest.fixture(scope="module")
def app_env(tmp_path_factory):
    store = str(tmp_path_factory.mktemp("native") / "store")
    app = create_app(store)
    c = app.test_client()
    eid = c.post(f"{API}/experiments/create", json={"name": "native"}).get_json()["experiment_id"]
    rid = c.post(f"{API}/runs/create", json={"experiment_id": eid}).get_json()["run"]["info"][
        "run_id"
    ]
    return {"c": c, "store": store, "eid": eid, "rid": rid}


def _segment(eid: str, rid: str, n: int = 100, writer_id: str | None = None) -> tuple[str, bytes]:
    from helpers import captured_segment

    def fill(w) -> None:
        buf = w.metric_buffer(eid, rid)
        for i in range(n):
            buf.extend(("seg", float(i) + (n if writer_id else 0), i, 1000 + i))

    return captured_segment(fill, writer_id)


def test_segment_put_is_idempotent(app_env):
    c, eid, rid = app_env["c"], app_env["eid"], app_env["rid"]
    name, data = _segment(eid, rid, 600)
    url = f"/api/evtrack/segments/{eid}/{name}"
    first = c.put(url, data=data, content_type="application/octet-stream").get_json()
    again = c.put(url, data=data, content_type="application/octet-stream").get_json()
    assert first["created"] is True and again["created"] is False and first["events"] == 600
    assert len(MlflowClient(app_env["store"]).get_metric_history(rid, "seg")) == 600
    from evtrack.store.log.segments import parse_name

    other_name, other = _segment(eid, rid, 600, writer_id=parse_name(name).writer)
    assert other_name == name and other != data  # same name, other content: a bug somewhere
    r = c.put(url, data=other, content_type="application/octet-stream")
    assert r.status_code == 400 and r.get_json()["error_code"] == "RESOURCE_ALREADY_EXISTS"


def test_segment_put_validates_before_writing(app_env):
    c, eid, rid = app_env["c"], app_env["eid"], app_env["rid"]
    name, data = _segment(eid, rid, 5)
    small_name, small = _segment(eid, rid, 3)
    assert small_name.endswith(".jsonl")
    cases = [
        (f"/api/evtrack/segments/{eid}/not-a-segment", data, 400),
        (f"/api/evtrack/segments/{eid}/{name.replace(rid, '0' * 32)}", data, 404),
        (f"/api/evtrack/segments/{eid}/{name.replace('.', '.ffff', 1)}", data, 400),
        (f"/api/evtrack/segments/{eid}/{small_name}", b"garbage\n", 400),
        (
            f"/api/evtrack/segments/{eid}/{small_name}",
            small.replace(b'"metric"', b'"experiment"'),
            400,
        ),
    ]
    for url, body, status in cases:
        r = c.put(url, data=body, content_type="application/octet-stream")
        assert r.status_code == status, (url, r.get_json())
    gz = c.put(
        f"/api/evtrack/segments/{eid}/{small_name}",
        data=gzip.compress(small),
        headers={"Content-Encoding": "gzip"},
        content_type="application/octet-stream",
    )
    assert gz.status_code == 200


def test_bulk_ingest(app_env):
    c, rid = app_env["c"], app_env["rid"]
    body = {
        "run_id": rid,
        "metrics": [
            {"key": "bulk", "values": [1, 2.5, "NaN"], "steps": [0, 1, 2], "timestamps": [5, 6, 7]}
        ],
        "params": {"bp": "1"},
        "tags": {"bt": "x"},
    }
    assert c.post("/api/evtrack/ingest", json=body).get_json() == {
        "metrics": 3,
        "params": 1,
        "tags": 1,
    }
    hist = MlflowClient(app_env["store"]).get_metric_history(rid, "bulk")
    assert [m.value for m in hist][:2] == [1.0, 2.5] and math.isnan(hist[2].value)
    for bad in (
        {**body, "extra": 1},
        {"run_id": rid, "metrics": [{"key": "b", "values": [True]}]},
        {"run_id": rid, "metrics": [{"key": "b", "values": [1], "steps": [1, 2]}]},
        {"run_id": rid, "metrics": [{"key": "b", "values": [1], "timestamps": [-1]}]},
        {"metrics": []},
    ):
        r = c.post("/api/evtrack/ingest", json=bad)
        assert r.status_code == 400, (bad, r.get_json())


def test_sql_is_read_only_and_sandboxed(app_env, tmp_path):
    c = app_env["c"]
    r = c.post("/api/evtrack/sql", json={"query": "select count(*) as n from runs"}).get_json()
    assert r["columns"] == ["n"] and r["rows"][0][0] >= 1 and r["truncated"] is False
    r = c.post("/api/evtrack/sql", json={"query": "select ? as x", "params": [5]}).get_json()
    assert r["rows"] == [[5]]
    r = c.post(
        "/api/evtrack/sql", json={"query": "select * from range(10)", "max_rows": 3}
    ).get_json()
    assert len(r["rows"]) == 3 and r["truncated"] is True
    secret = tmp_path / "secret.csv"
    secret.write_text("a\n1\n")
    for query in (
        f"select * from read_csv('{secret}')",
        f"copy (select 1) to '{tmp_path}/out.csv'",
        f"attach '{tmp_path}/x.db'",
        "set enable_external_access = true",
        "install httpfs",
        "select * from glob('/*')",
        "select * from secret",  # no Python replacement scans
    ):
        r = c.post("/api/evtrack/sql", json={"query": query})
        assert r.status_code == 400, (query, r.get_json())
    assert not (tmp_path / "out.csv").exists() and not (tmp_path / "x.db").exists()


def test_series_downsampling_keeps_spikes(app_env):
    c, rid = app_env["c"], app_env["rid"]
    values = [0.0] * 10000
    values[7777] = 100.0
    values[2222] = -50.0
    c.post(
        "/api/evtrack/ingest", json={"run_id": rid, "metrics": [{"key": "spiky", "values": values}]}
    )
    r = c.get(f"/api/evtrack/metrics/series?run_id={rid}&key=spiky&max_points=100").get_json()
    assert r["total"] == 10000 and len(r["step"]) <= 102
    assert 100.0 in r["value"] and -50.0 in r["value"]
    assert r["step"][0] == 0 and r["step"][-1] == 9999
    assert (
        c.get(f"/api/evtrack/metrics/series?run_id={rid}&key=spiky&max_points=1").status_code == 400
    )


def test_openapi_document(app_env):
    doc = app_env["c"].get("/api/evtrack/openapi.json").get_json()
    assert doc["openapi"].startswith("3.")
    assert {"/api/evtrack/sql", "/api/evtrack/ingest", "/api/evtrack/metrics/series"} <= set(
        doc["paths"]
    )


def test_openapi_fuzz_no_5xx(server):
    """schemathesis fuzzes every documented operation of a real server: no 5xx."""
    url, _ = server
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "run",
            f"{url}/api/evtrack/openapi.json",
            "--url",
            url,
            "--checks",
            "not_a_server_error",
            "--max-examples",
            "40",
            "--phases",
            "examples,fuzzing",
            "--no-color",
            "--suppress-health-check",
            "all",
        ],
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


# -- load from several processes, and a server killed mid-load ------------------------


def _load(url: str, run_id: str, proc_no: int, n_requests: int, acked_path: str) -> None:
    import http.client
    import urllib.parse

    host = urllib.parse.urlsplit(url).netloc
    conn = http.client.HTTPConnection(host, timeout=10)
    with open(acked_path, "w") as acked:
        for r in range(n_requests):
            base = (proc_no * n_requests + r) * 100
            body = json.dumps(
                {
                    "run_id": run_id,
                    "metrics": [
                        {"key": "load", "value": 1.0, "timestamp": 1, "step": base + k}
                        for k in range(100)
                    ],
                }
            )
            try:
                conn.request(
                    "POST",
                    "/api/2.0/mlflow/runs/log-batch",
                    body,
                    {"Content-Type": "application/json"},
                )
                resp = conn.getresponse()
                resp.read()
            except OSError:
                return  # the server was killed
            if resp.status == 200:
                acked.write(f"{base}\n")
                acked.flush()


def test_load_from_processes_and_kill_loses_nothing_acknowledged(tmp_path):
    store = str(tmp_path / "store")
    srv = ServerProcess(store, ["--workers", "2"])
    url = srv.start()
    try:
        c = MlflowClient(url)
        exp = c.create_experiment("load")
        run_a = c.create_run(exp).info.run_id
        run_b = c.create_run(exp).info.run_id
        ctx = multiprocessing.get_context("spawn")

        # 1. Exact counts: 3 processes x 40 requests x 100 points.
        procs = [
            ctx.Process(target=_load, args=(url, run_a, i, 40, str(tmp_path / f"a{i}")))
            for i in range(3)
        ]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        steps = [m.step for m in MlflowClient(store).get_metric_history(run_a, "load")]
        assert len(steps) == len(set(steps)) == 3 * 40 * 100

        # 2. Kill -9 the whole server mid-load: every acknowledged batch is in the store.
        procs = [
            ctx.Process(target=_load, args=(url, run_b, i, 100000, str(tmp_path / f"b{i}")))
            for i in range(3)
        ]
        for p in procs:
            p.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not all(
            (tmp_path / f"b{i}").exists() and (tmp_path / f"b{i}").stat().st_size > 200
            for i in range(3)
        ):
            time.sleep(0.05)
        srv.stop(signal.SIGKILL)
        for p in procs:
            p.join(30)
    finally:
        srv.stop()
    acked = set()
    for i in range(3):
        with open(tmp_path / f"b{i}") as f:
            acked |= {int(line) for line in f if line.strip()}
    assert acked, "the load generators got no acknowledgement before the kill"
    stored = {m.step for m in MlflowClient(store).get_metric_history(run_b, "load")}
    missing = [base for base in acked if any(base + k not in stored for k in range(100))]
    assert not missing, f"{len(missing)} acknowledged batches lost"


def test_health_over_real_http(server):
    url, _ = server
    with urllib.request.urlopen(url + "/health") as r:
        assert r.read() == b"OK"
