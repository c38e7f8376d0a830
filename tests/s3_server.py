"""A real S3 API server on 127.0.0.1 for the tests: moto's standalone server.

``s3_server`` (session scope) starts ``python -m moto.server`` on a free loopback port,
points s3fs at it (``FSSPEC_S3_ENDPOINT_URL`` plus dummy ``AWS_*`` credentials, in this
process and so in every child process a test starts), creates a bucket, and stops the
server at the end of the session. ``new_s3_uri(request)`` gives a fresh, empty
``s3://bucket/<prefix>`` store URI; conftest.py registers it as the ``s3`` store backend.

Nothing to install or start by hand: moto[server] is a test dependency, and CI
(``.ci/run``) gets the server from this fixture. ``EVTRACK_TEST_ALLOW_MISSING=s3`` skips
the S3 tests on purpose (see ``required.py``).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

BUCKET = "evtrack-tests"

_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


@dataclass
class S3Server:
    endpoint: str
    bucket: str
    process: subprocess.Popen

    def uri(self, prefix: str | None = None) -> str:
        return f"s3://{self.bucket}/{prefix or uuid.uuid4().hex[:16]}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(timeout: float = 30.0) -> S3Server:
    """Start moto's server on a free loopback port and wait until it answers."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"moto server exited with code {proc.returncode}")
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("moto server did not start in time") from None
            time.sleep(0.05)
    return S3Server(endpoint, BUCKET, proc)


def configure_s3fs(endpoint: str) -> None:
    """Point s3fs at ``endpoint``: environment (inherited by children) and fsspec config."""
    import fsspec.config

    os.environ.update(_ENV)
    os.environ["FSSPEC_S3_ENDPOINT_URL"] = endpoint
    fsspec.config.conf.setdefault("s3", {})["endpoint_url"] = endpoint


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """moto's S3 server on 127.0.0.1 with an empty bucket, for the whole session."""
    import required

    if "s3" in required.allowed_missing():
        required.missing("s3", "S3 tests not run")
    try:
        import moto.server  # noqa: F401
        import s3fs
    except ImportError as exc:  # pragma: no cover - the test extra installs both
        required.missing("s3", f"S3 tests need moto[server] and s3fs: {exc}")
    saved = {k: os.environ.get(k) for k in [*_ENV, "FSSPEC_S3_ENDPOINT_URL"]}
    server = start_server()
    try:
        configure_s3fs(server.endpoint)
        s3fs.S3FileSystem.clear_instance_cache()
        s3fs.S3FileSystem().mkdir(server.bucket)
        yield server
    finally:
        server.process.terminate()
        try:
            server.process.wait(10)
        except subprocess.TimeoutExpired:  # pragma: no cover
            server.process.kill()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def new_s3_uri(request: pytest.FixtureRequest) -> str:
    """A fresh, empty store URI in the session's bucket (a STORE_BACKENDS factory)."""
    server: S3Server = request.getfixturevalue("s3_server")
    return server.uri()
