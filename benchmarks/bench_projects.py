"""``evtrack run`` overhead: command to the child's first line, and environment builds.

* **first line, warm**: wall time from starting ``evtrack run PROJECT`` (a new process, as
  a user types it) to the entry point's first line of output on our stdout, with the
  environment already in the cache: ``--env-manager local`` and ``uv``. MLflow: the
  same project with ``mlflow run --env-manager local`` from the MLflow venv (its uv and
  virtualenv managers install mlflow itself into the environment, minutes of download,
  so they are not measured side by side).
* **cold build**: the same small ``python_env.yaml`` (one tiny requirement) built from an
  empty cache by ``uv`` and by ``virtualenv`` + pip, as reported by the build itself.

The project's command is ``python -c "print(...)"``, with this interpreter first on
PATH (not a pyenv shim): what is measured is the runners' overhead, not the training. Figures vary with the machine's load (2 shared cores here).

    python benchmarks/bench_projects.py [--quick] [--no-mlflow]
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import Row, TempRoot, emit, log, mlflow_python, parser, summary  # noqa: E402

MLPROJECT = """name: bench
python_env: python_env.yaml
entry_points:
  main:
    parameters:
      alpha: {type: float, default: 0.5}
    command: "python -c 'print(\\"first line\\", {alpha}, flush=True)'"
"""


def make_project(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "MLproject").write_text(MLPROJECT)
    version = ".".join(map(str, sys.version_info[:2]))
    (folder / "python_env.yaml").write_text(f'python: "{version}"\ndependencies: [six]\n')
    return folder


def first_line(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """(seconds to the first stdout line, seconds to exit) of one command."""
    t0 = time.perf_counter()
    with subprocess.Popen(
        argv, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        line = proc.stdout.readline()
        t_first = time.perf_counter() - t0
        rest, err = proc.communicate(timeout=300)
        t_end = time.perf_counter() - t0
    if "first line" not in line or proc.returncode != 0:
        raise RuntimeError(f"{argv[:4]} failed ({proc.returncode}): {line}{rest}{err[-2000:]}")
    return t_first, t_end


def evtrack_argv(project: Path, store: Path, manager: str) -> list[str]:
    return [sys.executable, "-m", "evtrack.cli", "--tracking-uri", str(store), "run",
            str(project), "-P", "alpha=1", "--env-manager", manager]  # fmt: skip


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    repeats = 3 if args.quick else 7
    rows: list[Row] = []
    with TempRoot("bench-projects", args.keep) as root:
        project = make_project(root.sub("project"))
        env = dict(os.environ, EVTRACK_PROJECTS_CACHE_DIR=str(root.sub("cache")))
        # `python` in the command is this interpreter, not a pyenv shim (which alone costs
        # 0.1-0.4 s here): the figures are the runners' overhead, on both sides.
        env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env["PATH"]
        env.pop("EVTRACK_TRACKING_URI", None)

        # -- cold builds ------------------------------------------------------------
        builds: dict[str, float] = {}
        for manager in ("uv", "virtualenv"):
            cold = dict(env, EVTRACK_PROJECTS_CACHE_DIR=str(root.sub(f"cold-{manager}")))
            log(f"cold {manager} build...")
            out = subprocess.run(
                evtrack_argv(project, root.sub("store") / "s", manager),
                env=cold, cwd=root.path, capture_output=True, text=True, timeout=600,
            )  # fmt: skip
            m = re.search(r"=== Built .* in ([\d.]+) s ===", out.stderr)
            builds[manager] = float(m.group(1)) if m else float("nan")
        rows.append(Row("cold build, uv (python_env.yaml, 1 requirement)", "s", builds["uv"],
                        note="uv venv + uv pip install"))  # fmt: skip
        rows.append(Row("cold build, virtualenv", "s", builds["virtualenv"],
                        note="virtualenv + pip install"))  # fmt: skip

        # -- warm first line ------------------------------------------------------------
        # The floor at this moment: a bare interpreter printing a line (the machine's load
        # moves every figure; this one says by how much).
        bare = [sys.executable, "-c", "print('first line', flush=True)"]
        floor = statistics.median(first_line(bare, env, root.path)[0] for _ in range(repeats))
        rows.append(Row("floor: bare `python -c print(...)`", "s", floor,
                        note="no evtrack; the machine's load at this moment"))  # fmt: skip
        store = root.sub("store") / "warm"
        for manager in ("local", "uv"):
            first_line(evtrack_argv(project, store, manager), env, root.path)  # warm up
            firsts, ends = [], []
            for _ in range(repeats):
                t_first, t_end = first_line(evtrack_argv(project, store, manager), env, root.path)
                firsts.append(t_first)
                ends.append(t_end)
            log(f"evtrack {manager}: first line {summary(firsts)}; whole run {summary(ends)}")
            rows.append(Row(
                f"command -> child's first line, warm ({manager})", "s",
                statistics.median(firsts), target="< 1 s",
                note=f"whole run {statistics.median(ends):.2f} s",
            ))  # fmt: skip

        python = mlflow_python(args)
        if python:
            mlflow_bin = str(Path(python).parent / "mlflow")
            menv = {k: v for k, v in env.items() if not k.startswith(("EVTRACK_", "MLFLOW_"))}
            menv["MLFLOW_TRACKING_URI"] = f"sqlite:///{root.sub('mlflow')}/mlflow.db"
            argv = [mlflow_bin, "run", str(project), "-P", "alpha=1", "--env-manager", "local"]
            try:
                first_line(argv, menv, root.path)  # creates the database
                firsts, ends = [], []
                for _ in range(repeats):
                    t_first, t_end = first_line(argv, menv, root.path)
                    firsts.append(t_first)
                    ends.append(t_end)
                log(f"mlflow local: first line {summary(firsts)}; whole run {summary(ends)}")
                rows[-2].mlflow_sqlite = statistics.median(firsts)
            except Exception as exc:  # noqa: BLE001 - print why, leave the cell empty
                log(f"mlflow run failed: {exc}")
    emit(rows, args, "evtrack run (projects)")


if __name__ == "__main__":
    main()
