"""Running projects for real (``--env-manager local``): the run recorded, its tags and
params, the child logging into it, output saved, failures, kills, git sources, and an
MLflow-written child (``import mlflow``) logging through the loopback server."""

from __future__ import annotations

import http.server
import io
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from helpers import ROOT, make_project, subprocess_env
from mlflow_venv import mlflow_python_fixture  # noqa: F401 - the fixture

import evtrack
from evtrack.errors import ExecutionError, InvalidParameterValue, ResourceDoesNotExist
from evtrack.projects import ERROR_TAG, run

EVTRACK_CHILD = """
import sys, evtrack
with evtrack.start_run():
    evtrack.log_metric("m", float(sys.argv[1]))
    evtrack.set_tag("argv", " ".join(sys.argv[1:]))
print("child says", " ".join(sys.argv[1:]), flush=True)
"""


@pytest.fixture(autouse=True)
def projects_cache(tmp_path_factory, monkeypatch):
    cache = tmp_path_factory.getbasetemp() / "projects-cache"
    monkeypatch.setenv("EVTRACK_PROJECTS_CACHE_DIR", str(cache))
    return cache


def simple_project(tmp_path: Path) -> Path:
    return make_project(
        tmp_path / "proj",
        """
        name: simple
        entry_points:
          main:
            parameters:
              alpha: {type: float, default: 0.5}
              n: {type: int, default: 2}
            command: "python child.py {alpha} {n}"
        """,
        child__py=EVTRACK_CHILD,
    )


def output_of(client: evtrack.MlflowClient, run_id: str, name: str = "output.log") -> str:
    path = client.download_artifacts(run_id, f"project/{name}")
    return Path(path).read_text()


def test_run_is_recorded_and_child_logs_into_it(tmp_path):
    out = io.StringIO()
    submitted = run(
        str(simple_project(tmp_path)),
        parameters={"alpha": "5", "extra": "x y"},
        env_manager="local",
        run_name="proj-run",
        stdout=out,
        stderr=io.StringIO(),
    )
    assert submitted.get_status() == "FINISHED"
    client = evtrack.MlflowClient()
    r = client.get_run(submitted.run_id)
    assert r.info.status == "FINISHED" and r.info.run_name == "proj-run"
    assert r.data.params == {"alpha": "5.0", "n": "2", "extra": "x y"}
    assert r.data.metrics == {"m": 5.0}  # logged by the child, in the same run
    tags = r.data.tags
    assert tags["argv"] == "5.0 2 --extra x y"  # undeclared -P appended as --key value
    assert tags["mlflow.source.type"] == "PROJECT"
    assert tags["mlflow.source.name"] == str(tmp_path / "proj")
    assert tags["mlflow.project.entryPoint"] == "main"
    assert tags["mlflow.project.env"] == "local"
    assert "mlflow.parentRunId" not in tags and ERROR_TAG not in tags
    assert "child says 5.0 2 --extra x y" in out.getvalue()  # streamed to us
    assert "child says 5.0 2" in output_of(client, submitted.run_id)  # and kept


def test_parent_run_when_launched_inside_a_run(tmp_path):
    with evtrack.start_run() as parent:
        submitted = run(str(simple_project(tmp_path)), env_manager="local", stdout=io.StringIO())
    tags = evtrack.MlflowClient().get_run(submitted.run_id).data.tags
    assert tags["mlflow.parentRunId"] == parent.info.run_id


def test_bad_values_fail_before_any_run_exists(tmp_path):
    project = str(simple_project(tmp_path))
    client = evtrack.MlflowClient()
    with pytest.raises(InvalidParameterValue, match="'alpha' must be a float, got 'abc'"):
        run(project, parameters={"alpha": "abc"}, env_manager="local")
    with pytest.raises(ResourceDoesNotExist, match="entry point 'nope'"):
        run(project, entry_point="nope", env_manager="local")
    with pytest.raises(ResourceDoesNotExist, match="does not exist"):
        run(str(tmp_path / "missing"), env_manager="local")
    with pytest.raises(InvalidParameterValue, match="needs a git repository"):
        run(project, version="v1", env_manager="local")
    assert client.search_runs(["0"]) == []
    # The CLI: a clean message with the error code, exit status 1, no traceback.
    proc = subprocess.run(
        [sys.executable, "-m", "evtrack.cli", "run", project, "-P", "n=1.5", "--env-manager", "local"],
        env=subprocess_env(tmp_path / "evruns"), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr.startswith("Error (INVALID_PARAMETER_VALUE): Parameter 'n' must be an int")
    assert "Traceback" not in proc.stderr


def test_failing_entry_point_ends_failed_with_reason(tmp_path):
    project = make_project(
        tmp_path / "p",
        "entry_points:\n  main:\n    command: 'python fail.py'\n",
        fail__py="import sys\nprint('about to fail', flush=True)\nsys.exit(3)\n",
    )
    with pytest.raises(ExecutionError, match="ended FAILED") as exc:
        run(str(project), env_manager="local", stdout=io.StringIO())
    run_id = exc.value.message.split("'")[1]
    r = evtrack.MlflowClient().get_run(run_id)
    assert r.info.status == "FAILED"
    assert r.data.tags[ERROR_TAG] == "The entry point exited with status 3."
    assert "about to fail" in output_of(evtrack.MlflowClient(), run_id)


def test_bad_path_parameter_ends_failed_not_running(tmp_path):
    # MLflow leaves such a run RUNNING forever: the run exists, the parameter is bad.
    project = make_project(
        tmp_path / "p",
        "entry_points:\n  main:\n    parameters: {data: path}\n    command: 'cat {data}'\n",
    )
    with pytest.raises(InvalidParameterValue, match="does not exist"):
        run(str(project), parameters={"data": str(tmp_path / "nope.csv")}, env_manager="local")
    (r,) = evtrack.MlflowClient().search_runs(["0"])
    assert r.info.status == "FAILED"
    assert "'data' is a path, and" in r.data.tags[ERROR_TAG]
    assert r.data.params == {"data": str(tmp_path / "nope.csv")}


def test_relative_path_default_is_a_file_of_the_project(tmp_path, monkeypatch):
    project = make_project(
        tmp_path / "p",
        "entry_points:\n  main:\n    parameters: {data: {type: path, default: d.txt}}\n"
        "    command: 'echo {data}'\n",
        d__txt="x",
    )
    monkeypatch.chdir(tmp_path)  # not the project folder
    out = io.StringIO()
    run(str(project), env_manager="local", stdout=out)
    assert out.getvalue().strip() == str(project / "d.txt")


@pytest.fixture
def http_folder(tmp_path):
    """A loopback HTTP server over tmp_path/www."""
    www = tmp_path / "www"
    www.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(www), **kw)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield www, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_path_parameter_url_is_downloaded(tmp_path, http_folder):
    www, url = http_folder
    (www / "data.csv").write_text("a,b\n1,2\n")
    project = make_project(
        tmp_path / "p",
        "entry_points:\n  main:\n    parameters: {data: path}\n    command: 'cat {data}'\n",
    )
    out = io.StringIO()
    submitted = run(
        str(project), parameters={"data": f"{url}/data.csv"}, env_manager="local", stdout=out
    )
    assert out.getvalue() == "a,b\n1,2\n"
    # The param keeps the URL the user gave, not the temporary download path.
    assert evtrack.MlflowClient().get_run(submitted.run_id).data.params == {
        "data": f"{url}/data.csv"
    }
    with pytest.raises(InvalidParameterValue, match="could not download"):
        run(str(project), parameters={"data": f"{url}/missing.csv"}, env_manager="local")
    failed = [r for r in evtrack.MlflowClient().search_runs(["0"]) if r.info.status == "FAILED"]
    assert "could not download" in failed[0].data.tags[ERROR_TAG]


def test_scripts_without_mlproject(tmp_path):
    project = make_project(
        tmp_path / "bare",
        None,
        train__py="import sys\nprint('py', sys.argv[1:])\n",
        job__sh='echo sh "$@"\n',
    )
    out = io.StringIO()
    run(
        str(project), entry_point="train.py", parameters={"k": "v"}, env_manager="local", stdout=out
    )
    run(str(project), entry_point="job.sh", env_manager="local", stdout=out)
    assert out.getvalue() == "py ['--k', 'v']\nsh\n"
    runs = evtrack.MlflowClient().search_runs(["0"], order_by=["start_time"])
    assert [r.data.tags["mlflow.project.entryPoint"] for r in runs] == ["train.py", "job.sh"]


def _git(cwd: Path, *args: str) -> str:
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@e", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@e")  # fmt: skip
    return subprocess.run(
        ["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture
def git_repo(tmp_path):
    """A repository with the project in ``proj/``: v1 tagged, then a branch ``dev``."""
    repo = tmp_path / "repo"
    make_project(
        repo / "proj",
        "entry_points:\n  main:\n    command: 'python show.py'\n",
        show__py="print(open('version.txt').read().strip())\n",
        version__txt="one\n",
    )
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "one")
    _git(repo, "tag", "v1")
    v1 = _git(repo, "rev-parse", "HEAD")
    _git(repo, "checkout", "-qb", "dev")
    (repo / "proj" / "version.txt").write_text("two\n")
    _git(repo, "commit", "-qam", "two")
    dev = _git(repo, "rev-parse", "HEAD")
    _git(repo, "checkout", "-q", "main")
    return repo, v1, dev


def test_git_versions_and_subdirectory(git_repo, projects_cache):
    repo, v1, dev = git_repo
    client = evtrack.MlflowClient()
    cases = [
        ("v1", "one", v1, None),
        ("dev", "two", dev, "dev"),
        (dev[:10], "two", dev, None),
        (None, "one", v1, "main"),  # the default branch
    ]
    for version, text, commit, branch in cases:
        out = io.StringIO()
        submitted = run(f"file://{repo}#proj", version=version, env_manager="local", stdout=out)
        assert out.getvalue().strip() == text, version
        tags = client.get_run(submitted.run_id).data.tags
        assert tags["mlflow.source.git.commit"] == commit
        assert tags.get("mlflow.source.git.branch") == branch
        assert tags["mlflow.source.git.repoURL"] == str(repo)
        assert tags["mlflow.source.name"] == f"{repo}#proj"
    assert os.listdir(projects_cache / "checkouts") == []  # per-run checkouts removed
    with pytest.raises(ResourceDoesNotExist, match="Version 'v9' not found"):
        run(str(repo) + "#proj", version="v9", env_manager="local")
    with pytest.raises(ResourceDoesNotExist, match="no subdirectory 'nope'"):
        run(str(repo) + "#nope", version="v1", env_manager="local")
    # A local work tree without --version runs in place, with its commit and branch.
    submitted = run(f"{repo}#proj", env_manager="local", stdout=io.StringIO())
    tags = client.get_run(submitted.run_id).data.tags
    assert (tags["mlflow.source.git.commit"], tags["mlflow.source.git.branch"]) == (v1, "main")


def wait_for_line(proc: subprocess.Popen, text: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    seen = ""
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        seen += line
        if text in line:
            return seen
        if not line and proc.poll() is not None:
            break
    raise AssertionError(f"never saw {text!r}; output so far:\n{seen}")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_signal_kills_the_child_group_and_records_killed(tmp_path, sig):
    pids = tmp_path / "pids"
    project = make_project(
        tmp_path / "p",
        "entry_points:\n  main:\n    command: 'python slow.py'\n",
        slow__py=f"""
            import os, subprocess, time
            grandchild = subprocess.Popen(["sleep", "300"])
            open({str(pids)!r}, "w").write(f"{{os.getpid()}} {{grandchild.pid}}")
            print("ready", flush=True)
            time.sleep(300)
        """,
    )
    store = tmp_path / "store"
    with subprocess.Popen(
        [sys.executable, "-m", "evtrack.cli", "run", str(project), "--env-manager", "local"],
        env=subprocess_env(store), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    ) as proc:  # fmt: skip
        try:
            wait_for_line(proc, "ready")
            proc.send_signal(sig)
            assert proc.wait(60) == 130
        finally:
            if proc.poll() is None:
                proc.kill()
    child, grandchild = (int(p) for p in pids.read_text().split())
    for pid in (child, grandchild):
        assert not _alive(pid), pid
    (r,) = evtrack.MlflowClient(str(store)).search_runs(["0"])
    assert r.info.status == "KILLED"
    assert "ready" in output_of(evtrack.MlflowClient(str(store)), r.info.run_id)


def _alive(pid: int) -> bool:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return False
        if state == "Z":
            return False  # exited, waiting to be reaped by init
        time.sleep(0.05)
    return True


def test_cancel_from_python_records_killed(tmp_path):
    project = make_project(
        tmp_path / "p",
        "entry_points:\n  main:\n    command: 'python -c \"import time; time.sleep(300)\"'\n",
    )
    submitted = run(str(project), env_manager="local", synchronous=False, stdout=io.StringIO())
    assert submitted.get_status() == "RUNNING"
    submitted.cancel()
    assert submitted.wait() is False
    assert evtrack.MlflowClient().get_run(submitted.run_id).info.status == "KILLED"


def test_detach_returns_the_run_id_and_runs_in_background(tmp_path):
    store = tmp_path / "store"
    proc = subprocess.run(
        [sys.executable, "-m", "evtrack.cli", "run", str(simple_project(tmp_path)),
         "-P", "alpha=2", "--env-manager", "local", "--detach"],
        env=subprocess_env(store), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    run_id = proc.stdout.strip()
    client = evtrack.MlflowClient(str(store))
    # The child's own end_run() already says FINISHED; the runner's end comes after the
    # output artifact, so wait for that.
    deadline = time.monotonic() + 60
    while not client.list_artifacts(run_id, "project") and time.monotonic() < deadline:
        time.sleep(0.2)
    r = client.get_run(run_id)
    assert r.info.status == "FINISHED"
    assert r.data.metrics == {"m": 2.0} and r.data.params["alpha"] == "2.0"
    assert "child says 2.0 2" in output_of(client, run_id)


def test_memory_store_child_logs_through_loopback_server(tmp_path):
    evtrack.set_tracking_uri(f"memory://projects-loopback-{uuid.uuid4().hex[:12]}")
    submitted = run(str(simple_project(tmp_path)), parameters={"alpha": "7"}, env_manager="local",
                    stdout=io.StringIO())  # fmt: skip
    assert evtrack.MlflowClient().get_run(submitted.run_id).data.metrics == {"m": 7.0}


MLFLOW_TRAIN = """
import sys
import mlflow

alpha = float(sys.argv[1]) if len(sys.argv) > 1 else 0.5
l1_ratio = float(sys.argv[2]) if len(sys.argv) > 2 else 0.5
with mlflow.start_run():
    print(f"Elasticnet model (alpha={alpha:f}, l1_ratio={l1_ratio:f}):", flush=True)
    mlflow.log_param("alpha", alpha)
    mlflow.log_param("l1_ratio", l1_ratio)
    mlflow.log_metric("rmse", 0.7 + alpha / 100)
    mlflow.set_tag("mlflow_version", mlflow.__version__)
"""


@pytest.mark.mlflow
def test_mlflow_example_from_git_tag_logs_through_loopback(tmp_path, mlflow_python):
    """MLflow's ``mlflow-example`` shape: a git repo at a tag, conda.yaml, ``import mlflow``.

    The child runs on the MLflow venv's interpreter (first on PATH, ``--env-manager
    local``) and logs with MLflow's own client into the evtrack run, through the loopback
    server. (It logs params and metrics; ``mlflow.sklearn.log_model`` is left out: models
    are another part of evtrack.)
    """
    repo = make_project(
        tmp_path / "mlflow-example",
        """
        name: tutorial
        conda_env: conda.yaml
        entry_points:
          main:
            parameters:
              alpha: {type: float, default: 0.5}
              l1_ratio: {type: float, default: 0.1}
            command: "python train.py {alpha} {l1_ratio}"
        """,
        conda__yaml="name: tutorial\ndependencies:\n  - python=3.11\n  - pip\n  - pip:\n    - mlflow\n",
        train__py=MLFLOW_TRAIN,
    )
    _git(repo, "init", "-q", "-b", "master")
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "example")
    _git(repo, "tag", "v1.0")
    commit = _git(repo, "rev-parse", "HEAD")
    store = tmp_path / "store"
    env = subprocess_env(store)
    env["PATH"] = f"{Path(mlflow_python).parent}{os.pathsep}{env['PATH']}"
    proc = subprocess.run(
        [sys.executable, "-m", "evtrack.cli", "run", f"file://{repo}", "--version", "v1.0",
         "-P", "alpha=5", "--env-manager", "local", "--experiment-name", "wine"],
        env=env, capture_output=True, text=True, timeout=300, cwd=str(ROOT),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Elasticnet model (alpha=5.000000" in proc.stdout
    client = evtrack.MlflowClient(str(store))
    (r,) = client.search_runs([client.get_experiment_by_name("wine").experiment_id])
    assert r.info.status == "FINISHED"
    # "5" given, float param: the runner logs "5.0", which is what train.py logs itself.
    assert r.data.params == {"alpha": "5.0", "l1_ratio": "0.1"}
    assert r.data.metrics == {"rmse": pytest.approx(0.75)}
    assert r.data.tags["mlflow_version"].startswith("3.")
    assert r.data.tags["mlflow.source.git.commit"] == commit
    assert r.data.tags["mlflow.project.env"] == "local"


def test_wine_example_is_a_project(tmp_path):
    """``evtrack run examples/sklearn_elasticnet_wine -P alpha=0.5 --env-manager local``."""
    store = tmp_path / "store"
    proc = subprocess.run(
        [sys.executable, "-m", "evtrack.cli", "run", str(ROOT / "examples" / "sklearn_elasticnet_wine"),
         "-P", "alpha=0.5", "--env-manager", "local"],
        env=subprocess_env(store), capture_output=True, text=True, timeout=300, cwd=str(tmp_path),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "Elasticnet model (alpha=0.500000, l1_ratio=0.100000)" in proc.stdout
    (r,) = evtrack.MlflowClient(str(store)).search_runs(["0"])
    assert r.info.status == "FINISHED"
    assert r.data.params == {"alpha": "0.5", "l1_ratio": "0.1"}
    assert set(r.data.metrics) == {"rmse", "r2", "mae"}
    assert r.data.tags["mlflow.project.entryPoint"] == "main"
    assert not (ROOT / "examples" / "sklearn_elasticnet_wine" / "evruns").exists()


def test_cli_rejects_malformed_options(tmp_path):
    project = str(simple_project(tmp_path))
    for args, message in (
        (["-P", "alpha"], "-P 'alpha' must look like name=value"),
        (["--env-manager", "nix"], "Invalid value for '--env-manager'"),
        (["--experiment-id", "404"], "RESOURCE_DOES_NOT_EXIST"),
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "evtrack.cli", "run", project, "--env-manager", "local", *args],
            env=subprocess_env(tmp_path / "store"), capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert proc.returncode != 0 and message in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr
