"""`evtrack models serve` vs `mlflow models serve` on the same saved model, same run.

    python benchmarks/bench_serving.py [--quick] [--no-mlflow] [--seconds 5] [--workers 1]

1. single-row ``dataframe_split`` requests/s with 8 concurrent keep-alive clients
   (one asyncio process, raw HTTP/1.1, so the load generator is cheap), p50/p99 latency;
2. one 100,000-row ``dataframe_split`` request: rows/s (median of a few);
3. ``evtrack models predict`` on a 1 M-row Parquet file: rows/s and peak RSS.

The model is the wine ElasticNet saved once by evtrack (skops); MLflow serves that same
folder from its venv with ``--env-manager local`` (MLflow 3.17 needs
``MLFLOW_ALLOW_PICKLE_DESERIALIZATION=true`` for any sklearn model). Both servers run
with the same worker count. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
MLFLOW_VENV = Path.home() / ".cache" / "evtrack" / "mlflow-venv-3.17.2"
WINE = REPO / "examples" / "sklearn_elasticnet_wine" / "wine-quality.csv"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(port: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/ping")
            if conn.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("server not ready")


async def _client(port: int, request: bytes, stop_at: float, latencies: list[float]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.perf_counter() < stop_at:
            t0 = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            body = await reader.readexactly(length)
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(head + body)
            latencies.append(time.perf_counter() - t0)
    finally:
        writer.close()


def load(port: int, body: bytes, seconds: float, clients: int = 8) -> dict:
    request = (
        b"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )

    async def main() -> list[float]:
        latencies: list[float] = []
        warm_until = time.perf_counter() + 0.5
        await asyncio.gather(*(_client(port, request, warm_until, []) for _ in range(clients)))
        stop_at = time.perf_counter() + seconds
        await asyncio.gather(*(_client(port, request, stop_at, latencies) for _ in range(clients)))
        return latencies

    lat = sorted(asyncio.run(main()))
    return {
        "req_s": len(lat) / seconds,
        "p50_ms": 1000 * lat[len(lat) // 2],
        "p99_ms": 1000 * lat[int(len(lat) * 0.99)],
    }


def big_request(port: int, body: bytes, rows: int, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        t0 = time.perf_counter()
        conn.request("POST", "/invocations", body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        data = resp.read()
        times.append(time.perf_counter() - t0)
        if resp.status != 200:
            raise RuntimeError(data[:500])
        conn.close()
    return rows / statistics.median(times)


def start(cmd: list[str], port: int, env: dict) -> subprocess.Popen:
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_ready(port, proc)
    return proc


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="shorter runs, 200k-row predict file")
    p.add_argument("--no-mlflow", action="store_true")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--workers", type=int, default=1)
    args = p.parse_args()
    seconds = 2.0 if args.quick else args.seconds
    predict_rows = 200_000 if args.quick else 1_000_000

    import numpy as np
    import pandas as pd
    from sklearn.linear_model import ElasticNet

    import evtrack

    data = pd.read_csv(WINE)
    x, y = data.drop(columns=["quality"]), data["quality"]
    tmp = Path(tempfile.mkdtemp(prefix="evtrack-bench-serving-"))
    model_path = tmp / "wine"
    evtrack.sklearn.save_model(
        ElasticNet(alpha=0.5, l1_ratio=0.5).fit(x, y), str(model_path), input_example=x.head(3)
    )
    one = json.dumps(
        {"dataframe_split": json.loads(x.head(1).to_json(orient="split", index=False))}
    ).encode()
    big_rows = 100_000
    big = x.sample(big_rows, replace=True, random_state=0)
    big_body = json.dumps(
        {"dataframe_split": json.loads(big.to_json(orient="split", index=False))}
    ).encode()
    repeats = 2 if args.quick else 3

    env = {**os.environ, "PYTHONPATH": str(REPO), "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "true"}
    sides = {"evtrack": [sys.executable, "-m", "evtrack.cli", "models", "serve", "-m", str(model_path),
                         "-w", str(args.workers)]}  # fmt: skip
    sides["evtrack+batch"] = [*sides["evtrack"], "--batch-max-size", "64"]
    mlflow_bin = MLFLOW_VENV / "bin" / "mlflow"
    if not args.no_mlflow and mlflow_bin.exists():
        sides["mlflow"] = [str(mlflow_bin), "models", "serve", "-m", str(model_path),
                           "--env-manager", "local", "-w", str(args.workers)]  # fmt: skip
    results: dict[str, dict] = {}
    for name, cmd in sides.items():
        port = free_port()
        side_env = dict(env)
        if name == "mlflow":  # MLflow execs `uvicorn` from PATH: its venv's, not ours
            side_env["PATH"] = f"{MLFLOW_VENV / 'bin'}{os.pathsep}{env.get('PATH', '')}"
            side_env.pop("PYTHONPATH")
        proc = start([*cmd, "-p", str(port)], port, side_env)
        try:
            res = load(port, one, seconds)
            res["big_rows_s"] = big_request(port, big_body, big_rows, repeats)
            results[name] = res
        finally:
            stop(proc)

    print(
        f"single-row dataframe_split, 8 concurrent clients, {seconds:g} s, workers={args.workers}"
    )
    print(f"{'server':14} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'100k-row rows/s':>16}")
    for name, r in results.items():
        print(
            f"{name:14} {r['req_s']:10.0f} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f} {r['big_rows_s']:16.0f}"
        )
    for side in ("evtrack", "evtrack+batch"):
        if "mlflow" not in results:
            break
        e, m = results[side], results["mlflow"]
        print(
            f"{side}/mlflow: {e['req_s'] / m['req_s']:.1f}x req/s, "
            f"p50 {m['p50_ms'] / e['p50_ms']:.1f}x lower, p99 {m['p99_ms'] / e['p99_ms']:.1f}x lower, "
            f"{e['big_rows_s'] / m['big_rows_s']:.1f}x rows/s on 100k rows"
        )

    # batch predict on a large Parquet file
    rng = np.random.default_rng(0)
    frame = x.sample(predict_rows, replace=True, random_state=1).reset_index(drop=True)
    frame += rng.normal(0, 0.01, frame.shape)
    parquet = tmp / "in.parquet"
    frame.to_parquet(parquet, row_group_size=100_000)
    del frame
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "evtrack.cli", "models", "predict", "-m", str(model_path),
         "-i", str(parquet), "-o", str(tmp / "out.json")], env=env,
    )  # fmt: skip
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    # what a process that only imports the same libraries costs: start-up, not scoring
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", "import evtrack.models.pyfunc, evtrack.cli, pandas, pyarrow.parquet, "
         "sklearn.linear_model, skops.io"], env=env, check=True,
    )  # fmt: skip
    startup = time.perf_counter() - t0
    print(
        f"models predict, {predict_rows:,} rows Parquet -> JSON: {predict_rows / elapsed:,.0f} rows/s "
        f"({elapsed:.2f} s wall, of which ~{startup:.2f} s start-up and imports; "
        f"{predict_rows / max(elapsed - startup, 1e-9):,.0f} rows/s after start-up), "
        f"peak RSS {usage.ru_maxrss / 1024:.0f} MiB, exit {proc.returncode}"
    )
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
