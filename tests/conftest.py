"""Shared fixtures: a clean evtrack per test, and the store backends the contract runs on.

Every test gets (autouse) a fluent API with no active run, no tracking URI set in code,
no active experiment, and ``EVTRACK_TRACKING_URI`` pointing into its own ``tmp_path``, so
nothing is ever written to ``./evruns``.

Adding a backend: put a factory in :data:`STORE_BACKENDS`. A factory gets the pytest
``request`` and returns a fresh, empty tracking URI; it may use other fixtures through
``request.getfixturevalue(...)`` (e.g. a session-scoped loopback S3 server from
``tests/s3_server.py``); a backend that cannot run here fails its tests (see ``required.py``). Every
test using ``store_uri``, the store contract among them, then runs on it too. Backends
whose files tests inspect directly (compaction, maintenance) are in :data:`LOG_BACKENDS`
and reached through ``log_store_uri``; ``rest`` (a real server) is only in the former.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from s3_server import new_s3_uri, s3_server  # noqa: F401 - the S3 backend and its fixture

import evtrack
from evtrack.tracking import fluent
from evtrack.tracking import uri as uri_state


def _memory_uri(request: pytest.FixtureRequest) -> str:
    return f"memory://evtrack-tests-{uuid.uuid4().hex[:16]}"


def _local_uri(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("tmp_path") / "store")


def _rest_uri(request: pytest.FixtureRequest) -> str:
    """A real ``evtrack server`` on loopback over a fresh local store (the REST store)."""
    from evtrack.server.testing import ServerProcess

    tmp = request.getfixturevalue("tmp_path")
    server = ServerProcess(str(tmp / "server-store"), log_path=str(tmp / "server.log"))
    url = server.start()
    request.addfinalizer(server.stop)
    return url


#: Event-log backends: a folder or bucket whose files tests may also inspect directly.
LOG_BACKENDS: dict[str, Callable[[pytest.FixtureRequest], str]] = {
    "memory": _memory_uri,
    "local": _local_uri,
    "s3": new_s3_uri,
}

#: name -> factory(request) -> a fresh tracking URI: every TrackingStore implementation.
STORE_BACKENDS: dict[str, Callable[[pytest.FixtureRequest], str]] = {
    **LOG_BACKENDS,
    "rest": _rest_uri,
}


def _drop_memory_store(uri: str) -> None:
    if not uri.startswith("memory://"):
        return
    import fsspec

    fs, root = fsspec.core.url_to_fs(uri)
    try:
        fs.rm(root, recursive=True)
    except FileNotFoundError:
        pass


@pytest.fixture(params=list(STORE_BACKENDS))
def store_uri(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, empty store on each backend of :data:`STORE_BACKENDS` (REST included)."""
    uri = STORE_BACKENDS[request.param](request)
    yield uri
    _drop_memory_store(uri)


@pytest.fixture(params=list(LOG_BACKENDS))
def log_store_uri(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, empty event-log store (its files can be inspected) on each backend."""
    uri = LOG_BACKENDS[request.param](request)
    yield uri
    _drop_memory_store(uri)


@pytest.fixture
def make_store_uri(request: pytest.FixtureRequest) -> Iterator[Callable[[str], str]]:
    """``make_store_uri("memory")``: a fresh store of a named backend (several per test)."""
    made: list[str] = []

    def make(backend: str) -> str:
        uri = STORE_BACKENDS[backend](request)
        if backend == "local":  # one tmp_path per test: give each store its own folder
            uri = f"{uri}-{len(made)}"
        made.append(uri)
        return uri

    yield make
    for uri in made:
        _drop_memory_store(uri)


@pytest.fixture(autouse=True)
def evtrack_isolation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Reset evtrack's process-wide fluent state and point the default store at tmp_path.

    Runs a test left active are dropped from the stack without ending them: ending would
    write to a store the test may already have thrown away.
    """
    from evtrack import settings

    for setting in settings.SETTINGS:
        monkeypatch.delenv(setting.env, raising=False)
        if setting.mlflow_env:  # MLflow's spellings are fallbacks: a dev shell may set them
            monkeypatch.delenv(setting.mlflow_env, raising=False)
    default_store = tmp_path / "evruns"
    monkeypatch.setenv("EVTRACK_TRACKING_URI", str(default_store))
    # Saved run indexes go to the test's own folder, not the user's cache.
    monkeypatch.setenv("EVTRACK_INDEX_CACHE_DIR", str(tmp_path / "index-cache"))
    monkeypatch.setattr(uri_state, "_tracking_uri", None)
    monkeypatch.setattr(fluent, "_active_experiment_id", None)
    monkeypatch.setattr(fluent, "_run_stack", [])
    monkeypatch.setattr(fluent, "_last_active_run_id", None)
    monkeypatch.setattr(fluent, "_client", None)
    yield default_store
    fluent._run_stack.clear()


@pytest.fixture
def client(store_uri: str) -> evtrack.MlflowClient:
    """An ``MlflowClient`` on a fresh store of each backend, also set as the fluent URI."""
    evtrack.set_tracking_uri(store_uri)
    return evtrack.MlflowClient(store_uri)
