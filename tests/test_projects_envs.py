"""Environment managers for real: uv and virtualenv builds (tiny environments, built once
per session and reused), the build lock, build failures, absent tools, and conda and
docker through stand-in executables on PATH that record the command lines they get
(conda is not installable here and docker has no daemon) and then run the command."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import make_project as project
from helpers import subprocess_env

import evtrack
from evtrack.errors import ExecutionError
from evtrack.projects import ERROR_TAG, run
from evtrack.projects.environments import default_manager
from evtrack.projects.environments.base import EnvironmentUnavailable
from evtrack.projects.spec import load_project

SHOW = (
    "python -c 'import os, sys, six; "
    'print(sys.version.split()[0], sys.prefix, six.__version__, os.environ.get(\\"PYTHONPATH\\"))\''
)


@pytest.fixture(autouse=True)
def projects_cache(tmp_path_factory, monkeypatch):
    cache = tmp_path_factory.getbasetemp() / "projects-cache"
    monkeypatch.setenv("EVTRACK_PROJECTS_CACHE_DIR", str(cache))
    return cache


def tiny_python_env(folder: Path, python: str = "3.12", deps: str = "[six]") -> Path:
    return project(
        folder,
        f'python_env: python_env.yaml\nentry_points:\n  main:\n    command: "{SHOW}"\n',
        python_env__yaml=f'python: "{python}"\nbuild_dependencies: [pip]\ndependencies: {deps}\n',
    )


def artifact(run_id: str, name: str) -> str:
    return Path(evtrack.MlflowClient().download_artifacts(run_id, f"project/{name}")).read_text()


def needs_python(version: str) -> None:
    if not Path(os.path.expanduser(f"~/.pyenv/versions/{version}/bin/python")).exists():
        pytest.skip(f"needs pyenv's Python {version}")


@pytest.mark.parametrize("manager", ["uv", "virtualenv"])
def test_venv_managers_build_once_and_reuse(tmp_path, manager, projects_cache, monkeypatch):
    needs_python("3.12.1")
    # A PYTHONPATH of the runner's own (a development checkout sets one) must not leak
    # into the project's environment, whatever the machine running the tests has set.
    ours = [os.environ.get("PYTHONPATH", ""), str(tmp_path / "runner-only")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in ours if p))
    folder = tiny_python_env(tmp_path / "p")
    runs = []
    for _ in range(2):
        out, err = io.StringIO(), io.StringIO()
        submitted = run(str(folder), env_manager=manager, stdout=out, stderr=err)
        runs.append((submitted.run_id, out.getvalue(), err.getvalue()))
    (first_id, first_out, first_err), (second_id, second_out, second_err) = runs
    version, prefix, six_version, pythonpath = first_out.split()
    assert version == "3.12.1"  # pyenv's interpreter, found locally
    assert pythonpath == "None"  # ours is not passed in
    assert Path(prefix).parent == projects_cache / "envs"
    assert Path(prefix).name.startswith(f"{manager}-")
    assert second_out == first_out  # the same environment, reused
    assert "Building" not in second_err
    tags = evtrack.MlflowClient().get_run(first_id).data.tags
    assert tags["mlflow.project.env"] == manager
    log = artifact(second_id, "environment-build.log")  # kept with every run using it
    assert f"building {manager} environment (Python 3.12.1, 1 requirement)" in log
    assert "six" in log


def test_conda_yaml_translated_for_virtualenv_when_conda_is_absent(tmp_path, monkeypatch):
    needs_python("3.12.1")
    monkeypatch.setenv("PATH", _path_without("conda", "mamba", "micromamba"))
    folder = project(
        tmp_path / "p",
        f'conda_env: conda.yaml\nentry_points:\n  main:\n    command: "{SHOW}"\n',
        conda__yaml="name: t\nchannels: [conda-forge]\ndependencies:\n  - python=3.12\n  - pip\n  - six\n",
    )
    assert default_manager(load_project(str(folder))) == "uv"
    out = io.StringIO()
    run(str(folder), env_manager="virtualenv", stdout=out, stderr=io.StringIO())
    assert out.getvalue().split()[0] == "3.12.1" and out.getvalue().split()[2] == "1.17.0"


def _path_without(*tools: str) -> str:
    keep = []
    for entry in os.environ["PATH"].split(os.pathsep):
        if not any(os.path.exists(os.path.join(entry, t)) for t in tools):
            keep.append(entry)
    return os.pathsep.join(keep)


def _env_key(python: str) -> str:
    from evtrack.projects.cache import content_hash
    from evtrack.projects.environments.interpreters import find_python
    from evtrack.projects.environments.python_env import PythonEnv

    _, version = find_python(python)
    return f"uv-{content_hash('uv', version, PythonEnv(python, ('pip',), (), ()))}"


def test_a_second_build_of_the_same_environment_waits_for_the_lock(tmp_path, projects_cache):
    from filelock import FileLock

    needs_python("3.10.13")
    folder = tiny_python_env(tmp_path / "p", python="3.10", deps="[]")
    (folder / "MLproject").write_text(
        "python_env: python_env.yaml\nentry_points:\n  main:\n    command: 'python -V'\n"
    )
    key = _env_key("3.10")
    envs = projects_cache / "envs"
    envs.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(envs / f"{key}.lock"))
    lock.acquire()  # as if another run were building this environment
    store = tmp_path / "store"
    with subprocess.Popen(
        [sys.executable, "-m", "evtrack.cli", "run", str(folder), "--env-manager", "uv"],
        env=subprocess_env(store, EVTRACK_PROJECTS_CACHE_DIR=str(projects_cache)),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    ) as proc:  # fmt: skip
        try:
            waited = ""
            while "Waiting for another process" not in waited:
                line = proc.stderr.readline()
                assert line, f"the run did not wait for the lock: {waited}"
                waited += line
            assert not (envs / key).exists()  # nothing built while the lock is held
        finally:
            lock.release()
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "Python 3.10" in out
    assert (envs / key / ".evtrack-env-ok").exists()


def test_two_runs_at_once_build_one_environment(tmp_path, projects_cache):
    needs_python("3.9.18")
    folder = tiny_python_env(tmp_path / "p", python="3.9", deps="[]")
    (folder / "MLproject").write_text(
        "python_env: python_env.yaml\nentry_points:\n  main:\n    command: 'python -V'\n"
    )
    env = subprocess_env(tmp_path / "store", EVTRACK_PROJECTS_CACHE_DIR=str(projects_cache))
    argv = [sys.executable, "-m", "evtrack.cli", "run", str(folder), "--env-manager", "uv"]
    procs = [
        subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    results = [p.communicate(timeout=180) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    assert sum(err.count("=== Building uv environment") for _, err in results) == 1
    assert all("Python 3.9" in out for out, _ in results)


def test_build_failure_ends_failed_and_leaves_nothing_half_built(tmp_path, projects_cache):
    folder = tiny_python_env(
        tmp_path / "p", python=".".join(map(str, sys.version_info[:2])),
        deps="[evtrack-no-such-package-zz9==0.0.1]",
    )  # fmt: skip
    with pytest.raises(Exception, match="Building uv environment .* failed"):
        run(str(folder), env_manager="uv", stdout=io.StringIO(), stderr=io.StringIO())
    (r,) = evtrack.MlflowClient().search_runs(["0"])
    assert r.info.status == "FAILED"
    assert "evtrack-no-such-package-zz9" in r.data.tags[ERROR_TAG]
    assert "evtrack-no-such-package-zz9" in artifact(r.info.run_id, "environment-build.log")
    envs = projects_cache / "envs"
    built = [p for p in envs.iterdir() if p.is_dir() and not (p / ".evtrack-env-ok").exists()]
    assert built == []  # the half-built folder was removed


def test_missing_python_fails_at_once_without_a_run(tmp_path):
    folder = tiny_python_env(tmp_path / "p", python="3.99")
    for manager in ("uv", "virtualenv"):
        with pytest.raises(
            EnvironmentUnavailable, match="needs Python 3.99, which is not installed"
        ):
            run(str(folder), env_manager=manager)
    assert evtrack.MlflowClient().search_runs(["0"]) == []


def test_absent_tools_fail_at_once_saying_what_to_do(tmp_path, monkeypatch):
    from evtrack.projects.environments import venvs

    python_project = tiny_python_env(tmp_path / "py")
    conda_project = project(
        tmp_path / "c",
        "entry_points:\n  main:\n    command: x\n",
        conda__yaml="dependencies: [python=3.11]\n",
    )
    docker_project = project(
        tmp_path / "d",
        "name: d\ndocker_env: {image: 'python:3.11'}\nentry_points:\n  main:\n    command: x\n",
    )
    monkeypatch.setattr(venvs, "find_uv", lambda: None)
    cases = [
        (python_project, "uv", "pip install uv"),
        (python_project, "conda", "python_env, which conda does not build"),
        (python_project, "docker", "needs a docker_env section"),
        (docker_project, "uv", "declares docker_env"),
        (docker_project, "docker", "daemon does not answer"),  # the real docker CLI, no daemon
    ]
    monkeypatch.setenv("PATH", _path_without("conda", "mamba", "micromamba"))
    cases.append((conda_project, "conda", "needs conda, mamba or micromamba on PATH"))
    for folder, manager, message in cases:
        with pytest.raises(EnvironmentUnavailable, match=message):
            run(str(folder), env_manager=manager)
    monkeypatch.setenv("PATH", _path_without("docker"))
    with pytest.raises(EnvironmentUnavailable, match="needs Docker: install it"):
        run(str(docker_project), env_manager="docker")
    assert evtrack.MlflowClient().search_runs(["0"]) == []


# -- stand-ins ------------------------------------------------------------------------

STAND_IN = r'''#!{python}
"""Stand-in {tool}: records its argv, then does the least that lets the run go on."""
import json, os, subprocess, sys

args = sys.argv[1:]
with open({calls!r}, "a") as f:
    f.write(json.dumps([os.path.basename(sys.argv[0])] + args) + "\n")
{body}
'''

CONDA_BODY = r"""
if args[:2] == ["env", "create"]:
    prefix = args[args.index("--prefix") + 1]
    if "fail" in open(args[args.index("--file") + 1]).read():
        os.makedirs(prefix)  # half-created, then the failure
        print("PackagesNotFoundError: fail", flush=True)
        sys.exit(1)
    os.makedirs(os.path.join(prefix, "conda-meta"))
    sys.exit(0)
if args[0] == "run":
    rest = args[args.index("--no-capture-output") + 1:]
    os.execvp(rest[0], rest)
sys.exit(2)
"""

DOCKER_BODY = r"""
if args[0] in ("info", "build"):
    print(f"stand-in docker {args[0]}")
    sys.exit(0)
if args[0] == "run":
    env, mounts, workdir, i = dict(os.environ), {}, None, 1
    while args[i].startswith("-"):
        flag = args[i]
        if flag in ("--rm", "--privileged"):
            i += 1
            continue
        value = args[i + 1]
        if flag == "-e":
            k, _, v = value.partition("=")
            env[k] = v
        elif flag == "-v":
            host, container = value.split(":")[:2]
            mounts[container] = host
        elif flag == "-w":
            workdir = value
        i += 2
    image, command = args[i], args[i + 1:]
    cwd = mounts.get(workdir, workdir)
    sys.exit(subprocess.call(command, cwd=cwd, env=env))
sys.exit(2)
"""


def stand_in(bin_dir: Path, tool: str, body: str) -> Path:
    bin_dir.mkdir(exist_ok=True)
    calls = bin_dir / f"{tool}.calls"
    path = bin_dir / tool
    path.write_text(STAND_IN.format(python=sys.executable, tool=tool, calls=str(calls), body=body))
    path.chmod(0o755)
    return calls


def calls_of(calls: Path) -> list[list[str]]:
    return [json.loads(line) for line in calls.read_text().splitlines()] if calls.exists() else []


CHILD = "import evtrack, os\nwith evtrack.start_run():\n    evtrack.log_param('where', os.environ['EVTRACK_TRACKING_URI'][:7])\nprint('child ran')\n"


def test_conda_command_lines(tmp_path, monkeypatch, projects_cache):
    calls = stand_in(tmp_path / "bin", "conda", CONDA_BODY)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    folder = project(
        tmp_path / "p",
        "name: c\nconda_env: conda.yaml\nentry_points:\n  main:\n    command: 'python child.py'\n",
        conda__yaml="name: c\ndependencies: [python=3.11, numpy]\n",
        child__py=CHILD,
    )
    assert default_manager(load_project(str(folder))) == "conda"  # conda on PATH
    out = io.StringIO()
    first = run(str(folder), stdout=out, stderr=io.StringIO())
    second = run(str(folder), stdout=out, stderr=io.StringIO())
    assert out.getvalue() == "child ran\nchild ran\n"
    recorded = calls_of(calls)
    prefix = recorded[0][recorded[0].index("--prefix") + 1]
    assert Path(prefix).parent == projects_cache / "envs"
    script = "python child.py"
    assert recorded == [
        ["conda", "env", "create", "--prefix", prefix, "--file", str(folder / "conda.yaml")],
        ["conda", "run", "--prefix", prefix, "--no-capture-output", "bash", "-c", script],
        ["conda", "run", "--prefix", prefix, "--no-capture-output", "bash", "-c", script],
    ]  # created once, then reused
    client = evtrack.MlflowClient()
    for submitted in (first, second):
        r = client.get_run(submitted.run_id)
        assert r.data.tags["mlflow.project.env"] == "conda"
        assert r.data.params == {"where": "file://"}  # the child logged into the run


def test_conda_build_failure_removes_the_prefix(tmp_path, monkeypatch, projects_cache):
    stand_in(tmp_path / "bin", "conda", CONDA_BODY)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    folder = project(
        tmp_path / "p", None, conda__yaml="name: fail\ndependencies: [python=3.11]\n", a__py=""
    )
    with pytest.raises(Exception, match="PackagesNotFoundError"):
        run(
            str(folder),
            entry_point="a.py",
            env_manager="conda",
            stdout=io.StringIO(),
            stderr=io.StringIO(),
        )
    (r,) = evtrack.MlflowClient().search_runs(["0"])
    assert r.info.status == "FAILED" and "exited with status 1" in r.data.tags[ERROR_TAG]
    leftovers = [p for p in (projects_cache / "envs").glob("conda-*") if p.is_dir()]
    assert all((p / ".evtrack-env-ok").exists() for p in leftovers)


def test_docker_command_lines_and_child_logs_through_loopback(tmp_path, monkeypatch):
    calls = stand_in(tmp_path / "bin", "docker", DOCKER_BODY)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("COPIED_VAR", "from-host")
    folder = project(
        tmp_path / "p",
        """
        name: Docker Demo!
        docker_env:
          image: python:3.11-slim
          volumes: ["/tmp:/data"]
          environment: [["NEW_VAR", "new value"], "COPIED_VAR"]
        entry_points:
          main:
            parameters: {alpha: {type: float, default: 1}}
            command: "python child.py {alpha}"
        """,
        child__py=CHILD,
    )
    out = io.StringIO()
    submitted = run(
        str(folder), parameters={"alpha": "2"}, build_image=True,
        docker_args={"gpus": "all", "privileged": True}, stdout=out, stderr=io.StringIO(),
    )  # fmt: skip
    assert out.getvalue() == "child ran\n"
    r = evtrack.MlflowClient().get_run(submitted.run_id)
    assert r.info.status == "FINISHED"
    assert r.data.tags["mlflow.project.env"] == "docker"
    assert r.data.tags["mlflow.docker.image.uri"] == "docker-demo:latest"
    # The child had no store path, only the loopback server: it logged over HTTP.
    assert r.data.params == {"alpha": "2.0", "where": "http://"}
    info, build, docker_run = calls_of(calls)
    assert info == ["docker", "info"]
    assert build[:5] == ["docker", "build", "-t", "docker-demo:latest", "-f"]
    assert build[-1] == str(folder)
    artifacts = r.info.artifact_uri.removeprefix("file://")
    env = dict(docker_run[i + 1].split("=", 1) for i, a in enumerate(docker_run) if a == "-e")
    head = docker_run[: docker_run.index("-e")]
    assert head == [
        "docker", "run", "--rm", "--network", "host",
        "-v", f"{folder}:/mlflow/projects/code", "-w", "/mlflow/projects/code",
        "-v", f"{artifacts}:{artifacts}", "-v", "/tmp:/data",
    ]  # fmt: skip
    assert docker_run[-4:] == ["docker-demo:latest", "sh", "-c", "python child.py 2.0"]
    flags = docker_run.index("--gpus")
    assert docker_run[flags : flags + 3] == ["--gpus", "all", "--privileged"]
    assert env["NEW_VAR"] == "new value" and env["COPIED_VAR"] == "from-host"
    assert env["MLFLOW_RUN_ID"] == env["EVTRACK_RUN_ID"] == submitted.run_id
    assert env["MLFLOW_TRACKING_URI"].startswith("http://127.0.0.1:")
    assert env["EVTRACK_TRACKING_URI"] == env["MLFLOW_TRACKING_URI"]
    assert env["MLFLOW_EXPERIMENT_ID"] == "0"


def test_failed_run_raises_execution_error(tmp_path):
    folder = project(tmp_path / "p", None, bad__sh="exit 4\n")
    with pytest.raises(ExecutionError):
        run(str(folder), entry_point="bad.sh", env_manager="local", stdout=io.StringIO())
    time.sleep(0)  # nothing to wait for: the status is final when run() returns
    (r,) = evtrack.MlflowClient().search_runs(["0"])
    assert r.info.status == "FAILED"


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_line_on_a_terminal(tmp_path, projects_cache):
    """While a build runs, a spinner line with the elapsed time and the installer's last
    line is redrawn on a terminal; the build log gets every line."""
    from evtrack.projects.environments.build import cached_build

    term = _Terminal()
    script = (
        "import time\nfor i in range(4):\n    print('step', i, flush=True)\n    time.sleep(0.2)\n"
    )

    def build(folder, step):
        os.makedirs(folder)
        step([sys.executable, "-c", script])

    folder, log = cached_build("test", f"progress-{time.time_ns()}", "test env", build, term)
    drawn = term.getvalue()
    assert "=== Building test env ===" in drawn and "=== Built test env in" in drawn
    assert "\r⠋ test env" in drawn or "\r⠙ test env" in drawn
    assert "s step " in drawn  # the last line of the build, shown while it runs
    assert all(f"\nstep {i}\n" in Path(log).read_text() for i in range(4))


def test_interrupted_build_leaves_nothing_and_is_rebuilt(tmp_path, projects_cache):
    """Ctrl-C (or a failure) in the middle of a build removes the half-built folder; the
    next run builds it again instead of trusting it."""
    from evtrack.projects.environments.build import cached_build

    key = f"interrupt-{time.time_ns()}"

    def interrupted(folder, step):
        os.makedirs(folder)
        Path(folder, "half").write_text("x")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cached_build("test", key, "test env", interrupted, io.StringIO())
    assert not (projects_cache / "envs" / f"test-{key}").exists()

    # A build that died without cleaning up (kill -9): a folder without the marker.
    (projects_cache / "envs" / f"test-{key}").mkdir()
    built = []

    def build(folder, step):
        assert not os.path.exists(folder)  # the leftover was removed first
        os.makedirs(folder)
        built.append(folder)

    folder, _ = cached_build("test", key, "test env", build, io.StringIO())
    assert built == [folder] and (Path(folder) / ".evtrack-env-ok").exists()
    assert cached_build("test", key, "test env", build, io.StringIO())[0] == folder
    assert len(built) == 1  # the finished build is reused
