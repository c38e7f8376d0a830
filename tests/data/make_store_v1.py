"""Write ``tests/data/store-v1``: a small store in store format 1, kept in the repository.

``test_store_contract.test_reads_a_store_written_by_format_1`` reads it back, so every
later evtrack must still read what this layout holds. Run this only to recreate the
folder with format 1 (never to "update" it to a newer format: add a new folder then).

    python tests/data/make_store_v1.py
"""

from __future__ import annotations

import math
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

import evtrack
from evtrack.entities import Metric, Param, RunTag

HERE = Path(__file__).resolve().parent
TARGET = HERE / "store-v1"

RUN_A = "a" * 32
RUN_B = "b" * 32


def main() -> None:
    if TARGET.exists():
        shutil.rmtree(TARGET)
    with tempfile.TemporaryDirectory() as artifacts:
        client = evtrack.MlflowClient(str(TARGET))
        exp_id = client.create_experiment(
            "golden", artifact_location=str(Path(artifacts) / "golden"), tags={"team": "qa"}
        )
        client.rename_experiment(exp_id, "golden-renamed")
        run_a = client.create_run(
            exp_id, start_time=1_700_000_000_000, run_name="first", run_id=RUN_A
        )
        assert run_a.info.run_id == RUN_A
        client.log_batch(
            RUN_A,
            metrics=[
                Metric("loss", v, 1_700_000_000_000 + s, s)
                for s, v in enumerate([1.0, 0.5, math.nan, math.inf, -math.inf, 0.25])
            ],
            params=[Param("alpha", "0.5"), Param("layers", "3")],
            tags=[RunTag("stage", "dev")],
        )
        client.set_tag(RUN_A, "stage", "prod")
        client.set_tag(RUN_A, "temp", "x")
        client.delete_tag(RUN_A, "temp")
        client.log_metric_series(
            RUN_A,
            "curve",
            np.arange(1000, dtype=np.float64) / 1000,
            steps=np.arange(1000, dtype=np.int64),
            timestamps=1_700_000_100_000,
        )
        client.log_text(RUN_A, "hello", "notes/hello.txt")
        client.set_terminated(RUN_A, "FINISHED", end_time=1_700_000_200_000)
        client.create_run(exp_id, start_time=1_700_000_300_000, run_name="second", run_id=RUN_B)
        client.log_metric(RUN_B, "loss", 2.0, timestamp=1_700_000_300_001, step=0)
        client.set_terminated(RUN_B, "FAILED", end_time=1_700_000_400_000)
        client.delete_run(RUN_B)
        client.flush()
    for path in sorted(TARGET.rglob("*")):
        print(path.relative_to(HERE))


if __name__ == "__main__":
    sys.exit(main())
