"""Batch scoring (``evtrack models predict``): a file in, predictions out, streamed.

Parquet is read one record batch at a time (``batch_rows`` rows) and CSV in chunks,
so a file larger than memory scores with memory bounded by one batch; each batch's
predictions are written before the next is read. JSON input is one request body (any
format the server takes) and is read whole. Output: ``{"predictions": [...]}`` JSON
(written incrementally) or CSV with a ``predictions`` column (one column per output
column when the model returns a table).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from typing import IO, Any

from evtrack.errors import InvalidParameterValue

__all__ = ["predict_file"]


def _input_kind(path: str, content_type: str | None) -> str:
    if content_type:
        if content_type not in ("json", "csv", "parquet"):
            raise InvalidParameterValue("--content-type must be json, csv or parquet.")
        return content_type
    ext = os.path.splitext(path)[1].lower().lstrip(".")
    if ext in ("json", "csv", "parquet"):
        return ext
    if ext == "pq":
        return "parquet"
    raise InvalidParameterValue(
        f"Cannot tell the format of {path!r} from its name: use a .json, .csv or .parquet "
        "file, or pass --content-type."
    )


def _batches(path: str, kind: str, batch_rows: int) -> Iterator[tuple[Any, dict | None]]:
    from evtrack.models import payload

    if kind == "parquet":
        import pyarrow.parquet as pq

        with pq.ParquetFile(path) as pf:
            for batch in pf.iter_batches(batch_size=batch_rows):
                yield batch.to_pandas(), None
    elif kind == "csv":
        import pandas as pd

        with pd.read_csv(path, chunksize=batch_rows) as reader:
            for chunk in reader:
                yield chunk, None
    else:
        with open(path, "rb") as f:
            body = f.read()
        obj = payload.loads(body)
        # a bare frame in split orient is what MLflow 1.x files hold
        media = {"format": "pandas-split"} if isinstance(obj, dict) and "data" in obj else None
        if isinstance(obj, list) and obj and isinstance(obj[0], dict):
            media = {"format": "pandas-records"}
        yield payload.parse_json(body, media)


class _JsonWriter:
    def __init__(self, out: IO[str]) -> None:
        self.out, self.first = out, True
        out.write('{"predictions": [')

    def write(self, pred: Any) -> None:
        from evtrack.models.payload import encode_json

        text = encode_json(pred).decode()
        # a list's items join the running list; anything else is one more item
        inner = text[1:-1] if text.startswith("[") else text
        if inner.strip():
            self.out.write(("" if self.first else ", ") + inner)
            self.first = False

    def close(self) -> None:
        self.out.write("]}\n")


class _CsvWriter:
    def __init__(self, out: IO[str]) -> None:
        self.out, self.header = out, True

    def write(self, pred: Any) -> None:
        import pandas as pd

        if isinstance(pred, pd.DataFrame):
            frame = pred
        else:
            values = getattr(pred, "tolist", lambda: list(pred))()
            frame = pd.DataFrame({"predictions": values})
        frame.to_csv(self.out, header=self.header, index=False)
        self.header = False

    def close(self) -> None:
        pass


def predict_file(
    model_uri: str,
    input_path: str,
    output_path: str | None = None,
    content_type: str | None = None,
    output_format: str = "json",
    batch_rows: int = 65536,
    tracking_uri: str | None = None,
) -> int:
    """Score ``input_path`` with the model; return the number of rows scored."""
    from evtrack.models.pyfunc import load_model
    from evtrack.models.uri import download_model

    if not os.path.exists(input_path):
        raise InvalidParameterValue(f"Input file {input_path!r} does not exist.")
    if output_format not in ("json", "csv"):
        raise InvalidParameterValue("--output-format must be json or csv.")
    kind = _input_kind(input_path, content_type)
    model = load_model(download_model(model_uri, tracking_uri=tracking_uri))
    out = open(output_path, "w") if output_path else sys.stdout  # noqa: SIM115
    rows = 0
    try:
        writer = _JsonWriter(out) if output_format == "json" else _CsvWriter(out)
        for data, params in _batches(input_path, kind, batch_rows):
            writer.write(model.predict(data, params))
            rows += len(data) if hasattr(data, "__len__") else 1
        writer.close()
    finally:
        if output_path:
            out.close()
        else:
            out.flush()
    return rows
