"""Shared plumbing of the benchmarks: options, timing, the MLflow subprocess, the table.

Each ``bench_*.py`` script measures evtrack in its own process and MLflow in a child
process run with the MLflow virtualenv's python (MLflow is never imported here: it is
not a dependency of evtrack and its import-time side effects must not touch what we
measure). A benchmark prints figures, never asserts; a side that fails or times out
prints why and leaves its cell empty.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
MLFLOW_SIDE = HERE / "_mlflow_side.py"

# Measure the evtrack of this checkout, not whichever one is installed: in this process
# (``python benchmarks/x.py`` puts benchmarks/, not the repo, first on sys.path) and in
# the evtrack subprocesses the benchmarks start (cold reads, bulk writers).
if str(REPO) not in sys.path:
    sys.path.insert(1, str(REPO))
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(REPO), *(p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p)]
)


# -- options ---------------------------------------------------------------------------


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="smaller counts (whole suite < ~2 min)")
    p.add_argument("--no-mlflow", action="store_true", help="measure evtrack only")
    p.add_argument(
        "--build-mlflow",
        action="store_true",
        help="build the MLflow virtualenv if it is missing (pip install, a few minutes)",
    )
    p.add_argument("--json", metavar="PATH", help="append the result rows to PATH (JSON lines)")
    p.add_argument("--keep", action="store_true", help="keep the temporary stores")
    p.add_argument("-v", "--verbose", action="store_true", help="show the MLflow side's stderr")
    return p


# -- results ---------------------------------------------------------------------------


@dataclass
class Row:
    """One line of the figures table.

    ``unit`` is ``"/s"`` (a rate: higher is better) or ``"s"`` (a duration: lower is
    better). ``note`` says what differs from the plain reading of the operation name.
    """

    operation: str
    unit: str
    evtrack: float | None = None
    mlflow_sqlite: float | None = None
    mlflow_file: float | None = None
    note: str = ""
    target: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def speedup(self, other: float | None) -> float | None:
        """How many times faster evtrack is than ``other`` (None if either is missing)."""
        if not self.evtrack or not other:
            return None
        return self.evtrack / other if self.unit == "/s" else other / self.evtrack


def fmt_value(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit == "/s":
        for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
            if value >= scale:
                return f"{value / scale:.3g} {suffix}/s"
        return f"{value:.3g} /s"
    if value < 1e-3:
        return f"{value * 1e6:.0f} µs"
    if value < 1:
        return f"{value * 1e3:.3g} ms"
    return f"{value:.3g} s"


def fmt_ratio(row: Row) -> str:
    parts = []
    for other in (row.mlflow_sqlite, row.mlflow_file):
        r = row.speedup(other)
        parts.append("—" if r is None else (f"{r:,.0f}×" if r >= 10 else f"{r:.2g}×"))
    return " / ".join(parts) if any(p != "—" for p in parts) else ""


def print_table(rows: list[Row], title: str = "") -> None:
    """The figures as a Markdown table (readable in a terminal, pasteable into docs)."""
    header = [
        "operation",
        "evtrack",
        "MLflow sqlite",
        "MLflow file",
        "evtrack speed-up (sqlite / file)",
    ]
    body = [
        [
            r.operation + (f" [target {r.target}]" if r.target else ""),
            fmt_value(r.evtrack, r.unit),
            fmt_value(r.mlflow_sqlite, r.unit),
            fmt_value(r.mlflow_file, r.unit),
            fmt_ratio(r),
        ]
        for r in rows
    ]
    widths = [
        max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(header)
    ]
    if title:
        print(f"\n{title}\n")
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for b in body:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(b, widths, strict=True)) + " |")
    notes = [(r.operation, r.note) for r in rows if r.note]
    if notes:
        print()
        for op, note in notes:
            print(f"- {op}: {note}")
    sys.stdout.flush()


def emit(rows: list[Row], args: argparse.Namespace, title: str) -> None:
    print_table(rows, title)
    if args.json:
        with open(args.json, "a") as f:
            for r in rows:
                f.write(json.dumps(asdict(r)) + "\n")


def load_rows(path: str) -> list[Row]:
    rows = []
    with open(path) as f:
        for line in f:
            if line.strip():
                rows.append(Row(**json.loads(line)))
    return rows


# -- timing ----------------------------------------------------------------------------


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def summary(times: list[float]) -> str:
    """``best 0.12 s, median 0.15 s of 3`` — the best is the figure we report: on a shared
    2-core machine the slower repeats measure the neighbours, not the code."""
    return (
        f"best {fmt_value(min(times), 's')}, median {fmt_value(statistics.median(times), 's')}"
        f" of {len(times)}"
    )


def log(msg: str) -> None:
    print(f"  {msg}", flush=True)


# -- environment -----------------------------------------------------------------------


class TempRoot:
    """A temporary folder for the stores of one benchmark (never ./evruns or ./mlruns)."""

    def __init__(self, name: str, keep: bool) -> None:
        self.path = Path(tempfile.mkdtemp(prefix=f"evtrack-bench-{name}-"))
        self.keep = keep

    def sub(self, name: str) -> Path:
        p = self.path / name
        p.mkdir(parents=True, exist_ok=True)
        return p

    def __enter__(self) -> TempRoot:
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.keep:
            print(f"  (stores kept in {self.path})")
        else:
            shutil.rmtree(self.path, ignore_errors=True)


def compaction_module():
    """``evtrack.store.log.compaction`` if this evtrack has it, else None."""
    try:
        from evtrack.store.log import compaction
    except ImportError:
        return None
    return compaction if hasattr(compaction, "compact_experiment") else None


def machine() -> str:
    import platform

    return (
        f"{os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}"
        f" {platform.release()}"
    )


# -- the MLflow side -------------------------------------------------------------------


def _helper_module():
    """``tests/mlflow_venv.py`` (the venv helper shared with the tests), or None."""
    import importlib.util

    path = REPO / "tests" / "mlflow_venv.py"
    if not path.exists():
        return None
    spec = importlib.util.spec_from_file_location("_evtrack_mlflow_venv", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception:  # noqa: BLE001 - a helper being edited must not stop the evtrack side
        return None
    return module


def mlflow_python(args: argparse.Namespace) -> str | None:
    """The MLflow venv's python, or None (then only evtrack is measured, and we say why)."""
    if args.no_mlflow:
        return None
    helper = _helper_module()
    if helper is None:
        print("  MLflow side skipped: tests/mlflow_venv.py is missing or broken.")
        return None
    path = helper.venv_dir()
    python = helper._python_in(path)
    if (path / helper._MARKER).exists() and python.exists():
        return str(python)
    if args.build_mlflow:
        print(f"  building the MLflow venv at {path} (once; a few minutes)...", flush=True)
        try:
            return str(helper.ensure_mlflow_venv())
        except Exception as exc:  # noqa: BLE001
            print(f"  MLflow side skipped: cannot build the venv: {exc}")
            return None
    print(
        f"  MLflow side skipped: no MLflow venv at {path}. Build it with "
        "`python tests/mlflow_venv.py` or pass --build-mlflow."
    )
    return None


def run_mlflow(
    python: str | None,
    op: str,
    params: dict[str, Any],
    *,
    workdir: Path,
    timeout: float,
    verbose: bool = False,
) -> dict[str, Any]:
    """Run one operation of ``_mlflow_side.py`` in the MLflow venv; its JSON result.

    On failure or timeout the result is ``{"error": "..."}`` (printed by the caller).
    """
    if python is None:
        return {"error": "no MLflow venv"}
    env = dict(os.environ)
    env["MLFLOW_ALLOW_FILE_STORE"] = "true"  # MLflow 3 refuses its file store otherwise
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("PYTHONPATH", None)  # the MLflow venv sees nothing of evtrack's checkout
    env["PYTHONWARNINGS"] = "ignore"
    try:
        proc = subprocess.run(
            [python, str(MLFLOW_SIDE), op, json.dumps(params)],
            cwd=workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    if verbose and proc.stderr:
        sys.stderr.write(proc.stderr)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        return {"error": f"exit {proc.returncode}: " + " | ".join(tail)}
    return json.loads(lines[-1])


def mlflow_version(python: str | None) -> str | None:
    if python is None:
        return None
    try:
        out = subprocess.run(
            [python, "-c", "import importlib.metadata as m; print(m.version('mlflow'))"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def report_error(label: str, result: dict[str, Any]) -> bool:
    """Print a side's error; True if there was one."""
    if "error" in result:
        log(f"{label}: not measured ({result['error']})")
        return True
    return False
