"""Errors leave the CLI as one line and exit code 1, never a traceback (issue 8, bug 5).

Each case runs ``evtrack`` in a real subprocess. The failures that cannot be provoked
from outside deterministically (a race lost to another process, files collected away
under every read) are staged inside the child by wrapping a library function so that
the competing process's effect happens first, for real, on the real store.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from helpers import subprocess_env

import evtrack
from evtrack import errors


def run_cli(store: str, prelude: str, *args: str) -> subprocess.CompletedProcess:
    code = textwrap.dedent(prelude) + textwrap.dedent(
        f"""
        from evtrack.cli.main import main
        main({["--tracking-uri", store, *args]!r})
        """
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def assert_clean_error(proc: subprocess.CompletedProcess, code: str) -> None:
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith(f"Error ({code}): "), proc.stderr


@pytest.fixture
def store(tmp_path) -> str:
    uri = str(tmp_path / "store")
    evtrack.set_tracking_uri(uri)
    with evtrack.start_run() as run:
        evtrack.log_metric("m", 1.0)
    # A run this small is not compacted at end_run (auto_compact_min_events): do it here.
    evtrack.MlflowClient(uri).store.compact_run(run.info.experiment_id, run.info.run_id)
    return uri


def test_doctor_repair_that_loses_a_race_is_a_clean_message(store):
    # A damaged compacted file makes `doctor --repair` rebuild and commit a manifest
    # replacing it; another process replaced that file first (a compaction's tier merge).
    prelude = f"""
        from evtrack.store.log import maintenance
        from evtrack.store.log.layout import get_store
        from evtrack.store.log.manifest import compacted_dir, read_manifest

        layout = get_store({store!r})
        f = read_manifest(layout, "0").files[0]
        layout.fs.pipe_file(compacted_dir(layout, "0") + "/" + f.name, b"not parquet")
        real = maintenance.commit

        def racing(store, base, **kw):
            real(store, base, remove=[f.name for f in base.files], operation="elsewhere")
            return real(store, base, **kw)

        maintenance.commit = racing
    """
    proc = run_cli(store, prelude, "doctor", "--repair")
    assert_clean_error(proc, "ABORTED")


def test_files_vanishing_under_every_read_is_a_clean_message(store):
    # Every file read is found gone (gc racing each listing): after the read's retries
    # the error is transient and says to try again.
    prelude = """
        from evtrack.store.log import snapshot

        def gone(store, paths):
            return {p: FileNotFoundError(p) for p in paths}

        snapshot.fetch = gone
    """
    proc = run_cli(store, prelude, "sql", "select count(*) from runs")
    assert_clean_error(proc, "TEMPORARILY_UNAVAILABLE")
    assert "try again" in proc.stderr


def test_library_errors_from_nested_commands_are_mapped_once(store):
    proc = run_cli(store, "", "runs", "describe", "--run-id", "0" * 32)
    assert_clean_error(proc, "RESOURCE_DOES_NOT_EXIST")
    proc = run_cli(store, "", "sql", "select * from no_such_view")
    assert_clean_error(proc, "INVALID_PARAMETER_VALUE")
    proc = run_cli(store, "", "sql", "select cast(run_name || 'x' as integer) from runs")
    assert_clean_error(proc, "INVALID_PARAMETER_VALUE")


def test_every_public_error_is_in_the_tree_and_says_whether_to_retry():
    for name in errors.__all__:
        obj = getattr(errors, name)
        if isinstance(obj, type) and issubclass(obj, BaseException):
            assert issubclass(obj, errors.EvtrackError), name
            assert obj.retryable == issubclass(obj, errors.TransientError), name
    from evtrack.store.log.manifest import Conflict
    from evtrack.store.rest.transport import ServerUnreachable

    assert issubclass(Conflict, errors.ConcurrentUpdate) and Conflict.retryable
    assert issubclass(ServerUnreachable, errors.StoreUnavailable) and ServerUnreachable.retryable
    assert not errors.InvalidParameterValue.retryable
