"""Live pages without polling: change streams (Server-Sent Events) under every server
evtrack uses (waitress for ``evtrack ui``, werkzeug threaded and gunicorn ``gthread``
for ``evtrack server``), their cap and clean disconnect, and a real Chromium page that
shows a point another process logged, with no request while nothing changes (counted
at the server)."""

from __future__ import annotations

import http.client
import json
import os
import re
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from required import chromium_path, playwright_sync_api
from test_watch import log_in_other_process

from evtrack.tracking.client import MlflowClient
from evtrack.web import create_app

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def live_store(tmp_path: Path) -> tuple[str, str, str]:
    """(uri, experiment id, id of a RUNNING run with one point of ``loss``)."""
    uri = str(tmp_path / "store")
    client = MlflowClient(uri)
    exp = client.create_experiment("live")
    run = client.create_run(exp, run_name="training").info.run_id
    client.log_metric(run, "loss", 1.0, step=0)
    client.flush()
    return uri, exp, run


class Server:
    """A web view server in a subprocess; ``lines`` collects what it prints."""

    def __init__(self, code: str, pattern: str = r"http://127\.0\.0\.1:(\d+)") -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.proc = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self.port = 0
        for line in self.proc.stdout:
            self.lines.append(line)
            m = re.search(pattern, line)
            if m:
                self.port = int(m.group(1))
                break
        if not self.port:
            self.proc.kill()
            raise RuntimeError("server did not start:\n" + "".join(self.lines))
        self._drain = threading.Thread(target=self._read, daemon=True)
        self._drain.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def requests(self) -> list[str]:
        return [line.split(" ", 1)[1].strip() for line in self.lines if line.startswith("REQ ")]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()


def waitress_server(uri: str, **options) -> Server:
    """``evtrack ui``'s server (:func:`evtrack.web.server.make_server`), printing each
    request it receives (``REQ <path>``) so a test counts requests at the server."""
    return Server(
        f"""
        import sys, threading
        from evtrack.web.server import make_server

        lock = threading.Lock()  # one whole line per request, whatever the threads

        def counting(app):
            def wrapped(environ, start_response):
                with lock:
                    sys.stdout.write("REQ " + environ["PATH_INFO"] + "\\n")
                    sys.stdout.flush()
                return app(environ, start_response)
            return wrapped

        server = make_server({uri!r}, port=0, threads=4, warm=False, wrap=counting, **{options!r})
        print(f"listening http://127.0.0.1:{{server.effective_port}}", flush=True)
        server.run()
        """
    )


def werkzeug_server(uri: str) -> Server:
    return Server(
        f"""
        from werkzeug.serving import make_server
        from evtrack.web import create_app
        server = make_server("127.0.0.1", 0, create_app({uri!r}), threaded=True)
        print(f"listening http://127.0.0.1:{{server.port}}", flush=True)
        server.serve_forever()
        """
    )


def gunicorn_server(uri: str) -> Server:
    return Server(
        f"""
        import sys
        sys.argv = ["gunicorn", "-k", "gthread", "--threads", "4", "-b", "127.0.0.1:0", "--graceful-timeout", "2",
                    "evtrack.web.app:create_app({uri!r})"]
        from gunicorn.app.wsgiapp import run
        run()
        """,
        pattern=r"Listening at: http://127\.0\.0\.1:(\d+)",
    )


class Stream:
    """One ``text/event-stream`` response, read event by event."""

    def __init__(self, url: str, path: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=30)
        self.conn.request("GET", path, headers={"Accept": "text/event-stream"})
        self.resp = self.conn.getresponse()

    def event(self) -> str:
        lines = []
        while True:
            line = self.resp.readline().decode()
            if not line:
                raise EOFError("stream ended")
            if line == "\n":
                return "".join(lines)
            lines.append(line)

    def close(self) -> None:
        self.resp.close()  # the response holds the socket open too
        self.conn.close()


SERVERS = {"waitress": waitress_server, "werkzeug": werkzeug_server, "gunicorn": gunicorn_server}


@pytest.mark.parametrize("kind", list(SERVERS))
def test_a_change_reaches_an_open_stream(kind: str, live_store) -> None:
    uri, exp, run = live_store
    server = SERVERS[kind](uri)
    try:
        run_stream = Stream(server.url, f"/-/runs/{run}/changes")
        exp_stream = Stream(server.url, f"/-/experiments/{exp}/changes")
        for stream in (run_stream, exp_stream):
            assert stream.resp.status == 200
            assert stream.resp.getheader("Content-Type").startswith("text/event-stream")
            assert stream.event().startswith("retry: 2000\n: watchdog")
        log_in_other_process(uri, run, 5)
        for stream in (run_stream, exp_stream):
            event = stream.event()
            assert event.startswith("event: change\n")
            data = json.loads(event.split("data: ", 1)[1])
            assert data["experiment_id"] == exp and data["segments"] >= 1
            stream.close()
        # the page then asks for the new state, which is fresh at once
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        conn.request("GET", f"/-/runs/{run}/version")
        version = json.loads(conn.getresponse().read())
        conn.close()
        assert version["metrics"] == [
            {
                "key": "loss",
                "value": 4.0,
                "step": 4,
                "timestamp": version["metrics"][0]["timestamp"],
            }
        ]
    finally:
        server.stop()


def test_an_object_store_is_listed_for_open_pages(request: pytest.FixtureRequest) -> None:
    """On S3 (moto on loopback) the watcher lists the experiment's segments at an interval."""
    from s3_server import new_s3_uri

    uri = new_s3_uri(request)
    client = MlflowClient(uri)
    exp = client.create_experiment("s3-live")
    run = client.create_run(exp).info.run_id
    client.flush()
    server = waitress_server(uri, watch_interval=0.2)
    try:
        stream = Stream(server.url, f"/-/runs/{run}/changes")
        assert stream.event().startswith("retry: 2000\n: listing")
        log_in_other_process(uri, run, 2)
        event = stream.event()
        while event == ": keep-alive\n":
            event = stream.event()
        assert event.startswith("event: change\n")
        stream.close()
    finally:
        server.stop()


def test_streams_are_capped_and_a_closed_page_frees_its_slot(live_store) -> None:
    uri, _, run = live_store
    server = waitress_server(uri, max_streams=2, stream_heartbeat=0.2)
    try:
        streams = [Stream(server.url, f"/-/runs/{run}/changes") for _ in range(2)]
        assert [s.resp.status for s in streams] == [200, 200]
        assert streams[0].event().startswith("retry:")
        assert streams[0].event() == ": keep-alive\n"  # heartbeats while nothing changes
        refused = Stream(server.url, f"/-/runs/{run}/changes")
        assert refused.resp.status == 503
        assert refused.resp.getheader("Retry-After") == "30"
        body = json.loads(refused.resp.read())
        assert body["error_code"] == "TEMPORARILY_UNAVAILABLE" and "max_streams" in body["message"]
        refused.close()
        # pages still load while every stream slot is taken: streams have threads of their own
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        conn.request("GET", f"/runs/{run}")
        assert conn.getresponse().status == 200
        conn.close()
        for s in streams:
            s.close()
        # both slots come back
        reopened = [reopen(server, f"/-/runs/{run}/changes") for _ in range(2)]
        assert all(s is not None for s in reopened)
        for s in reopened:
            s.close()
    finally:
        server.stop()


def reopen(server: Server, path: str, attempts: int = 100) -> Stream | None:
    """A stream on ``path`` once a slot is free (None if none came back)."""
    for _ in range(attempts):
        stream = Stream(server.url, path)
        if stream.resp.status == 200:
            return stream
        stream.resp.read()
        stream.close()
        threading.Event().wait(0.1)
    return None


def test_waitress_notices_a_closed_page_without_a_heartbeat(live_store) -> None:
    """`evtrack ui` reads the connection while a stream runs: a closed page frees its
    slot at once, not at the next heartbeat (an hour here)."""
    uri, _, run = live_store
    server = waitress_server(uri, max_streams=1, stream_heartbeat=3600)
    try:
        first = Stream(server.url, f"/-/runs/{run}/changes")
        assert first.resp.status == 200 and first.event().startswith("retry:")
        first.close()
        again = reopen(server, f"/-/runs/{run}/changes")
        assert again is not None
        again.close()
    finally:
        server.stop()


def test_a_stream_never_read_gives_its_slot_back(live_store) -> None:
    """HEAD (or a response the server drops before reading it) must not leak a slot."""
    uri, _, run = live_store
    app = create_app(uri, max_streams=1)
    web = app.test_client()
    live = app.extensions["evtrack_web"].live
    for _ in range(3):
        resp = web.head(f"/-/runs/{run}/changes")
        assert resp.status_code == 200
        resp.close()
        assert live.open_streams == 0
    resp = web.get(f"/-/runs/{run}/changes", buffered=False)
    assert resp.status_code == 200 and live.open_streams == 1
    assert web.get(f"/-/runs/{run}/changes").status_code == 503  # the one slot is taken
    resp.close()
    assert live.open_streams == 0 and live.watcher.subscribers == 0
    live.watcher.close()


def test_stream_errors_are_json(live_store) -> None:
    uri, _, _ = live_store
    web = create_app(uri).test_client()
    resp = web.get("/-/runs/0123456789abcdef0123456789abcdef/changes")
    assert resp.status_code == 404 and resp.json["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    resp = web.get("/-/experiments/999/changes")
    assert resp.status_code == 404 and resp.json["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    off = create_app(uri, live=False).test_client()
    resp = off.get("/-/experiments/1/changes")
    assert resp.status_code == 400 and "live=False" in resp.json["message"]
    assert b"data-changes-url" not in off.get("/experiments/1").data  # pages poll instead
    assert b"data-changes-url" in web.get("/experiments/1").data


# -- a real browser ------------------------------------------------------------------------------


@pytest.fixture
def browser() -> Iterator:
    with playwright_sync_api().sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        yield b
        b.close()


def test_point_from_another_process_appears_without_polling(live_store, browser) -> None:
    uri, _, run = live_store
    server = waitress_server(uri)
    try:
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{server.url}/runs/{run}")
        page.wait_for_function(
            "() => { const f = document.querySelector(\"figure[data-key='loss']\");"
            " return f && f.dataset.ready === '1' && f.dataset.total === '1'"
            " && window.evtrack.liveMode === 'push' }",
            timeout=20_000,
        )
        # idle: the open stream is the only thing between page and server
        page.wait_for_timeout(500)
        seen = len(server.requests())
        page.wait_for_timeout(3_000)
        assert server.requests()[seen:] == []
        assert server.requests().count(f"/-/runs/{run}/changes") == 1

        log_in_other_process(uri, run, 3)
        page.wait_for_function(
            "() => document.querySelector(\"figure[data-key='loss']\").dataset.total === '4'",  # 1 + 3
            timeout=20_000,
        )
        assert page.text_content("#metrics-table tr[data-key='loss'] td") == "2"
        assert "Updated" in page.text_content("#live")
        assert server.requests().count(f"/-/runs/{run}/changes") == 1  # same stream
        assert errors == []
        page.close()
    finally:
        server.stop()
