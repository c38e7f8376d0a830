"""A real PostgreSQL server on 127.0.0.1 for the tests: Debian's ``postgresql`` binaries.

``pg_server`` (session scope) runs ``initdb`` into a fresh temporary folder and starts
``postgres`` there with ``pg_ctl`` on a free loopback port (socket in the same folder,
trust authentication, ``fsync=off``: a throwaway cluster), and stops it (``-m immediate``)
at the end of the session. ``pg_server.new_database()`` gives a fresh, empty database's
SQLAlchemy URI, ``postgresql://postgres@127.0.0.1:<port>/<name>``, which both the real
mlflow (its venv has ``psycopg[binary]``) and evtrack's importer open.

PostgreSQL refuses to run as root, so as root (CI, this machine) the cluster belongs to
the ``postgres`` user the Debian package creates and the commands run through
``runuser``. Nothing to start by hand: ``scripts/test.sh`` installs the ``postgresql``
package when it is missing, and ``psycopg[binary]`` is in the test extra.
``EVTRACK_TEST_ALLOW_MISSING=postgres`` skips these tests on purpose (``required.py``).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

USER = "postgres"


def bin_dir() -> Path | None:
    """Where ``initdb`` and ``pg_ctl`` are: on PATH, else Debian's newest version folder."""
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    versions = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0,
    )
    return Path(versions[-1]).parent if versions else None


def problem() -> str | None:
    """Why a server cannot be started here (None: it can)."""
    import importlib.util

    if bin_dir() is None:
        return "no PostgreSQL server binaries (initdb, pg_ctl)"
    if importlib.util.find_spec("psycopg") is None:
        return "the psycopg package (psycopg[binary]) is not installed"
    if os.geteuid() == 0:
        try:
            import pwd

            pwd.getpwnam(USER)
        except KeyError:
            return f"running as root and there is no {USER!r} user to own the cluster"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PgServer:
    folder: Path
    port: int
    bin: Path

    def url(self, database: str) -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh empty database's URI."""
        import psycopg

        name = "db_" + uuid.uuid4().hex[:12]
        con = psycopg.connect(self.url("postgres"))
        try:
            con.autocommit = True  # CREATE DATABASE cannot run in a transaction
            with con.cursor() as cur:
                cur.execute(f"create database {name}")
        finally:
            con.close()
        return self.url(name)

    def stop(self) -> None:
        _run_as_owner([str(self.bin / "pg_ctl"), "-D", str(self.folder / "data"),
                       "-m", "immediate", "-w", "stop"], check=False)  # fmt: skip
        shutil.rmtree(self.folder, ignore_errors=True)


def _run_as_owner(cmd: list[str], check: bool = True) -> subprocess.CompletedProcess:
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", USER, "--", *cmd]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr[-2000:]}")
    return proc


def start_server() -> PgServer:
    """initdb + pg_ctl start on a free loopback port; returns once it accepts connections."""
    binaries = bin_dir()
    assert binaries is not None
    folder = Path(tempfile.mkdtemp(prefix="evtrack-pg-"))
    if os.geteuid() == 0:
        shutil.chown(folder, USER, USER)
    port = _free_port()
    data = folder / "data"
    _run_as_owner([str(binaries / "initdb"), "-D", str(data), "-U", USER, "-A", "trust",
                   "--no-sync", "-E", "UTF8", "--locale", "C"])  # fmt: skip
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {folder} -c fsync=off"
    _run_as_owner([str(binaries / "pg_ctl"), "-D", str(data), "-o", options,
                   "-l", str(folder / "server.log"), "-w", "-t", "60", "start"])  # fmt: skip
    return PgServer(folder, port, binaries)


#: The PostgreSQL driver SQLAlchemy 2.1 picks for ``postgresql://`` (psycopg 3).
DRIVER = "psycopg[binary]==3.3.9"


def with_driver(python: Path) -> Path:
    """``python`` (the MLflow venv's) with psycopg importable: venvs built before the
    driver joined the build get it here, once."""
    probe = subprocess.run([str(python), "-c", "import psycopg"], capture_output=True, check=False)
    if probe.returncode != 0:
        proc = subprocess.run(
            [str(python), "-m", "pip", "install", "-q", DRIVER],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if proc.returncode != 0:
            import required

            required.missing("postgres", f"cannot install {DRIVER} into {python}: {proc.stderr}")
    return python


@pytest.fixture(scope="session", name="pg_server")
def pg_server_fixture() -> Iterator[PgServer]:
    import required

    why = problem()
    if why is not None:
        required.missing("postgres", why)
    server = start_server()
    try:
        yield server
    finally:
        server.stop()
