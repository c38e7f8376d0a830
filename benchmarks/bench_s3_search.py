"""Filtered search over 10,000 runs on S3 (moto's server on 127.0.0.1), with storage requests.

The store: 9,000 runs written in bulk, compacted and collected (``evtrack compact`` +
``gc``), then 1,000 runs made through the API against S3 itself (``create_run`` +
``log_batch`` of 3 params, 3 metrics, 2 tags + ``set_terminated``, as a sweep does).
Each search is ``MlflowClient(uri).search_runs([exp], "metrics.rmse < 0.5 and
params.alpha = '0.3'")`` in a fresh process: "first search ever" is its first call
(imports included: the process starts with only ``import evtrack`` done) with no saved
run index (``EVTRACK_INDEX_CACHE_DIR=off``); "cold with the saved index" the same in a
later fresh process, which starts from the index the earlier one saved (what every
search on a machine meets after its first); "warm" the best of the next two calls. Every request the process makes to S3 is counted by operation.

Scenarios:

* **uncompacted**: the 1,000 API runs written with ``auto_compact`` off, so all of
  them are ended but not compacted (two JSONL segments each);
* **batched**: the same 1,000 runs written with the default settings, where the writing
  process compacts ended runs in batches (``auto_compact_batch``);
* **compacted**: after ``evtrack compact`` of the experiment; **compacted+gc**: then
  ``evtrack gc`` (grace 0 here), so listings no longer hold the covered segments.

moto serves about 230 requests/s here whatever the client's concurrency (it is one
Python process), so request counts decide the cold figures; a real S3 bucket answers
many GETs in parallel.

    python benchmarks/bench_s3_search.py [--quick] [--runs N] [--api-runs N]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

from _common import Row, TempRoot, emit, log, parser  # noqa: E402
from _workload import SEARCH_FILTER, expected_matches  # noqa: E402

# A fresh process: count S3 requests by operation, then search three times.
_SEARCH = r"""
import collections, json, sys, time
t0 = time.perf_counter()
import evtrack
import s3fs.core

counts = collections.Counter()
_real = s3fs.core.S3FileSystem._call_s3

async def _counted(self, method, *args, **kwargs):
    counts[getattr(method, "__name__", str(method))] += 1
    return await _real(self, method, *args, **kwargs)

s3fs.core.S3FileSystem._call_s3 = _counted
uri, experiment_id, flt = sys.argv[1], sys.argv[2], sys.argv[3]
client = evtrack.MlflowClient(uri)
times, requests = [], []
for _ in range(3):
    counts.clear()
    t = time.perf_counter()
    runs = client.search_runs([experiment_id], flt, max_results=10_000)
    times.append(time.perf_counter() - t)
    requests.append(dict(counts))
print(json.dumps({"cold": times[0], "warm": min(times[1:]), "matches": len(runs),
                  "requests_cold": requests[0], "requests_warm": requests[-1],
                  "process": time.perf_counter() - t0}))
"""


def _api_runs(uri: str, experiment_id: str, start: int, n: int, env: dict[str, str]) -> float:
    """Runs start..start+n-1 through the API in a child process; runs/s."""
    code = r"""
import sys, time
sys.path.insert(0, sys.argv[1])
import evtrack
from bench_search_runs import _api_runs
client = evtrack.MlflowClient(sys.argv[2])
start, n = int(sys.argv[4]), int(sys.argv[5])
print(n / sum(_api_runs(client, sys.argv[3], n, start)))
"""
    here = os.path.dirname(os.path.abspath(__file__))
    out = subprocess.run(
        [sys.executable, "-c", code, here, uri, experiment_id, str(start), str(n)],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=1800,
    )
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    return float(out.stdout.strip().splitlines()[-1])


def _search(uri: str, experiment_id: str, index_cache: str) -> dict:
    """A fresh process's searches; ``index_cache``: its saved run indexes (or ``off``)."""
    out = subprocess.run(
        [sys.executable, "-c", _SEARCH, uri, experiment_id, SEARCH_FILTER],
        capture_output=True,
        text=True,
        env={**os.environ, "EVTRACK_INDEX_CACHE_DIR": index_cache},
        timeout=900,
    )
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def _searches(uri: str, experiment_id: str, root: str) -> dict:
    """The first search ever (no saved index), then a fresh process with the index the
    first one saved (what every later process on this machine meets)."""
    first = _search(uri, experiment_id, "off")
    cache = os.path.join(root, f"index-{uuid.uuid4().hex[:8]}")
    _search(uri, experiment_id, cache)
    again = _search(uri, experiment_id, cache)
    first.update(
        saved_cold=again["cold"], requests_saved=again["requests_cold"], uncovered=None, rate=None
    )
    return first


def _requests(counts: dict[str, int]) -> str:
    total = sum(counts.values())
    parts = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    return f"{total} ({parts})" if parts else "0"


def _uncovered(uri: str, experiment_id: str) -> int:
    from evtrack.store.log.layout import Store
    from evtrack.store.log.snapshot import take_snapshot

    return len(take_snapshot(Store(uri), experiment_id).segments)


def _base_store(root: str, uri: str, n_bulk: int) -> str:
    """n_bulk runs written locally in bulk, compacted, collected, uploaded to ``uri``."""
    import s3fs
    from bench_search_runs import _bulk

    import evtrack
    from evtrack.store.log.compaction import compact_experiment
    from evtrack.store.log.layout import Store
    from evtrack.store.log.maintenance import gc

    local = os.path.join(root, "base")
    client = evtrack.MlflowClient(local)
    experiment_id = client.create_experiment("sweep")
    t = time.perf_counter()
    _bulk(local, experiment_id, 0, n_bulk)
    store = Store(local)
    compact_experiment(store, experiment_id)
    gc(store, grace_seconds=0)
    log(
        f"  {n_bulk:,} bulk runs written, compacted and collected in {time.perf_counter() - t:.1f} s"
    )
    t = time.perf_counter()
    s3fs.S3FileSystem().put(local + "/", uri[len("s3://") :], recursive=True)
    log(f"  uploaded to {uri} in {time.perf_counter() - t:.1f} s")
    return experiment_id


def main(argv: list[str] | None = None) -> list[Row]:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, help="runs in the store (default 10,000; --quick 2,000)")
    p.add_argument("--api-runs", type=int, help="runs made through the API (default 1,000)")
    args = p.parse_args(argv)
    n_runs = args.runs or (2_000 if args.quick else 10_000)
    n_api = args.api_runs or (200 if args.quick else 1_000)
    n_bulk = n_runs - n_api

    from s3_server import configure_s3fs, start_server

    server = start_server()
    rows: list[Row] = []
    try:
        configure_s3fs(server.endpoint)
        import s3fs

        s3fs.S3FileSystem().mkdir(server.bucket)
        print(
            f"S3 search: {n_runs:,} runs on moto at 127.0.0.1, {n_api:,} of them made through"
            f" the API last; filter {SEARCH_FILTER!r}, {expected_matches(n_runs)} expected matches"
        )
        with TempRoot("s3-search", args.keep) as root:
            results: dict[str, dict] = {}
            for scenario, env in (
                ("uncompacted", {"EVTRACK_AUTO_COMPACT": "false"}),
                ("batched", {}),
            ):
                uri = server.uri(scenario)
                experiment_id = _base_store(str(root.sub(scenario)), uri, n_bulk)
                rate = _api_runs(uri, experiment_id, n_bulk, n_api, env)
                left = _uncovered(uri, experiment_id)
                log(
                    f"  {scenario}: {n_api:,} API runs at {rate:,.0f} runs/s; {left} segments uncovered"
                )
                r = _searches(uri, experiment_id, str(root.path))
                r.update(rate=rate, uncovered=left)
                results[scenario] = r
                if scenario == "uncompacted":
                    from evtrack.store.log.compaction import compact_experiment
                    from evtrack.store.log.layout import Store
                    from evtrack.store.log.maintenance import gc

                    compact_experiment(Store(uri), experiment_id)
                    r2 = _searches(uri, experiment_id, str(root.path))
                    r2.update(uncovered=_uncovered(uri, experiment_id))
                    results["compacted"] = r2
                    # what a daily `evtrack gc` leaves (grace 0 here, 1 h by default):
                    # the covered segments no longer lengthen every listing
                    gc(Store(uri), grace_seconds=0)
                    r3 = _searches(uri, experiment_id, str(root.path))
                    r3.update(uncovered=_uncovered(uri, experiment_id))
                    results["compacted+gc"] = r3
            for scenario, r in results.items():
                log(
                    f"{scenario:12s} first ever {r['cold']:.3f} s (requests"
                    f" {_requests(r['requests_cold'])}), fresh process with the saved index"
                    f" {r['saved_cold']:.3f} s (requests {_requests(r['requests_saved'])}),"
                    f" warm {r['warm']:.3f} s (requests {_requests(r['requests_warm'])}),"
                    f" {r['matches']} matches, {r['uncovered']} segments uncovered"
                )
                rows.append(
                    Row(
                        f"S3 search {n_runs:,} runs, {scenario}: first search ever",
                        "s",
                        r["cold"],
                        note=f"fresh process, imports included, no saved index;"
                        f" {_requests(r['requests_cold'])} requests",
                        target="< 2 s" if scenario == "uncompacted" else "",
                    )
                )
                rows.append(
                    Row(
                        f"S3 search {n_runs:,} runs, {scenario}: cold with the saved index",
                        "s",
                        r["saved_cold"],
                        note=f"fresh process, imports included;"
                        f" {_requests(r['requests_saved'])} requests",
                        target="< 2 s" if scenario == "uncompacted" else "",
                    )
                )
                rows.append(
                    Row(
                        f"S3 search {n_runs:,} runs, {scenario}: warm",
                        "s",
                        r["warm"],
                        note=f"{_requests(r['requests_warm'])} requests",
                        target="< 0.5 s",
                    )
                )
                if r.get("rate"):
                    rows.append(Row(f"S3 sweep runs through the API ({scenario})", "/s", r["rate"]))
    finally:
        server.process.terminate()
    emit(rows, args, "S3 search (moto on loopback)")
    return rows


if __name__ == "__main__":
    main()
