"""Building an environment once: a locked cache entry, build commands, progress, a log.

:func:`cached_build` is the one path every manager that builds something (uv, virtualenv,
conda) goes through:

1. ``envs/<kind>-<hash>/`` with its marker is a finished build: used as it is.
2. Otherwise, under the entry's lock (a second run building the same environment waits,
   then finds it finished), any half-built folder is removed and ``build(folder, step)`` runs.
3. Each ``step(argv)`` runs a command with its output appended to ``<folder>.log``; while it
   runs, a one-line progress display (spinner, elapsed time, the command's last line) is
   redrawn on a terminal, or a line per step is printed when the output is not a terminal.
4. Success writes the marker last. Any failure or interrupt removes the folder, so nothing
   half-created is left; the log stays, to be kept with the run.
"""

from __future__ import annotations

import collections
import json
import os
import shlex
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import IO

from evtrack.errors import EvtrackError
from evtrack.projects.cache import MARKER, cache_dir, locked

__all__ = ["BuildFailed", "Step", "cached_build", "run_step"]

Step = Callable[..., None]

_SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"


class BuildFailed(EvtrackError):
    """An environment build command failed; the message ends with the log's last lines,
    ``log_path`` is the whole build log (kept with the run)."""

    log_path: str | None = None


def cached_build(
    kind: str,
    key: str,
    what: str,
    build: Callable[[str, Step], None],
    out: IO[str],
) -> tuple[str, str]:
    """``(folder, log path)`` of the environment ``kind-key``, built by ``build`` if needed."""
    root = cache_dir("envs")
    folder = os.path.join(root, f"{kind}-{key}")
    log_path = folder + ".log"
    if os.path.isfile(os.path.join(folder, MARKER)):
        return folder, log_path
    with locked(folder + ".lock", what, out):
        if os.path.isfile(os.path.join(folder, MARKER)):  # built while we waited
            return folder, log_path
        shutil.rmtree(folder, ignore_errors=True)  # a build that died halfway
        started = time.monotonic()
        with open(log_path, "w", encoding="utf-8") as log:
            log.write(f"# building {what} in {folder}\n")
            log.flush()
            print(f"=== Building {what} ===", file=out, flush=True)
            try:
                build(folder, lambda argv, **kw: run_step(argv, log, out, what, **kw))
                seconds = time.monotonic() - started
                with open(os.path.join(folder, MARKER), "w") as f:
                    json.dump({"what": what, "seconds": round(seconds, 3)}, f)
            except BaseException as exc:
                shutil.rmtree(folder, ignore_errors=True)
                log.write("# build failed; the environment folder was removed\n")
                if isinstance(exc, BuildFailed):
                    exc.log_path = log_path
                raise
        print(f"=== Built {what} in {seconds:.1f} s ===", file=out, flush=True)
    return folder, log_path


def run_step(
    argv: Sequence[str],
    log: IO[str],
    out: IO[str],
    what: str,
    *,
    cwd: str | None = None,
    env: Mapping[str, str] | None = None,
) -> None:
    """Run one build command, its output into ``log``, a progress line on ``out``."""
    log.write(f"$ {shlex.join(argv)}\n")
    log.flush()
    try:
        proc = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=dict(env) if env is not None else None,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
        )
    except FileNotFoundError:
        raise BuildFailed(f"Cannot run {argv[0]}: it is not installed.") from None
    progress = _Progress(out, what)
    try:
        assert proc.stdout is not None
        with proc.stdout:
            tail = collections.deque(_lines(proc.stdout, log, progress), maxlen=15)
        code = proc.wait()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        progress.stop()
    if code != 0:
        shown = "\n".join(t for t in tail if t)
        raise BuildFailed(
            f"Building {what} failed: `{shlex.join(argv)}` exited with status {code}.\n{shown}"
        )


def _lines(stream: IO[str], log: IO[str], progress: _Progress) -> Iterator[str]:
    for line in stream:
        log.write(line)
        log.flush()
        progress.last_line = line.strip()
        yield line.rstrip()


class _Progress:
    """A redrawn status line on a terminal; silence (the step lines suffice) elsewhere."""

    def __init__(self, out: IO[str], what: str) -> None:
        self.out, self.what = out, what
        self.last_line = ""
        self._started = time.monotonic()
        self._done = threading.Event()
        self._tty = bool(getattr(out, "isatty", lambda: False)())
        self._thread = None
        if self._tty:
            self._thread = threading.Thread(target=self._draw, daemon=True)
            self._thread.start()

    def _draw(self) -> None:
        width = shutil.get_terminal_size((100, 20)).columns - 1
        frame = 0
        while not self._done.wait(0.1):
            elapsed = time.monotonic() - self._started
            text = f"{_SPINNER[frame % len(_SPINNER)]} {self.what} {elapsed:5.1f}s {self.last_line}"
            self.out.write("\r" + text[:width].ljust(width))
            self.out.flush()
            frame += 1

    def stop(self) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join()
            self.out.write("\r" + " " * (shutil.get_terminal_size((100, 20)).columns - 1) + "\r")
            self.out.flush()
