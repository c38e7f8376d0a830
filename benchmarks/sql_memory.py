"""What one heavy user SQL query costs an ``evtrack server`` (memory), with and without caps.

    python benchmarks/sql_memory.py [--rows 1000000] [--server-arg=--sql-memory=256MB ...]

Starts a server on a fresh store (loopback), reads its resident memory (VmRSS), sends
one sort-heavy query (``--rows`` strings of ~1 KB, sorted) and one wide answer
(``--answer-rows`` rows of 2 KB), and prints the server's peak memory (VmHWM) and the
answers' status and size. ``--server-arg`` passes options to ``evtrack server``; run it
once with the defaults and once with, e.g., ``--server-arg=--sql-memory=80%%
--server-arg=--sql-max-answer-bytes=1GB`` (or with ``PYTHONPATH`` pointing at an older
checkout) to compare. Bounded: the query is interrupted by the server after 30 s.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from evtrack.server.testing import ServerProcess  # noqa: E402


def _status_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _sql(url: str, query: str) -> tuple[int, int, str]:
    req = urllib.request.Request(
        url + "/api/evtrack/sql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            body = r.read()
            return r.status, len(body), ""
    except urllib.error.HTTPError as e:
        body = e.read()
        return e.code, len(body), json.loads(body).get("message", "")[:90]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--answer-rows", type=int, default=100_000)
    ap.add_argument("--server-arg", action="append", default=[])
    args = ap.parse_args()
    server_args = [a for arg in args.server_arg for a in arg.split("=", 1)]
    heavy = (
        "select max(s) from (select repeat('x', 1000) || i::varchar as s "
        f"from range({args.rows}) t(i) order by s)"
    )
    wide = f"select repeat('y', 2000) as s from range({args.answer_rows})"
    with tempfile.TemporaryDirectory() as tmp:
        srv = ServerProcess(os.path.join(tmp, "store"), server_args)
        url = srv.start()
        assert srv.proc is not None
        pid = srv.proc.pid
        try:
            _sql(url, "select 1")  # warm: imports, views
            rss0 = _status_kib(pid, "VmRSS")
            t0 = time.perf_counter()
            status, size, msg = _sql(url, heavy)
            t1 = time.perf_counter()
            peak = _status_kib(pid, "VmHWM")
            print(f"server args: {' '.join(server_args) or '(defaults)'}")
            print(f"RSS before: {rss0 / 1024:.0f} MiB")
            print(
                f"heavy sort of {args.rows:,} x 1 KB: HTTP {status} in {t1 - t0:.1f} s, "
                f"peak RSS {peak / 1024:.0f} MiB (+{(peak - rss0) / 1024:.0f} MiB) {msg}"
            )
            status, size, msg = _sql(url, wide)
            peak2 = _status_kib(pid, "VmHWM")
            print(
                f"wide answer {args.answer_rows:,} x 2 KB: HTTP {status}, {size / 2**20:.1f} MiB "
                f"sent, peak RSS {peak2 / 1024:.0f} MiB {msg}"
            )
        finally:
            srv.stop()


if __name__ == "__main__":
    main()
