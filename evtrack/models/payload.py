"""Request bodies in, predictions out: every input format the scoring server and
``evtrack models predict`` accept, and the ``{"predictions": ...}`` answer.

JSON bodies follow MLflow 2/3 (exactly one of ``dataframe_split``,
``dataframe_records``, ``instances``, ``inputs``, plus optional ``params``), and the
MLflow 1.x content types ``application/json; format=pandas-split`` and
``format=pandas-records`` whose body is the bare frame. CSV has a header row.
"""

from __future__ import annotations

import io
import json
import re
from types import ModuleType
from typing import Any

from evtrack.errors import BadRequest

__all__ = ["encode_json", "encode_predictions", "parse_csv", "parse_json", "parse_media_type"]

_DATA_KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")
_FORMATS = ("pandas-split", "pandas-records")

_orjson: ModuleType | None
try:  # orjson parses and writes JSON several times faster, numpy arrays included
    import orjson as _orjson
except ImportError:  # pragma: no cover - orjson is in the serve extra
    _orjson = None


def parse_media_type(header: str | None) -> tuple[str, dict[str, str]]:
    """``'application/json; format=pandas-split'`` -> ``('application/json', {'format': ...})``."""
    if not header:
        return "", {}
    main, *rest = header.split(";")
    params = {}
    for item in rest:
        key, _, value = item.partition("=")
        params[key.strip().lower()] = value.strip().strip('"')
    return main.strip().lower(), params


def loads(body: bytes | str) -> Any:
    try:
        if _orjson is not None:
            return _orjson.loads(body)
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"Invalid input: the body is not valid JSON ({exc}).") from None


def _frame_from_split(obj: Any, where: str, schema: Any = None):
    import pandas as pd

    if not isinstance(obj, dict) or "data" not in obj:
        raise BadRequest(
            f"Invalid input: {where} must be an object with 'columns' and 'data', e.g. "
            '{"columns": ["a", "b"], "data": [[1, 2]]}.'
        )
    data, columns = obj["data"], obj.get("columns")
    if not isinstance(data, list) or (columns is not None and not isinstance(columns, list)):
        raise BadRequest(f"Invalid input: 'data' and 'columns' of {where} must be lists.")
    if schema is not None and "index" not in obj:
        from evtrack.models.enforce import numeric_frame

        fast = numeric_frame(columns, data, schema)
        if fast is not None:
            return fast
    if columns is not None:
        bad = [
            i for i, row in enumerate(data) if not isinstance(row, list) or len(row) != len(columns)
        ]
        if bad:
            raise BadRequest(
                f"Invalid input: row {bad[0]} of {where} does not have {len(columns)} values, "
                "one per column."
            )
    try:
        return pd.DataFrame(data, columns=columns, index=obj.get("index"))
    except (ValueError, TypeError) as exc:
        raise BadRequest(f"Invalid input: {where} does not form a table ({exc}).") from None


def _frame_from_records(obj: Any, where: str):
    import pandas as pd

    if not isinstance(obj, list) or not all(isinstance(r, dict) for r in obj):
        raise BadRequest(
            f'Invalid input: {where} must be a list of objects, e.g. [{{"a": 1, "b": 2}}].'
        )
    return pd.DataFrame.from_records(obj)


def _tensor_input(obj: Any, key: str):
    """``instances`` / ``inputs``: a list -> array, a dict -> dict of arrays
    (a list of objects is read as records, as TF Serving's row format)."""
    import numpy as np

    if isinstance(obj, list) and obj and all(isinstance(r, dict) for r in obj):
        import pandas as pd

        frame = pd.DataFrame.from_records(obj)
        return {c: frame[c].to_numpy() for c in frame}
    try:
        if isinstance(obj, dict):
            return {k: np.asarray(v) for k, v in obj.items()}
        return np.asarray(obj)
    except ValueError as exc:
        raise BadRequest(f"Invalid input: '{key}' is not a regular array ({exc}).") from None


_DATA_ARRAY = re.compile(rb'"data"\s*:\s*\[')
_ROW_BREAK = re.compile(rb"\]\s*,\s*\[")
_LARGE = 64 * 1024


def _large_numeric_split(body: bytes | str, fmt: str | None, schema: Any):
    """A large split-orient body of plain numbers for an all-``double`` signature, parsed
    without building a Python float per value: the ``data`` array is cut out of the raw
    bytes and read by Arrow's multi-threaded CSV reader (one row per line), the rest is
    parsed as JSON. Returns None (the caller parses normally) unless every check holds:
    the array holds no strings, the rest of the body is the expected object with that
    array empty, and every row has one value per column."""
    from evtrack.models.enforce import double_columns

    names = double_columns(schema)
    if names is None or not isinstance(body, bytes):
        return None
    match = _DATA_ARRAY.search(body)
    if match is None:
        return None
    start = match.end() - 1
    end = body.find(b"]]", start)
    if end < 0 or b'"' in body[start:end]:
        return None
    rest = loads(body[:start] + b"[]" + body[end + 2 :])
    frame_obj = (
        rest
        if fmt == "pandas-split"
        else rest.get("dataframe_split")
        if isinstance(rest, dict)
        else None
    )
    expected = {"columns", "data"}
    if (
        not isinstance(frame_obj, dict)
        or set(frame_obj) != expected
        or frame_obj["data"] != []
        or frame_obj["columns"] != names
        or (fmt != "pandas-split" and not set(rest) <= {"dataframe_split", "params"})
    ):
        return None
    rows = _ROW_BREAK.sub(b"\n", body[start + 2 : end])
    if b"[" in rows or b"]" in rows:
        return None
    import pyarrow as pa
    import pyarrow.csv as pacsv

    try:
        table = pacsv.read_csv(
            pa.BufferReader(rows),
            read_options=pacsv.ReadOptions(column_names=[str(i) for i in range(len(names))]),
            parse_options=pacsv.ParseOptions(quote_char=False),
            convert_options=pacsv.ConvertOptions(
                column_types={str(i): pa.float64() for i in range(len(names))},
                null_values=["null"],
                strings_can_be_null=False,
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None  # ragged rows, booleans, anything odd: the general path says what
    frame = table.rename_columns(names).to_pandas()
    params = rest.get("params") if fmt != "pandas-split" else None
    return frame, params


def parse_json(
    body: bytes | str, media_params: dict[str, str] | None = None, schema: Any = None
) -> tuple[Any, dict | None]:
    """Parse a JSON request body into (model input, params). With the model's input
    ``schema``, plain numeric frames take a fast path straight to the right dtypes."""
    fmt = (media_params or {}).get("format")
    if schema is not None and len(body) > _LARGE and fmt != "pandas-records":
        fast = _large_numeric_split(body, fmt, schema)
        if fast is not None:
            return fast
    if fmt is not None and fmt not in _FORMATS:
        raise BadRequest(
            f"Invalid input: unknown format={fmt!r} in the Content-Type; use "
            "format=pandas-split, format=pandas-records, or send a JSON object with "
            f"one of {list(_DATA_KEYS)}."
        )
    obj = loads(body)
    if fmt == "pandas-split":
        return _frame_from_split(obj, "the pandas-split body", schema), None
    if fmt == "pandas-records":
        return _frame_from_records(obj, "the pandas-records body"), None
    if not isinstance(obj, dict):
        raise BadRequest(
            f"Invalid input: the JSON body must be an object with one of {list(_DATA_KEYS)} "
            '(e.g. {"dataframe_split": {"columns": [...], "data": [[...]]}}).'
        )
    keys = [k for k in _DATA_KEYS if k in obj]
    unknown = [k for k in obj if k not in _DATA_KEYS and k != "params"]
    if len(keys) != 1 or unknown:
        found = keys + unknown
        raise BadRequest(
            f"Invalid input: the JSON object must have exactly one of {list(_DATA_KEYS)} "
            f"(and optionally 'params'); it has {found}."
        )
    params = obj.get("params")
    if params is not None and not isinstance(params, dict):
        raise BadRequest("Invalid input: 'params' must be a JSON object of name: value.")
    key = keys[0]
    if key == "dataframe_split":
        return _frame_from_split(obj[key], "'dataframe_split'", schema), params
    if key == "dataframe_records":
        return _frame_from_records(obj[key], "'dataframe_records'"), params
    return _tensor_input(obj[key], key), params


def parse_csv(body: bytes | str):
    import pandas as pd

    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    try:
        return pd.read_csv(io.StringIO(text))
    except (ValueError, pd.errors.ParserError) as exc:
        raise BadRequest(f"Invalid input: the body is not CSV with a header row ({exc}).") from None


def to_jsonable(pred: Any) -> Any:
    """Predictions as JSON-ready Python (a frame becomes records, as MLflow does)."""
    import numpy as np

    if hasattr(pred, "to_dict") and hasattr(pred, "columns"):
        return pred.to_dict(orient="records")
    if hasattr(pred, "tolist") and not isinstance(pred, np.ndarray):  # Series
        return pred.tolist()
    if isinstance(pred, np.ndarray):
        return pred.tolist()
    if isinstance(pred, np.generic):
        return pred.item()
    if isinstance(pred, dict):
        return {k: to_jsonable(v) for k, v in pred.items()}
    if isinstance(pred, (list, tuple)):
        return [to_jsonable(v) for v in pred]
    return pred


def encode_json(value: Any) -> bytes:
    """Any prediction as JSON bytes. With orjson, NaN and infinity become null (strict
    JSON has neither); the stdlib fallback writes ``NaN`` as MLflow does."""
    import numpy as np

    if _orjson is not None:
        if isinstance(value, np.ndarray) and value.dtype.kind in "fiub":
            return _orjson.dumps(value, option=_orjson.OPT_SERIALIZE_NUMPY)
        return _orjson.dumps(to_jsonable(value), option=_orjson.OPT_SERIALIZE_NUMPY)
    return json.dumps(to_jsonable(value), default=str).encode()


def encode_predictions(pred: Any) -> bytes:
    """``{"predictions": ...}`` as bytes."""
    return b'{"predictions": ' + encode_json(pred) + b"}"
