"""Issue 9's findings, each probed against a real ``evtrack server`` over HTTP (the web view,
a hostile server and an SSRF target are real loopback servers too). See docs/security.md.
"""

from __future__ import annotations

import csv
import hashlib
import http.server
import io
import json
import os
import subprocess
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from helpers import subprocess_env

from evtrack.server.testing import ServerProcess
from evtrack.tracking.client import MlflowClient

API = "/api/2.0/mlflow"
PROXY = "/api/2.0/mlflow-artifacts/artifacts"


# -- helpers ---------------------------------------------------------------------------


class Answer:
    def __init__(self, status: int, headers, body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def call(
    url: str,
    method: str = "GET",
    body=None,
    *,
    raw: bytes | None = None,
    headers: dict | None = None,
) -> Answer:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    hdrs = {"Content-Type": "application/json"} if data is not None else {}
    req = urllib.request.Request(url, data=data, method=method, headers={**hdrs, **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return Answer(r.status, r.headers, r.read())
    except urllib.error.HTTPError as e:
        return Answer(e.code, e.headers, e.read())


def refused(answer: Answer, status: int = 400, code: str = "INVALID_PARAMETER_VALUE") -> str:
    assert answer.status == status, (answer.status, answer.text[:500])
    body = answer.json()
    assert body["error_code"] == code, body
    assert body["message"] and "Traceback" not in body["message"]
    return body["message"]


def snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` (temporary files aside) with the hash of its content."""
    out = {}
    for folder, _, files in os.walk(root):
        for f in files:
            if f.startswith(".tmp-"):
                continue
            path = os.path.join(folder, f)
            with open(path, "rb") as fh:
                out[os.path.relpath(path, root)] = hashlib.sha256(fh.read()).hexdigest()
    return out


def new_experiment(url: str, name: str, **extra) -> str:
    a = call(f"{url}{API}/experiments/create", "POST", {"name": name, **extra})
    assert a.status == 200, a.text
    return a.json()["experiment_id"]


def new_run(url: str, experiment_id: str) -> dict:
    a = call(f"{url}{API}/runs/create", "POST", {"experiment_id": experiment_id})
    assert a.status == 200, a.text
    return a.json()["run"]["info"]


def proxied(info: dict) -> str:
    """The proxy path of a run's artifact folder (its mlflow-artifacts:/ URI)."""
    assert info["artifact_uri"].startswith("mlflow-artifacts:/")
    return info["artifact_uri"][len("mlflow-artifacts:/") :]


@contextmanager
def loopback(handler_cls) -> Iterator[tuple[str, list[str]]]:
    """A tiny HTTP server on 127.0.0.1 recording the paths it was asked for."""
    seen: list[str] = []

    class Handler(handler_cls):
        def log_message(self, *args) -> None:
            pass

        def handle_one_request(self) -> None:
            super().handle_one_request()
            if getattr(self, "path", None):
                seen.append(self.path)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    root = tmp_path_factory.mktemp("sec")
    store = root / "store"
    with ServerProcess(str(store), log_path=str(root / "server.log")) as url:
        yield {"url": url, "store": store, "root": root}


# -- 1. the proxy sees run artifact folders only -----------------------------------------


def test_default_artifact_root_is_outside_the_event_log(srv):
    url, store = srv["url"], srv["store"]
    eid = new_experiment(url, "layout")
    exp = call(f"{url}{API}/experiments/get?experiment_id={eid}").json()["experiment"]
    assert exp["artifact_location"] == f"mlflow-artifacts:/{eid}"
    info = new_run(url, eid)
    assert call(f"{url}{PROXY}/{proxied(info)}/f.txt", "PUT", raw=b"hi").status == 200
    assert (
        store / "artifacts" / eid / info["run_id"] / "artifacts" / "f.txt"
    ).read_bytes() == b"hi"
    assert not (store / "experiments" / eid / "artifacts").exists()


def test_proxy_refuses_everything_but_run_artifact_folders(srv):
    url, store = srv["url"], srv["store"]
    eid = new_experiment(url, "probe-1")
    info = new_run(url, eid)
    call(f"{url}{PROXY}/{proxied(info)}/keep.txt", "PUT", raw=b"keep")
    before = snapshot(store)
    seg = next((store / "experiments" / eid / "events").iterdir()).name
    for path in (
        f"{eid}/events",
        f"{eid}",
        "",
        f"{eid}/{info['run_id']}",
        f"../experiments/{eid}/events",
    ):
        a = call(f"{url}{PROXY}?" + urllib.parse.urlencode({"path": path}))
        refused(a)
    for method, path, data in [
        ("DELETE", f"{eid}", None),
        ("DELETE", f"{eid}/events", None),
        ("DELETE", f"{eid}/events/{seg}", None),
        ("GET", f"{eid}/events/{seg}", None),
        ("GET", f"{eid}/experiment.json", None),
        ("PUT", f"{eid}/events/{info['run_id']}.forged-0.jsonl", b'{"kind":"experiment"}\n'),
        ("PUT", f"{eid}/experiment.json", b'{"name":"owned"}'),
        ("PUT", f"{eid}/{info['run_id']}/x.txt", b"outside the artifacts folder"),
        ("PUT", f"{eid}/{'0' * 32}/artifacts/x.txt", b"no such run"),
    ]:
        refused(call(f"{url}{PROXY}/{path}", method, raw=data))
    # The same paths seen from the old proxied root (<store>/experiments) are refused too.
    refused(call(f"{url}{PROXY}?path={eid}/events"))
    assert snapshot(store) == before
    listing = call(f"{url}{PROXY}?path={proxied(info)}").json()
    assert listing["files"] == [{"path": "keep.txt", "is_dir": False, "file_size": 4}]
    assert call(f"{url}{API}/experiments/get?experiment_id={eid}").json()["experiment"]["name"] == (
        "probe-1"
    )


def test_proxy_serves_logged_model_folders_checked_against_the_model(srv):
    """MLflow 3's log_model uploads to <exp>/models/<model_id>/artifacts: that folder, of a
    model that exists, and nothing around it."""
    url, store = srv["url"], srv["store"]
    eid = new_experiment(url, "models-probe")
    made = call(f"{url}{API}/logged-models", "POST", {"experiment_id": eid, "name": "m"})
    info = made.json()["model"]["info"]
    folder = proxied(info)
    assert folder == f"{eid}/models/{info['model_id']}/artifacts"
    assert call(f"{url}{PROXY}/{folder}/MLmodel", "PUT", raw=b"flavors: {}").status == 200
    assert call(f"{url}{PROXY}/{folder}/MLmodel").body == b"flavors: {}"
    listing = call(f"{url}{PROXY}?path={folder}").json()
    assert listing["files"] == [{"path": "MLmodel", "is_dir": False, "file_size": 11}]
    before = snapshot(store)
    ghost = f"m-{'0' * 32}"
    for method, path, data in [
        ("PUT", f"{eid}/models/{ghost}/artifacts/x", b"no such model"),
        ("PUT", f"{eid}/models/{info['model_id']}/x", b"outside its artifacts folder"),
        ("PUT", f"{eid}/models/{info['model_id']}", b"the folder itself"),
        ("GET", f"{eid}/models", None),
        ("DELETE", f"{eid}/models/{info['model_id']}", None),
        ("PUT", f"0/models/{info['model_id']}/artifacts/x", b"another experiment's prefix"),
        ("PUT", f"{eid}/events/models/{info['model_id']}/artifacts/x", b"into the log"),
    ]:
        refused(call(f"{url}{PROXY}/{path}", method, raw=data))
    assert snapshot(store) == before
    assert call(f"{url}{API}/logged-models/{info['model_id']}", "DELETE").status == 200
    refused(call(f"{url}{PROXY}/{folder}/MLmodel"))  # a deleted model's files are gone too


def test_runs_the_python_client_wrote_keep_working_through_the_proxy(srv):
    """Runs created straight in the store keep <store>/experiments/<id>/artifacts/…"""
    url, store = srv["url"], srv["store"]
    local = MlflowClient(str(store))
    eid = local.create_experiment("written-locally")
    run = local.create_run(eid)
    local.log_text(run.info.run_id, "old layout", "notes/a.txt")
    assert "/experiments/" in run.info.artifact_uri
    info = call(f"{url}{API}/runs/get?run_id={run.info.run_id}").json()["run"]["info"]
    assert info["artifact_uri"] == f"mlflow-artifacts:/{eid}/artifacts/{run.info.run_id}/artifacts"
    assert call(f"{url}{PROXY}/{proxied(info)}/notes/a.txt").body == b"old layout"
    assert call(f"{url}{PROXY}/{proxied(info)}/notes/b.txt", "PUT", raw=b"new").status == 200
    assert local.download_artifacts(run.info.run_id, "notes/b.txt").endswith("b.txt")
    # ...while the experiment folder around it stays out of reach.
    refused(call(f"{url}{PROXY}?path={eid}/events"))
    refused(call(f"{url}{PROXY}?path={eid}/artifacts"))


def test_artifact_root_inside_the_event_log_is_refused_at_start(tmp_path):
    store = tmp_path / "s"
    srv = ServerProcess(str(store), ["--default-artifact-root", str(store / "experiments")])
    with pytest.raises(RuntimeError, match="exited"):
        srv.start(timeout=60)


# -- 2. SSRF: artifact locations come from an allow-list ------------------------------------


class _Internal(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"internal secret"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_HEAD = do_GET


def test_client_artifact_locations_are_checked(srv, tmp_path):
    url, store = srv["url"], srv["store"]
    with loopback(_Internal) as (internal, seen):
        for location in (
            f"{internal}/internal",
            "file:///etc",
            str(tmp_path),
            f"file://{store}/experiments/1",
            "mlflow-artifacts:/../x",
        ):
            before = snapshot(store)
            a = call(
                f"{url}{API}/experiments/create",
                "POST",
                {
                    "name": f"ssrf-{hashlib.md5(location.encode()).hexdigest()}",
                    **{"artifact_location": location},
                },
            )
            refused(a)
            assert snapshot(store) == before
        assert seen == []
    ok = new_experiment(url, "proxied-loc", artifact_location="mlflow-artifacts:/team/a")
    exp = call(f"{url}{API}/experiments/get?experiment_id={ok}").json()["experiment"]
    assert exp["artifact_location"] == "mlflow-artifacts:/team/a"


def test_server_and_web_view_never_fetch_a_planted_url(srv):
    """A location written into the store by someone else (not through the server)."""
    url, store = srv["url"], srv["store"]
    with loopback(_Internal) as (internal, seen):
        local = MlflowClient(str(store))
        eid = local.create_experiment("planted", artifact_location=f"{internal}/internal")
        run_id = local.create_run(eid).info.run_id
        local.flush()
        refused(call(f"{url}{API}/artifacts/list?run_id={run_id}"), 403, "PERMISSION_DENIED")
        for page in (
            f"/runs/{run_id}/artifacts/raw?path=secret.txt",
            f"/runs/{run_id}/artifacts?path=secret.txt",
            f"/runs/{run_id}/artifacts?format=json",
        ):
            a = call(url + page)
            assert a.status == 403, (page, a.status)
            assert b"internal secret" not in a.body
        assert seen == []


def test_allowed_artifact_locations_flag(tmp_path):
    store, extra = tmp_path / "s", tmp_path / "team-artifacts"
    with ServerProcess(str(store), ["--allowed-artifact-locations", str(extra)]) as url:
        eid = new_experiment(url, "allowed", artifact_location=str(extra / "x"))
        info = new_run(url, eid)
        assert info["artifact_uri"].startswith(str(extra / "x") + "/")  # a path, as MLflow keeps it
        refused(
            call(
                f"{url}{API}/experiments/create",
                "POST",
                {"name": "sibling", "artifact_location": str(tmp_path / "team-artifacts-2")},
            )
        )
        assert call(f"{url}{API}/artifacts/list?run_id={info['run_id']}").status == 200


# -- 3. symlinks planted in an artifact folder ------------------------------------------------


def test_symlinks_out_of_the_run_folder_are_refused(srv, tmp_path):
    url, store = srv["url"], srv["store"]
    eid = new_experiment(url, "symlinks")
    info = new_run(url, eid)
    run_id = info["run_id"]
    call(f"{url}{PROXY}/{proxied(info)}/real.txt", "PUT", raw=b"fine")
    folder = store / "artifacts" / eid / run_id / "artifacts"
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret")
    outside = tmp_path / "outside"
    outside.mkdir()
    (folder / "link.txt").symlink_to(secret)
    (folder / "linkdir").symlink_to(outside)
    base = f"{url}{PROXY}/{proxied(info)}"

    refused(call(f"{base}/link.txt"))
    refused(call(f"{base}/link.txt", "PUT", raw=b"overwritten"))
    refused(call(f"{base}/linkdir/new.txt", "PUT", raw=b"planted"))
    refused(call(f"{base}/link.txt", "DELETE"))
    refused(call(f"{url}{PROXY}?path={proxied(info)}/linkdir"))
    assert secret.read_text() == "top secret" and list(outside.iterdir()) == []
    names = [f["path"] for f in call(f"{url}{PROXY}?path={proxied(info)}").json()["files"]]
    assert names == ["real.txt"]
    listed = call(f"{url}{API}/artifacts/list?run_id={run_id}").json()["files"]
    assert [f["path"] for f in listed] == ["real.txt"]
    a = call(f"{url}/runs/{run_id}/artifacts/raw?path=link.txt")
    assert a.status == 400 and b"top secret" not in a.body
    page = call(f"{url}/runs/{run_id}/artifacts?format=json").json()
    assert [n["name"] for n in page["tree"]] == ["real.txt"]
    assert call(f"{url}/runs/{run_id}/artifacts?path=link.txt").status == 400
    # A local download (evtrack artifacts download against the store) skips them too.
    dst = tmp_path / "dst"
    out = evtrack_cli(
        "--tracking-uri", str(store), "artifacts", "download", "-r", run_id, "-d", str(dst)
    )
    assert out.returncode == 0, out.stderr
    assert sorted(p.name for p in dst.rglob("*") if p.is_file()) == ["real.txt"]


def test_a_run_folder_replaced_by_a_symlink_is_refused(srv, tmp_path):
    url, store = srv["url"], srv["store"]
    eid = new_experiment(url, "linked-run")
    info = new_run(url, eid)
    run_dir = store / "artifacts" / eid / info["run_id"]
    call(f"{url}{PROXY}/{proxied(info)}/a.txt", "PUT", raw=b"a")
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "artifacts").mkdir(parents=True)
    (elsewhere / "artifacts" / "secret.txt").write_text("top secret")
    os.rename(run_dir, tmp_path / "moved")
    run_dir.symlink_to(elsewhere)
    for a in (
        call(f"{url}{PROXY}/{proxied(info)}/secret.txt"),
        call(f"{url}{PROXY}?path={proxied(info)}"),
        call(f"{url}{PROXY}/{proxied(info)}/b.txt", "PUT", raw=b"b"),
        call(f"{url}{API}/artifacts/list?run_id={info['run_id']}"),
        call(f"{url}/runs/{info['run_id']}/artifacts/raw?path=secret.txt"),
    ):
        assert a.status == 403 and b"top secret" not in a.body, (a.status, a.text[:200])
    assert sorted(p.name for p in (elsewhere / "artifacts").iterdir()) == ["secret.txt"]


def evtrack_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """``evtrack ARGS`` in a child process, with this checkout first on the path."""
    return subprocess.run(
        [sys.executable, "-m", "evtrack.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=subprocess_env(**(env or {})),
    )


# -- 4. downloads from a hostile server ------------------------------------------------------

HOSTILE_RUN = "f" * 32


class _Hostile(http.server.BaseHTTPRequestHandler):
    """Answers like an evtrack server, but lists files named ``../…``."""

    listing: list[dict] = []

    def _json(self, body: dict, status: int = 200) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        path = urllib.parse.urlparse(self.path).path
        if path.endswith("/mlflow/runs/get"):
            info = {
                "run_id": HOSTILE_RUN,
                "run_uuid": HOSTILE_RUN,
                "experiment_id": "0",
                "artifact_uri": f"mlflow-artifacts:/0/{HOSTILE_RUN}/artifacts",
                "lifecycle_stage": "active",
                "status": "RUNNING",
            }
            return self._json({"run": {"info": info, "data": {}}})
        if path == "/api/2.0/mlflow-artifacts/artifacts":
            query = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
            at_root = query.get("path") == [f"0/{HOSTILE_RUN}/artifacts"]
            return self._json({"files": self.listing if at_root else []})
        if path.startswith("/api/2.0/mlflow-artifacts/artifacts/"):
            data = b"EVIL"
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return None
        return self._json({"error_code": "ENDPOINT_NOT_FOUND", "message": path}, 404)


def test_download_from_an_honest_server_still_works(srv, tmp_path):
    url = srv["url"]
    info = new_run(url, new_experiment(url, "downloads"))
    files = {"top.txt": b"top", "dir/a.txt": b"alpha", "dir/sub/b.bin": b"\x00beta"}
    for path, data in files.items():
        assert call(f"{url}{PROXY}/{proxied(info)}/{path}", "PUT", raw=data).status == 200
    dst = tmp_path / "all"
    out = evtrack_cli(
        "--tracking-uri", url, "artifacts", "download", "-r", info["run_id"], "-d", str(dst)
    )
    assert out.returncode == 0, out.stderr
    got = {p.relative_to(dst).as_posix(): p.read_bytes() for p in dst.rglob("*") if p.is_file()}
    assert got == files
    one = tmp_path / "one"
    out = evtrack_cli(
        "--tracking-uri", url, "artifacts", "download", "-r", info["run_id"], "-a", "dir/a.txt",
        "-d", str(one),
    )  # fmt: skip
    assert out.returncode == 0 and (one / "dir" / "a.txt").read_bytes() == b"alpha", out.stderr


@pytest.mark.parametrize(
    "bad",
    [
        "../victim.txt",
        "../../victim.txt",
        "/tmp/abs-victim.txt",
        "a/../../victim.txt",
        "..%2fvictim.txt",
    ],
)
def test_download_from_a_hostile_server_writes_nothing_outside(tmp_path, bad):
    dst = tmp_path / "d" / "dst"
    dst.mkdir(parents=True)
    for victim in (tmp_path / "victim.txt", tmp_path / "d" / "victim.txt"):
        victim.write_text("precious")  # where ../victim.txt and ../../victim.txt lead
    before = snapshot(tmp_path)

    class Handler(_Hostile):
        listing = [
            {"path": "ok.txt", "is_dir": False, "file_size": 4},
            {"path": bad, "is_dir": False, "file_size": 4},
        ]

    with loopback(Handler) as (hostile, seen):
        out = evtrack_cli(
            "--tracking-uri", hostile, "artifacts", "download", "-r", HOSTILE_RUN, "-d", str(dst)
        )
    assert out.returncode == 1, (out.stdout, out.stderr)
    assert "INVALID_PARAMETER_VALUE" in out.stderr and "Traceback" not in out.stderr
    assert snapshot(tmp_path) == before  # nothing written or truncated, ok.txt included
    assert not os.path.exists("/tmp/abs-victim.txt")
    assert not any("/artifacts/0/" in p for p in seen)  # no file was even fetched


def test_download_through_a_symlink_in_the_destination_is_refused(tmp_path):
    victim_dir = tmp_path / "elsewhere"
    victim_dir.mkdir()
    dst = tmp_path / "dst"
    dst.mkdir()
    (dst / "sub").symlink_to(victim_dir)

    class Handler(_Hostile):
        listing = [{"path": "sub", "is_dir": True}]

    class Deep(Handler):
        def do_GET(self) -> None:
            if "path=0%2F" + HOSTILE_RUN + "%2Fartifacts%2Fsub" in self.path:
                return self._json({"files": [{"path": "x.txt", "is_dir": False}]})
            return super().do_GET()

    with loopback(Deep) as (hostile, _):
        out = evtrack_cli(
            "--tracking-uri", hostile, "artifacts", "download", "-r", HOSTILE_RUN, "-d", str(dst)
        )
    assert out.returncode == 1, (out.stdout, out.stderr)
    assert list(victim_dir.iterdir()) == []


# -- 5. SQL caps -------------------------------------------------------------------------------

HEAVY_SQL = (
    "select max(s) from (select repeat('x', 1000) || i::varchar as s "
    "from range(3000000) t(i) order by s)"
)


@pytest.mark.parametrize("read_only", [False, True])
def test_sql_memory_and_answer_caps(tmp_path, read_only):
    store = tmp_path / "s"
    MlflowClient(str(store)).create_experiment("sql")
    args = ["--sql-memory", "128MB", "--sql-concurrency", "1", "--sql-max-answer-bytes", "20000"]
    with ServerProcess(str(store), args + (["--read-only"] if read_only else [])) as url:
        msg = refused(call(f"{url}/api/evtrack/sql", "POST", {"query": HEAVY_SQL}))
        assert "Out of Memory" in msg
        msg = refused(
            call(
                f"{url}/api/evtrack/sql",
                "POST",
                {"query": "select repeat('x', 100) from range(1000)"},
            )
        )
        assert "larger than 20000 bytes" in msg and "LIMIT" in msg
        ok = call(f"{url}/api/evtrack/sql", "POST", {"query": "select count(*) n from experiments"})
        assert ok.status == 200 and ok.json()["rows"] == [[2]]
        settings = call(
            f"{url}/api/evtrack/sql",
            "POST",
            {"query": "select current_setting('memory_limit'), current_setting('threads')"},
        ).json()["rows"]
        assert settings == [["128.0 MiB", 1]]


def test_sql_concurrency_limit(tmp_path):
    from flask import Flask

    from evtrack.server import create_app
    from evtrack.server.sql_budget import SqlBudget

    budget = SqlBudget(64 * 1024**2, concurrency=1, queue_seconds=0.0)
    app: Flask = create_app(str(tmp_path / "s"), sql_budget=budget)
    c = app.test_client()
    assert budget.acquire()  # another query holds the only slot
    try:
        r = c.post("/api/evtrack/sql", json={"query": "select 1"})
        assert r.status_code == 429 and r.get_json()["error_code"] == "RESOURCE_EXHAUSTED"
        assert r.headers["Retry-After"]
    finally:
        budget.release()
    assert c.post("/api/evtrack/sql", json={"query": "select 1"}).get_json()["rows"] == [[1]]


# -- 6. authentication -------------------------------------------------------------------------


def test_auth_reads_without_credentials_refuses_to_start(tmp_path):
    store = str(tmp_path / "s")
    out = evtrack_cli(
        "server", "--backend-store-uri", store, "--port", "0", "--auth-reads",
        env={"EVTRACK_SERVER_AUTH_TOKEN": ""},
    )  # fmt: skip
    assert out.returncode == 2 and "--auth-reads needs credentials" in out.stderr
    empty = tmp_path / "users"
    empty.write_text("# nobody\n")
    out = evtrack_cli(
        "server", "--backend-store-uri", store, "--port", "0", "--users-file", str(empty)
    )
    assert out.returncode == 2 and "open to everyone" in out.stderr


def _basic(user: str, password: str) -> dict:
    import base64

    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_users_file_roles_and_web_view_behind_auth(tmp_path):
    users = tmp_path / "users"
    digest = hashlib.sha256(b"reader-pw").hexdigest()
    users.write_text(f"ann:write:ann-pw\nrob:read:sha256:{digest}\nold:old-pw\n")
    store = tmp_path / "s"
    with ServerProcess(str(store), ["--users-file", str(users), "--auth-reads"]) as url:
        refused(call(f"{url}{API}/experiments/search?max_results=5"), 401, "UNAUTHENTICATED")
        assert call(f"{url}/").status == 401
        assert call(f"{url}/experiments/0").status == 401
        assert call(f"{url}/health").status == 200
        ann, rob, old = _basic("ann", "ann-pw"), _basic("rob", "reader-pw"), _basic("old", "old-pw")
        assert call(f"{url}/", headers=rob).status == 200
        # The stock client's logged-model lookup is a search: a read.
        search = call(f"{url}{API}/logged-models/search", "POST", {}, headers=rob)
        assert search.status == 200, search.text
        assert call(f"{url}{API}/experiments/search?max_results=5", headers=rob).status == 200
        assert (
            call(f"{url}/api/evtrack/sql", "POST", {"query": "select 1"}, headers=rob).status == 200
        )
        before = snapshot(store)
        msg = refused(
            call(f"{url}{API}/experiments/create", "POST", {"name": "r"}, headers=rob),
            403,
            "PERMISSION_DENIED",
        )
        assert "'read' role" in msg
        assert snapshot(store) == before
        for who in (ann, old):
            a = call(
                f"{url}{API}/experiments/create",
                "POST",
                {"name": f"w{len(who)}{who}"[:40]},
                headers=who,
            )
            assert a.status == 200, a.text


# -- 7. bad input: never a 5xx, nothing written --------------------------------------------------

S = "\\ud800"  # a lone surrogate as it arrives in JSON


def _raw(template: str, **values) -> bytes:
    return template.replace("@S", S).format(**values).encode()


def test_lone_surrogates_are_refused_everywhere(srv):
    url, store = srv["url"], srv["store"]
    eid = new_experiment(url, "surrogates")
    run_id = new_run(url, eid)["run_id"]
    cases = [
        ("experiments/create", '{{"name": "a@S"}}'),
        ("experiments/create", '{{"name": "ok-name", "tags": [{{"key": "k", "value": "@S"}}]}}'),
        ("experiments/update", '{{"experiment_id": "{eid}", "new_name": "@S"}}'),
        (
            "experiments/set-experiment-tag",
            '{{"experiment_id": "{eid}", "key": "k", "value": "@S"}}',
        ),
        ("runs/create", '{{"experiment_id": "{eid}", "run_name": "r@S"}}'),
        ("runs/create", '{{"experiment_id": "{eid}", "user_id": "@S"}}'),
        ("runs/create", '{{"experiment_id": "{eid}", "tags": [{{"key": "t", "value": "@S"}}]}}'),
        ("runs/update", '{{"run_id": "{run_id}", "run_name": "@S"}}'),
        ("runs/log-parameter", '{{"run_id": "{run_id}", "key": "p", "value": "@S"}}'),
        ("runs/set-tag", '{{"run_id": "{run_id}", "key": "t", "value": "x@S"}}'),
        ("runs/set-tag", '{{"run_id": "{run_id}", "key": "t@S", "value": "x"}}'),
        ("runs/log-batch", '{{"run_id": "{run_id}", "params": [{{"key": "p", "value": "@S"}}]}}'),
        ("runs/log-batch", '{{"run_id": "{run_id}", "tags": [{{"key": "t", "value": "@S"}}]}}'),
        ("runs/log-metric", '{{"run_id": "{run_id}", "key": "m@S", "value": 1, "timestamp": 1}}'),
        ("runs/search", '{{"experiment_ids": ["{eid}"], "filter": "params.p = \'@S\'"}}'),
        ("experiments/search", '{{"filter": "name = \'@S\'"}}'),
    ]
    before = snapshot(store)
    for route, template in cases:
        a = call(f"{url}{API}/{route}", "POST", raw=_raw(template, eid=eid, run_id=run_id))
        assert "surrogate" in refused(a) or route.endswith(("set-tag", "log-metric")), route
    ingest = [
        '{{"run_id": "{run_id}", "tags": {{"t": "@S"}}}}',
        '{{"run_id": "{run_id}", "params": {{"p@S": "v"}}}}',
        '{{"run_id": "{run_id}", "metrics": [{{"key": "m@S", "values": [1]}}]}}',
    ]
    for template in ingest:
        refused(call(f"{url}/api/evtrack/ingest", "POST", raw=_raw(template, run_id=run_id)))
    # A GET query string with the UTF-8 bytes of a surrogate is decoded with replacement.
    a = call(f"{url}{API}/experiments/get-by-name?experiment_name=%ED%A0%80")
    assert a.status == 404
    assert snapshot(store) == before  # no orphan runs/<id>.json, no event, no name claim


def test_deep_json_and_huge_steps(srv):
    url, store = srv["url"], srv["store"]
    eid = new_experiment(url, "deep")
    run_id = new_run(url, eid)["run_id"]
    before = snapshot(store)
    deep = b"[" * 1000 + b"]" * 1000
    nested = b'{"run_id": "' + run_id.encode() + b'", "x": ' + deep + b"}"
    for route in ("/mlflow/runs/log-batch", "/mlflow/experiments/create", "/mlflow/runs/search"):
        assert "nested too deeply" in refused(call(f"{url}/api/2.0{route}", "POST", raw=nested))
    refused(call(f"{url}/api/evtrack/ingest", "POST", raw=nested))
    for depth in (500, 900, 990):  # deep, but parseable: the surrogate scan must cope too
        body = b'{"name": ' + b"[" * depth + b'"\\ud800"' + b"]" * depth + b"}"
        refused(call(f"{url}{API}/experiments/create", "POST", raw=body))
    refused(call(f"{url}/api/evtrack/sql", "POST", raw=b'{"query": ' + deep + b"}"))
    for steps in ([2**64], [-(2**64)], [2**63]):
        body = {"run_id": run_id, "metrics": [{"key": "m", "values": [1.0], "steps": steps}]}
        refused(call(f"{url}/api/evtrack/ingest", "POST", body))
    body = {"run_id": run_id, "metrics": [{"key": "m", "values": [1.0], "timestamps": [2**64]}]}
    refused(call(f"{url}/api/evtrack/ingest", "POST", body))
    metric = {"run_id": run_id, "key": "m", "value": 1, "timestamp": 1, "step": 2**64}
    refused(call(f"{url}{API}/runs/log-metric", "POST", metric))
    assert snapshot(store) == before


def _run_segment(eid: str, run_id: str, run_name: str) -> tuple[str, bytes]:
    """A segment as a remote client's writer builds it: one run_name event, newest."""
    from helpers import captured_segment

    return captured_segment(
        lambda w: w.add(eid, run_id, "run", "run_name", run_name, time_ms=4102444800000)
    )


def test_segments_with_invalid_text_are_refused(srv):
    """Invalid UTF-8 in a Parquet segment used to be stored, and then every read of the
    experiment failed inside DuckDB (500 on runs/search and the web view)."""
    import pyarrow as pa

    from evtrack.store.log.segments import decode, encode, parse_name

    url, store = srv["url"], srv["store"]
    eid = new_experiment(url, "bad-segments")
    run_id = new_run(url, eid)["run_id"]
    before = snapshot(store)
    name, data = _run_segment(eid, run_id, "fine")
    table = decode(data, parse_name(name).ext)
    broken = pa.array([b"\xed\xa0\x80"] * table.num_rows, pa.binary()).view(pa.string())
    table = table.set_column(table.schema.get_field_index("text"), "text", broken)
    parquet = name.rsplit(".", 1)[0] + ".parquet"
    refused(
        call(f"{url}/api/evtrack/segments/{eid}/{parquet}", "PUT", raw=encode(table, "parquet"))
    )
    name, data = _run_segment(eid, run_id, "fine")
    jsonl = data.replace(b'"fine"', b'"\\ud800"')
    refused(call(f"{url}/api/evtrack/segments/{eid}/{name}", "PUT", raw=jsonl))
    assert snapshot(store) == before
    assert call(f"{url}{API}/runs/search", "POST", {"experiment_ids": [eid]}).status == 200
    assert call(f"{url}/experiments/{eid}").status == 200


def test_filters_too_long_to_plan_are_refused(srv):
    """20,000 AND-ed comparisons failed inside DuckDB (500); 200 took ~12 s to plan."""
    url = srv["url"]
    eid = new_experiment(url, "long-filter")
    for n in (101, 20_000):
        runs = " and ".join(f"metrics.m{i} > 1" for i in range(n))
        msg = refused(
            call(f"{url}{API}/runs/search", "POST", {"experiment_ids": [eid], "filter": runs})
        )
        assert "more than 100 comparisons" in msg
        exps = " and ".join(f"tags.t{i} = 'x'" for i in range(n))
        refused(call(f"{url}{API}/experiments/search", "POST", {"filter": exps}))
        page = call(
            f"{url}/experiments/{eid}?format=json&" + urllib.parse.urlencode({"filter": runs})
        )
        if n < 1000:  # longer ones are refused by the HTTP server itself (414 URI Too Long)
            assert page.status == 400 and "100 comparisons" in page.text
        else:
            assert page.status == 414
    ok = " and ".join(f"metrics.m{i} > 1" for i in range(100))
    assert (
        call(f"{url}{API}/runs/search", "POST", {"experiment_ids": [eid], "filter": ok}).status
        == 200
    )


def test_library_path_refuses_surrogates_before_claiming_a_run(tmp_path):
    from evtrack.errors import InvalidParameterValue

    client = MlflowClient(str(tmp_path / "s"))
    eid = client.create_experiment("lib")
    before = snapshot(tmp_path / "s")
    for kwargs in ({"run_name": "x\ud800"}, {"user_id": "\udfff"}, {"tags": {"t": "\ud800"}}):
        with pytest.raises(InvalidParameterValue, match="surrogate"):
            client.create_run(eid, **kwargs)
    with pytest.raises(InvalidParameterValue, match="surrogate"):
        client.create_experiment("e\ud800")
    with pytest.raises(InvalidParameterValue, match="surrogate"):
        client.search_runs([eid], "params.a = '\ud800'")
    assert snapshot(tmp_path / "s") == before


def test_doctor_reports_orphan_run_claims(tmp_path):
    store = tmp_path / "s"
    client = MlflowClient(str(store))
    eid = client.create_experiment("orphans")
    client.create_run(eid)
    client.flush()
    orphan = "a" * 32
    (store / "runs" / f"{orphan}.json").write_text(json.dumps({"experiment_id": eid}))
    out = evtrack_cli("--tracking-uri", str(store), "doctor", "--format", "json")
    report = json.loads(out.stdout)
    found = [f for f in report["findings"] if f["kind"] == "orphan_run_claim"]
    assert [Path(f["path"]).name for f in found] == [f"{orphan}.json"]
    assert out.returncode == 1 and not report["ok"]


# -- 8. MLflow's log-batch request limit --------------------------------------------------------


def test_log_batch_over_one_megabyte_is_refused(srv):
    url, store = srv["url"], srv["store"]
    eid = new_experiment(url, "big-batch")
    run_id = new_run(url, eid)["run_id"]
    params = [{"key": f"p{i}", "value": "v" * 6000} for i in range(100)]
    tags = [{"key": f"t{i}", "value": "v" * 8000} for i in range(100)]
    body = {"run_id": run_id, "params": params, "tags": tags}
    size = len(json.dumps(body).encode())
    assert size > 1_000_000
    before = snapshot(store)
    msg = refused(call(f"{url}{API}/runs/log-batch", "POST", body))
    assert msg == (
        f"Batched logging API requests must be at most 1000000 bytes, got a request of size {size}."
    )
    assert snapshot(store) == before
    body = {"run_id": run_id, "params": params[:50], "tags": tags[:50]}
    assert call(f"{url}{API}/runs/log-batch", "POST", body).status == 200


# -- 9-12. the web view: CSV, Content-Disposition, headers, mounted in the server ------------------


def test_csv_export_neutralises_formulas(srv):
    url = srv["url"]
    eid = new_experiment(url, "csv")
    run_id = new_run(url, eid)["run_id"]
    params = {
        "a_eq": '=HYPERLINK("http://x")',
        "b_plus": "+1+1",
        "c_minus": "-2+3",
        "d_at": "@SUM(A1)",
        "e_cr": "safe\r=1+1",
        "f_neg": "-0.5",
        "g_tab": "\t=1",
    }
    batch = {
        "run_id": run_id,
        "params": [{"key": k, "value": v} for k, v in params.items()],
        "metrics": [{"key": "loss", "value": -1.5, "timestamp": 1, "step": 0}],
    }
    assert call(f"{url}{API}/runs/log-batch", "POST", batch).status == 200
    a = call(f"{url}/experiments/{eid}/runs.csv")
    assert a.status == 200
    rows = list(csv.reader(io.StringIO(a.text)))
    header, row = rows[0], rows[1]
    cell = dict(zip(header, row))
    assert cell["params.a_eq"] == '\'=HYPERLINK("http://x")'
    assert cell["params.b_plus"] == "'+1+1"
    assert cell["params.c_minus"] == "'-2+3"
    assert cell["params.d_at"] == "'@SUM(A1)"
    assert cell["params.e_cr"] == "'safe\r=1+1"
    assert cell["params.g_tab"] == "'\t=1"
    assert cell["params.f_neg"] == "-0.5"
    assert cell["metrics.loss"] == "-1.5"
    assert "\n-1.5" in a.text.replace(",", "\n")  # the number is written bare, not quoted
    assert '"-0.5"' in a.text  # text that is a number stays that number, quoted as text
    assert 'attachment; filename="runs-' in a.headers["Content-Disposition"]


def test_content_disposition_is_rfc6266(srv):
    url = srv["url"]
    eid = new_experiment(url, "dispo")
    info = new_run(url, eid)
    for name, star in [
        ('a"b;c.html', "a%22b%3Bc.html"),
        ("résumé 1.txt", "r%C3%A9sum%C3%A9%201.txt"),
        ("it's 100%.bin", "it%27s%20100%25.bin"),
    ]:
        quoted = urllib.parse.quote(name)
        assert call(f"{url}{PROXY}/{proxied(info)}/{quoted}", "PUT", raw=b"1").status == 200
        for target in (
            f"{url}{PROXY}/{proxied(info)}/{quoted}",
            f"{url}/runs/{info['run_id']}/artifacts/raw?download=1&path={quoted}",
        ):
            header = call(target).headers["Content-Disposition"]
            assert header.startswith('attachment; filename="'), header
            assert header.endswith(f"; filename*=UTF-8''{star}"), header
            fallback = header.split('filename="', 1)[1].split('"; filename*', 1)[0]
            assert '"' not in fallback and "\\" not in fallback and fallback.isascii()


PAGE_HEADERS = ("Content-Security-Policy", "X-Content-Type-Options", "X-Frame-Options")


def _assert_headers(a: Answer, where: str) -> None:
    for h in PAGE_HEADERS:
        assert a.headers.get(h), (where, a.status, h)
    assert "frame-ancestors 'none'" in a.headers["Content-Security-Policy"], where
    assert a.headers["X-Content-Type-Options"] == "nosniff"
    assert a.headers["X-Frame-Options"] == "DENY"


def _web_probes(url: str, run_id: str, eid: str) -> None:
    for path, status in [
        ("/", 200),
        (f"/experiments/{eid}", 200),
        (f"/experiments/{eid}?format=json", 200),
        (f"/runs/{run_id}", 200),
        (f"/experiments/{eid}/runs.csv", 200),
        ("/static/evtrack-web/web.css", 200),
        ("/experiments/987654", 404),
        (f"/runs/{'0' * 32}", 404),
        ("/no/such/page", 404),
        (f"/runs/{run_id}/artifacts/raw?path=../x", 400),
        (f"/experiments/{eid}?page=abc", 400),
    ]:
        a = call(url + path)
        assert a.status == status, (path, a.status, a.text[:300])
        _assert_headers(a, path)
    a = call(url + "/", "POST", raw=b"x")
    assert a.status in (401, 405) and a.headers.get("X-Frame-Options") == "DENY"


def test_security_headers_and_the_web_view_mounted_in_the_server(srv):
    url = srv["url"]
    eid = new_experiment(url, "headers")
    run_id = new_run(url, eid)["run_id"]
    home = call(url + "/")
    assert home.status == 200 and home.headers["Content-Type"].startswith("text/html")
    assert b"headers" in home.body  # the experiments page lists the new experiment
    _web_probes(url, run_id, eid)


def test_evtrack_ui_headers_and_no_ssrf(tmp_path):
    """The standalone view: same headers, and a planted artifact URL is never fetched."""
    client = MlflowClient(str(tmp_path / "s"))
    eid = client.create_experiment("ui")
    run_id = client.create_run(eid).info.run_id
    with loopback(_Internal) as (internal, seen):
        planted_exp = client.create_experiment("planted", artifact_location=f"{internal}/x")
        planted = client.create_run(planted_exp).info.run_id
        client.flush()
        with subprocess.Popen(
            [sys.executable, "-m", "evtrack.cli", "--tracking-uri", str(tmp_path / "s"), "ui",
             "--port", "0"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            env=subprocess_env(),
        ) as proc:  # fmt: skip
            try:
                assert proc.stdout is not None
                line = proc.stdout.readline()
                url = line.split(" at ", 1)[1].split("/ (", 1)[0]
                _web_probes(url, run_id, eid)
                for page in (f"/runs/{planted}/artifacts", f"/runs/{planted}/artifacts/raw?path=a"):
                    a = call(url + page)
                    assert a.status == 403 and b"internal secret" not in a.body, page
                    _assert_headers(a, page)
            finally:
                proc.terminate()
                proc.wait(timeout=30)
        assert seen == []
