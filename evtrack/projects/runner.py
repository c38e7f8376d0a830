"""Running a project as a recorded run: ``evtrack.projects.run(...)`` and ``evtrack run``.

The order matters, and is where evtrack differs from ``mlflow run``:

1. **Before the run exists** (an error here leaves no run behind): fetch the project,
   parse ``MLproject``, check every parameter (missing required ones, ``int``/``float``
   values), pick the environment manager and check its tool is installed.
2. **Create the run** (or take ``run_id``): MLflow's project tags, the parameters in their
   parsed form.
3. **After**: resolve ``path`` parameters (downloading URLs), build or find the environment,
   start a loopback server when the child may use MLflow's client, start the child in its
   own process group with the run in its environment. Any failure here ends the run
   FAILED with the reason in the tag ``evtrack.project.error`` (MLflow leaves it RUNNING).
4. **While it runs**: its output (stdout and stderr, merged) is streamed to ours and to a
   log, saved as the artifact ``project/output.log`` at the end, with the environment's
   build log as ``project/environment-build.log``.
5. **The end**: exit status 0 → FINISHED, anything else → FAILED (with the status in
   ``evtrack.project.error``); :meth:`SubmittedRun.cancel`, Ctrl-C or SIGTERM (the CLI turns
   it into ``KeyboardInterrupt``) stops the whole process group (SIGTERM, then SIGKILL after
   a grace period) and records KILLED.

A ``kill -9`` of the runner itself cannot record anything: the run stays RUNNING and its
child, in its own session, keeps running; that window is the same as MLflow's.
"""

from __future__ import annotations

import codecs
import io
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

from evtrack import settings
from evtrack.errors import EvtrackError, ExecutionError, InvalidParameterValue
from evtrack.projects.environments import (
    BuildContext,
    EnvManager,
    Prepared,
    default_manager,
    get_manager,
)
from evtrack.projects.sources import Source, fetch
from evtrack.projects.spec import EntryPoint, Project, load_project

if TYPE_CHECKING:
    from evtrack.projects.loopback import LoopbackServer

__all__ = [
    "ERROR_TAG",
    "ExecutionError",
    "Plan",
    "SubmittedRun",
    "detach",
    "plan",
    "raise_keyboard_interrupt",
    "run",
]

#: The tag holding why a project run ended FAILED (or could not start).
ERROR_TAG = "evtrack.project.error"
OUTPUT_ARTIFACT = "project/output.log"
BUILD_LOG_ARTIFACT = "project/environment-build.log"
#: Seconds between SIGTERM and SIGKILL of the child's process group on cancel.
KILL_GRACE_SECONDS = 10.0


@dataclass
class Plan:
    """Everything checked before a run is created."""

    source: Source
    project: Project
    entry_point: EntryPoint
    declared: dict[str, str]
    extra: dict[str, str]
    env_manager: str
    manager: EnvManager


def plan(
    uri: str,
    entry_point: str = "main",
    version: str | None = None,
    parameters: Mapping[str, Any] | None = None,
    env_manager: str | None = None,
) -> Plan:
    """Fetch, parse and check a project run without starting anything (step 1)."""
    source = fetch(uri, version)
    try:
        project = load_project(source.work_dir)
        entry = project.entry_point(entry_point)
        declared, extra = entry.resolve(dict(parameters or {}))
        name = env_manager or default_manager(project)
        manager = get_manager(name)
        manager.check(project)
    except BaseException:
        source.cleanup()
        raise
    return Plan(source, project, entry, declared, extra, name, manager)


class SubmittedRun:
    """A started project run: MLflow's ``SubmittedRun`` (``run_id``, ``wait``, ``cancel``)."""

    def __init__(self, run_id: str, experiment_id: str) -> None:
        self.run_id = run_id
        self.experiment_id = experiment_id
        self._status = "RUNNING"
        self._done = threading.Event()
        self._proc: subprocess.Popen | None = None
        self._cancelled = False
        self._lock = threading.Lock()
        self._monitor: threading.Thread | None = None

    def wait(self) -> bool:
        """Block until the run ends; True when it FINISHED. Ctrl-C here cancels the run."""
        try:
            while not self._done.wait(0.5):
                pass
        except KeyboardInterrupt:
            self.cancel()
            self._done.wait()
            raise
        return self._status == "FINISHED"

    def get_status(self) -> str:
        return self._status

    @property
    def status(self) -> str:
        return self._status

    def cancel(self, grace: float = KILL_GRACE_SECONDS) -> None:
        """Stop the child's process group (SIGTERM, SIGKILL after ``grace``); KILLED."""
        with self._lock:
            self._cancelled = True
            proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        _signal_group(proc.pid, signal.SIGTERM)

        def escalate() -> None:
            if proc.poll() is None:
                try:
                    proc.wait(grace)
                except subprocess.TimeoutExpired:
                    _signal_group(proc.pid, signal.SIGKILL)

        threading.Thread(target=escalate, daemon=True).start()


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _experiment(client: Any, experiment_id: str | None, experiment_name: str | None) -> str:
    if experiment_id is not None and experiment_name is not None:
        raise InvalidParameterValue("Pass an experiment id or an experiment name, not both.")
    if experiment_id is not None:
        return client.get_experiment(str(experiment_id)).experiment_id
    name = experiment_name or settings.get("experiment_name")
    if name:
        exp = client.get_experiment_by_name(name)
        return exp.experiment_id if exp else client.create_experiment(name)
    return str(settings.get("experiment_id") or "0")


def _tags(p: Plan, manager_name: str, parent_run_id: str | None) -> dict[str, str]:
    from evtrack.tracking.context import user_name

    tags = {
        "mlflow.user": user_name(),
        "mlflow.source.name": p.source.source_name,
        "mlflow.source.type": "PROJECT",
        "mlflow.project.entryPoint": p.entry_point.name,
        "mlflow.project.env": manager_name,
        "mlflow.project.backend": "local",
    }
    optional = {
        "mlflow.source.git.commit": p.source.git_commit,
        "mlflow.source.git.branch": p.source.git_branch,
        "mlflow.source.git.repoURL": p.source.git_repo_url,
        "mlflow.parentRunId": parent_run_id,
    }
    tags.update({k: v for k, v in optional.items() if v})
    return tags


def run(
    uri: str,
    entry_point: str = "main",
    version: str | None = None,
    parameters: Mapping[str, Any] | None = None,
    docker_args: Mapping[str, str | bool] | None = None,
    experiment_name: str | None = None,
    experiment_id: str | None = None,
    env_manager: str | None = None,
    synchronous: bool = True,
    run_id: str | None = None,
    run_name: str | None = None,
    build_image: bool = False,
    storage_dir: str | None = None,
    tracking_uri: str | None = None,
    stdout: IO[Any] | None = None,
    stderr: IO[str] | None = None,
) -> SubmittedRun:
    """Run the project at ``uri`` as a run (MLflow's ``mlflow.projects.run``).

    With ``synchronous=True`` (the default) this returns once the child has ended and
    raises :class:`ExecutionError` unless it FINISHED; otherwise it returns as soon as the
    child has started, and :meth:`SubmittedRun.wait` waits. The environment is built before
    either returns, as MLflow does. ``stdout`` receives the child's output (default: ours),
    ``stderr`` the runner's progress lines.
    """
    out = stderr or sys.stderr
    p = plan(uri, entry_point, version, parameters, env_manager)
    client, run_obj = _record(p, tracking_uri, experiment_id, experiment_name, run_id, run_name)
    submitted = SubmittedRun(run_obj.info.run_id, run_obj.info.experiment_id)
    print(
        f"=== Run {submitted.run_id} in experiment {submitted.experiment_id} ===",
        file=out,
        flush=True,
    )
    execution = _Execution(client, p, submitted, run_obj.info.artifact_uri, out, stdout)
    execution.start(docker_args or {}, build_image, storage_dir)
    if synchronous:
        if not submitted.wait():
            raise ExecutionError(
                f"Run (ID '{submitted.run_id}') ended {submitted.status}: see the tag "
                f"{ERROR_TAG} and the artifact {OUTPUT_ARTIFACT}."
            )
    return submitted


def _record(
    p: Plan,
    tracking_uri: str | None,
    experiment_id: str | None,
    experiment_name: str | None,
    run_id: str | None,
    run_name: str | None,
) -> tuple[Any, Any]:
    """Step 2: create (or take) the run, with its tags and parameters; ``(client, run)``."""
    import evtrack

    try:
        uri = tracking_uri or evtrack.get_tracking_uri()
        if "://" not in uri:  # the child runs in the project folder: no relative paths
            uri = os.path.abspath(os.path.expanduser(uri))
        client = evtrack.MlflowClient(uri)
        active = evtrack.active_run()
        parent = active.info.run_id if active else settings.get("run_id")
        if run_id:
            run_obj = client.get_run(run_id)
            parent = None if parent == run_id else parent
        else:
            exp_id = _experiment(client, experiment_id, experiment_name)
            run_obj = client.create_run(exp_id, run_name=run_name)
        tags = _tags(p, p.env_manager, parent)
        client.log_batch(
            run_obj.info.run_id,
            params=[evtrack.entities.Param(k, v) for k, v in {**p.declared, **p.extra}.items()],
            tags=[evtrack.entities.RunTag(k, v) for k, v in tags.items()],
        )
        client.flush()
    except BaseException:
        p.source.cleanup()
        raise
    return client, run_obj


def detach(
    uri: str,
    entry_point: str = "main",
    version: str | None = None,
    parameters: Mapping[str, Any] | None = None,
    docker_args: Mapping[str, str | bool] | None = None,
    experiment_name: str | None = None,
    experiment_id: str | None = None,
    env_manager: str | None = None,
    run_id: str | None = None,
    run_name: str | None = None,
    build_image: bool = False,
    storage_dir: str | None = None,
    tracking_uri: str | None = None,
) -> str:
    """Check and record the run here, then run it in a background ``evtrack run --run-id``
    process that outlives this one (``evtrack run --detach``); returns the run id.

    The background process has no terminal: the output is in the run's artifact
    ``project/output.log`` and its end in the run's status.
    """
    p = plan(uri, entry_point, version, parameters, env_manager)
    client, run_obj = _record(p, tracking_uri, experiment_id, experiment_name, run_id, run_name)
    p.source.cleanup()
    # A git source is pinned to the commit recorded, even if the branch moves meanwhile.
    pinned = p.source.git_commit if p.source.checkout else version
    argv = [sys.executable, "-m", "evtrack.cli", "--tracking-uri", client.tracking_uri, "run"]
    argv += [uri, "-e", entry_point, "--env-manager", p.env_manager]
    argv += ["--run-id", run_obj.info.run_id]
    if pinned:
        argv += ["--version", pinned]
    for key, value in {**dict(parameters or {})}.items():
        argv += ["-P", f"{key}={value}"]
    for key, value in (docker_args or {}).items():
        argv += ["-A", key if value is True else f"{key}={value}"]
    if build_image:
        argv.append("--build-image")
    if storage_dir:
        argv += ["--storage-dir", storage_dir]
    subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        cwd=os.getcwd(),
    )
    return run_obj.info.run_id


class _Execution:
    """Steps 3-5 for one run: the environment, the child, its output and the end."""

    def __init__(
        self,
        client: Any,
        p: Plan,
        submitted: SubmittedRun,
        artifact_uri: str,
        out: IO[str],
        sink: IO[Any] | None,
    ) -> None:
        self.client, self.plan, self.submitted = client, p, submitted
        self.artifact_uri, self.out, self.sink = artifact_uri, out, sink
        self.server: LoopbackServer | None = None
        self.build_log: str | None = None
        self.scratch = tempfile.mkdtemp(prefix="evtrack-project-")
        self.output_path = os.path.join(self.scratch, "output.log")
        self.storage_dir: str | None = None
        # The child starts from our environment, minus what would point it elsewhere
        # (the run's experiment is fixed by its id).
        self.environ = {
            k: v
            for k, v in os.environ.items()
            if k not in ("EVTRACK_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_NAME")
        }

    # -- step 3 ---------------------------------------------------------------------

    def start(
        self, docker_args: Mapping[str, str | bool], build_image: bool, storage_dir: str | None
    ) -> None:
        try:
            declared = self._resolve_paths(storage_dir)
            command = self.plan.entry_point.command_line(declared, self.plan.extra)
            ctx = BuildContext(
                self.plan.source,
                self.out,
                build_image,
                docker_args,
                _local_dir(self.artifact_uri),
                self.environ,
            )
            prepared = self.plan.manager.prepare(self.plan.project, ctx)
            self.build_log = prepared.build_log
            if prepared.tags:
                for key, value in prepared.tags.items():
                    self.client.set_tag(self.submitted.run_id, key, value)
            env, child_env = self._child_env(prepared)
            argv = prepared.argv(command, child_env)
            print(
                f"=== Running command '{command}' in run with ID '{self.submitted.run_id}' ===",
                file=self.out,
                flush=True,
            )
            proc = subprocess.Popen(
                argv,
                cwd=self.plan.source.work_dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: Ctrl-C reaches us, not it
            )
        except BaseException as exc:
            self.build_log = self.build_log or getattr(exc, "log_path", None)
            killed = isinstance(exc, KeyboardInterrupt)
            self._finish("KILLED" if killed else "FAILED", None if killed else _reason(exc))
            raise
        with self.submitted._lock:
            self.submitted._proc = proc
            cancelled = self.submitted._cancelled
        if cancelled:  # cancel() came while the environment was building
            self.submitted.cancel()
        monitor = threading.Thread(target=self._monitor, args=(proc,), daemon=True)
        self.submitted._monitor = monitor
        monitor.start()

    def _resolve_paths(self, storage_dir: str | None) -> dict[str, str]:
        declared = dict(self.plan.declared)
        for position, (name, param) in enumerate(self.plan.entry_point.parameters.items()):
            if param.type != "path":
                continue
            value = declared[name]
            local = value[len("file://") :] if value.startswith("file://") else value
            if "://" not in local:
                # Relative to where `evtrack run` was started, as in MLflow; else to the
                # project (a default like `data.csv` names a file of the project).
                inside = os.path.join(self.plan.source.work_dir, local)
                found = [p for p in (local, inside) if os.path.exists(p)]
                if not found:
                    raise InvalidParameterValue(
                        f"Parameter '{name}' is a path, and {value} does not exist "
                        f"(here or in the project)."
                    )
                declared[name] = os.path.abspath(found[0])
                continue
            if self.storage_dir is None:
                base = storage_dir or self.scratch
                os.makedirs(base, exist_ok=True)
                self.storage_dir = tempfile.mkdtemp(prefix="params-", dir=base)
            target = os.path.join(self.storage_dir, f"param_{position}")
            declared[name] = _download(name, value, target)
        return declared

    def _child_env(self, prepared: Prepared) -> tuple[dict[str, str], dict[str, str]]:
        """(the child's whole environment, the tracking variables a container needs)."""
        store_uri = self.client.tracking_uri
        remote_store = store_uri.startswith(("http://", "https://"))
        evtrack_uri = store_uri
        mlflow_uri: str | None = store_uri if remote_store else None
        must_serve = prepared.remote or store_uri.startswith("memory://")
        if not remote_store and (must_serve or prepared.has_mlflow is not False):
            from evtrack.projects.loopback import LoopbackServer

            self.server = server = LoopbackServer(store_uri).start()
            mlflow_uri = server.url
            if must_serve:  # the child cannot open this store itself
                evtrack_uri = server.url
        tracking = {
            "EVTRACK_RUN_ID": self.submitted.run_id,
            "EVTRACK_EXPERIMENT_ID": self.submitted.experiment_id,
            "EVTRACK_TRACKING_URI": evtrack_uri,
            "MLFLOW_RUN_ID": self.submitted.run_id,
            "MLFLOW_EXPERIMENT_ID": self.submitted.experiment_id,
        }
        if mlflow_uri:
            tracking["MLFLOW_TRACKING_URI"] = mlflow_uri
        env = dict(self.environ)
        if prepared.isolated:
            env.pop("PYTHONPATH", None)
            env.pop("PYTHONHOME", None)
        env.update(prepared.env)
        env.update(tracking)
        return env, tracking

    # -- steps 4 and 5 -------------------------------------------------------------

    def _monitor(self, proc: subprocess.Popen) -> None:
        sink = self.sink if self.sink is not None else sys.stdout
        binary: Any  # a binary stream, or None for a text sink without one
        if isinstance(sink, (io.RawIOBase, io.BufferedIOBase)):
            binary = sink
        else:
            binary = getattr(sink, "buffer", None)
        assert proc.stdout is not None
        # A chunk may end inside a UTF-8 character: decode incrementally for text sinks.
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        status, reason = "FAILED", None
        try:
            with proc.stdout, open(self.output_path, "wb") as log:
                fd = proc.stdout.fileno()
                while True:
                    chunk = os.read(fd, 65536)
                    if not chunk:
                        break
                    log.write(chunk)
                    log.flush()
                    try:
                        if binary is not None:
                            binary.write(chunk)
                            binary.flush()
                        else:
                            sink.write(decoder.decode(chunk))
                            sink.flush()
                    except (OSError, ValueError):
                        pass  # our stdout went away (closed pipe): keep the log going
            code = proc.wait()
            with self.submitted._lock:
                cancelled = self.submitted._cancelled
            if cancelled:
                status = "KILLED"
                _signal_group(proc.pid, signal.SIGKILL)  # leftovers of the group, if any
            elif code == 0:
                status = "FINISHED"
            elif code < 0:
                reason = f"The entry point was killed by signal {signal.Signals(-code).name}."
            else:
                reason = f"The entry point exited with status {code}."
        except BaseException as exc:  # noqa: BLE001 - whatever happens, record an end
            reason = _reason(exc)
        finally:
            self._finish(status, reason)

    def _save_logs(self) -> None:
        run_id = self.submitted.run_id
        if os.path.isfile(self.output_path):
            self.client.log_artifact(run_id, self.output_path, "project")
        if self.build_log and os.path.isfile(self.build_log):
            copy = os.path.join(self.scratch, "environment-build.log")
            shutil.copyfile(self.build_log, copy)
            self.client.log_artifact(run_id, copy, "project")

    def _finish(self, status: str, reason: str | None) -> None:
        run_id = self.submitted.run_id
        try:
            if self.server is not None:
                self.server.stop()
            if reason:
                print(f"=== Run {run_id} {status}: {reason} ===", file=self.out, flush=True)
                self.client.set_tag(run_id, ERROR_TAG, reason[:5000])
            try:
                self._save_logs()
            except Exception as exc:  # noqa: BLE001 - the status matters more than the logs
                print(f"=== Run {run_id}: logs not saved: {exc} ===", file=self.out, flush=True)
            self.client.set_terminated(run_id, status)
            self.client.flush()
            if reason is None:
                print(f"=== Run {run_id} {status} ===", file=self.out, flush=True)
        finally:
            self.submitted._status = status
            self.plan.source.cleanup()
            shutil.rmtree(self.scratch, ignore_errors=True)
            self.submitted._done.set()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, EvtrackError):
        return exc.message
    return f"{type(exc).__name__}: {exc}"


def _local_dir(artifact_uri: str) -> str | None:
    if artifact_uri.startswith("file://"):
        return artifact_uri[len("file://") :]
    return artifact_uri if "://" not in artifact_uri else None


def _download(name: str, url: str, target: str) -> str:
    """Download the ``path`` parameter ``url`` into the folder ``target``; its local path."""
    os.makedirs(target, exist_ok=True)
    try:
        if url.startswith(("http://", "https://")):
            filename = os.path.basename(url.split("?")[0].rstrip("/")) or "download"
            dest = os.path.join(target, filename)
            with urllib.request.urlopen(url, timeout=60) as response, open(dest, "wb") as f:
                shutil.copyfileobj(response, f)
            return dest
        import fsspec

        fs, path = fsspec.core.url_to_fs(url)
        dest = os.path.join(target, os.path.basename(path.rstrip("/")) or "download")
        fs.get(path, dest, recursive=fs.isdir(path))
        return dest
    except Exception as exc:  # noqa: BLE001 - any download failure is the user's input
        raise InvalidParameterValue(
            f"Parameter '{name}': could not download {url}: {exc}"
        ) from None


def raise_keyboard_interrupt(signum: int, frame: Any) -> None:
    """A SIGTERM handler for the CLI: the run then ends KILLED as with Ctrl-C."""
    raise KeyboardInterrupt
