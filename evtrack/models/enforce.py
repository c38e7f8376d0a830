"""Schema enforcement: make a request's input match the model's signature, or say
exactly what is wrong (MLflow's ``_enforce_schema``, with its error wording).

Column signatures: a missing required column, a column the signature does not have,
or a value that cannot be converted without loss is refused with
INVALID_PARAMETER_VALUE. MLflow ignores extra columns with a log line; evtrack refuses
them, because a misspelt column name otherwise turns into a silently missing feature.
Integers given for a ``double`` column are converted when exact (below 2**53), since
JSON has one number type and the classic curl sends ``45`` for ``45.0``.
Tensor signatures: the dtype is cast when safe and the fixed dimensions are checked.
"""

from __future__ import annotations

from typing import Any

from evtrack.errors import InvalidParameterValue
from evtrack.models.signature import ColSpec, ModelSignature, Schema, TensorSpec

__all__ = ["double_columns", "enforce_params", "enforce_schema", "numeric_frame"]

_NUMPY = {
    "boolean": "bool",
    "integer": "int32",
    "long": "int64",
    "float": "float32",
    "double": "float64",
}
_EXACT_FLOAT = 2**53


def _convert_column(values: Any, spec: ColSpec, name: Any):
    """One column converted to the spec's type, or an error naming the column."""
    import numpy as np
    import pandas as pd

    kind = values.dtype.kind
    t = spec.type
    if t == "object":  # nested MLflow types: passed through, not checked
        return values
    if kind == "O" and t not in ("string", "binary"):
        values = values.infer_objects()
        if values.dtype.kind == "O" and values.isna().all():  # JSON nulls only: missing numbers
            values = values.astype("float64")
        kind = values.dtype.kind
    if t == "string":
        if kind in "OUT" or str(values.dtype) in ("string", "str"):
            bad = [v for v in values if v is not None and not isinstance(v, str)]
            if not bad:
                return values
        raise _incompatible(name, values.dtype, "string")
    if t == "binary":
        if kind in "OS" and all(isinstance(v, (bytes, str)) or v is None for v in values):
            return values
        raise _incompatible(name, values.dtype, "bytes")
    if t == "datetime":
        try:
            return pd.to_datetime(values)
        except (ValueError, TypeError):
            raise _incompatible(name, values.dtype, "datetime64[ns]") from None
    target = np.dtype(_NUMPY[t])
    if values.dtype == target:
        return values
    if kind == target.kind and values.dtype.itemsize <= target.itemsize:
        return values.astype(target)
    if kind == "u" and target.kind == "i" and values.dtype.itemsize < target.itemsize:
        return values.astype(target)
    if kind in "iu" and target.kind == "f":
        if values.dtype.itemsize <= 4 or (values.abs() <= _EXACT_FLOAT).all():
            return values.astype(target)
    if kind == "f" and target.kind == "f":  # float64 -> float32: JSON numbers are doubles
        return values.astype(target)
    if kind == "i" and target.kind == "i":
        info = np.iinfo(target)
        if len(values) == 0 or (values.min() >= info.min and values.max() <= info.max):
            return values.astype(target)
    hint = ""
    if kind == "f" and target.kind == "i" and values.isna().any():
        hint = (
            " The column has missing values (NaN), which integer columns cannot hold; "
            "fill them or declare the column as double in the signature."
        )
    raise _incompatible(name, values.dtype, target, hint)


def _incompatible(name: Any, got: Any, want: Any, hint: str = "") -> InvalidParameterValue:
    return InvalidParameterValue(
        f"Incompatible input types for column {name}. Can not safely convert {got} to {want}.{hint}"
    )


def _enforce_columns(data: Any, schema: Schema):
    import numpy as np
    import pandas as pd

    # a Schema's inputs are all columns or all tensors (Schema checks); this one's are columns
    specs = [s for s in schema.inputs if isinstance(s, ColSpec)]
    names = schema.input_names()
    if isinstance(data, dict):
        try:
            data = pd.DataFrame({k: np.atleast_1d(v) for k, v in data.items()})
        except ValueError as exc:
            raise InvalidParameterValue(
                f"The input columns have different lengths ({exc})."
            ) from None
    elif isinstance(data, np.ndarray):
        if data.ndim == 1 and len(specs) == 1:
            data = data.reshape(-1, 1)
        if data.ndim != 2 or data.shape[1] != len(specs):
            raise InvalidParameterValue(
                f"The input array has shape {list(data.shape)}, but the model expects "
                f"{len(specs)} columns {names}: send rows of {len(specs)} values or name them "
                "with dataframe_split."
            )
        data = pd.DataFrame(data, columns=names if schema.has_input_names() else None)
    elif isinstance(data, pd.Series):
        data = data.to_frame()
    elif isinstance(data, list):
        data = pd.DataFrame(data)
    if not isinstance(data, pd.DataFrame):
        raise InvalidParameterValue(
            f"The model expects a table with columns {names}, not a {type(data).__name__}."
        )
    if not schema.has_input_names():
        if data.shape[1] != len(specs):
            raise InvalidParameterValue(
                f"The model expects {len(specs)} unnamed columns, the input has {data.shape[1]}."
            )
        out = {col: _convert_column(data[col], s, i) for i, (col, s) in enumerate(zip(data, specs))}
        return pd.DataFrame(out, index=data.index)
    if list(data.columns) == names:
        dtypes = data.dtypes.tolist()
        if all(s.type in _NUMPY and d == _NUMPY[s.type] for s, d in zip(specs, dtypes)):
            return data  # already exactly what the signature says
    present = set(data.columns)
    required = [s.name for s in specs if s.required]
    missing = [n for n in required if n not in present]
    extra = [c for c in data.columns if c not in set(names)]
    if missing:
        note = f" Note that there were extra inputs: {extra}." if extra else ""
        raise InvalidParameterValue(f"Model is missing inputs {missing}.{note}")
    if extra:
        raise InvalidParameterValue(
            f"The input has columns the model's signature does not have: {extra}. "
            f"The model takes {names}; remove the others or fix their spelling."
        )
    out = {}
    for spec in specs:
        if spec.name in present:
            out[spec.name] = _convert_column(data[spec.name], spec, repr(spec.name))
    frame = pd.DataFrame(out, index=data.index)
    if list(frame.columns) != list(data.columns) or any(
        frame[c].dtype != data[c].dtype for c in frame
    ):
        return frame
    return data


def _enforce_tensor(value: Any, spec: TensorSpec, name: str):
    import numpy as np

    try:
        arr = np.asarray(value)
    except ValueError as exc:
        raise InvalidParameterValue(f"Input {name} is not a regular array ({exc}).") from None
    want = np.dtype(spec.dtype)
    if arr.dtype != want:
        safe = np.can_cast(arr.dtype, want, casting="same_kind") or (
            arr.dtype.kind in "iu" and want.kind == "f"
        )
        if not safe:
            raise InvalidParameterValue(
                f"dtype of input {arr.dtype} does not match expected dtype {want} for {name}."
            )
        arr = arr.astype(want)
    shape = tuple(spec.shape)
    if arr.ndim != len(shape) or any(s != -1 and s != a for s, a in zip(shape, arr.shape)):
        raise InvalidParameterValue(
            f"Shape of input {list(arr.shape)} does not match expected shape {list(shape)} for {name}."
        )
    return arr


def _enforce_tensors(data: Any, schema: Schema):
    import pandas as pd

    # a Schema's inputs are all columns or all tensors (Schema checks); this one's are tensors
    specs = [s for s in schema.inputs if isinstance(s, TensorSpec)]
    if isinstance(data, pd.DataFrame):
        if len(specs) == 1:
            data = data.to_numpy()
        else:
            data = {c: data[c].to_numpy() for c in data}
    if isinstance(data, dict):
        if not schema.has_input_names():
            raise InvalidParameterValue("The model takes one unnamed tensor, not named inputs.")
        missing = [s.name for s in specs if s.name not in data]
        if missing:
            raise InvalidParameterValue(f"Model is missing inputs {missing}.")
        return {s.name: _enforce_tensor(data[s.name], s, repr(s.name)) for s in specs}
    if len(specs) != 1:
        raise InvalidParameterValue(
            f"The model takes {len(specs)} named tensors {schema.input_names()}: send an object."
        )
    return _enforce_tensor(data, specs[0], "the input")


def double_columns(schema: Schema | None) -> list[str] | None:
    """The column names when the signature is only named ``double`` columns, else None."""
    if schema is None:
        return None
    names: list[str] = []
    for s in schema.inputs:
        if not isinstance(s, ColSpec) or s.name is None or s.type != "double":
            return None
        names.append(s.name)
    return names or None


def numeric_frame(columns: list | None, rows: list, schema: Schema | None):
    """The fast path for the common request: a ``dataframe_split`` of plain numbers for
    a signature of named ``double`` columns, converted in one numpy call. Returns None
    whenever anything is unusual (other types, nulls, strings, column order), and the
    caller takes the general path, which gives the precise error."""
    import numpy as np

    names = double_columns(schema)
    if names is None:
        return None
    if columns is None or columns != names or not rows:
        return None
    try:
        arr = np.array(rows)
    except ValueError:
        return None
    if arr.ndim != 2 or arr.shape[1] != len(names):
        return None
    if arr.dtype.kind == "i":
        if np.abs(arr).max() > _EXACT_FLOAT:
            return None
        arr = arr.astype("float64")
    elif arr.dtype != np.float64:
        return None  # strings, nulls, booleans: the general path decides
    import pandas as pd

    return pd.DataFrame(arr, columns=names)


def enforce_schema(data: Any, schema: Schema | None):
    """``data`` converted to what the signature says, or :class:`InvalidParameterValue`."""
    if schema is None or not schema.inputs:
        return data
    if schema.is_tensor_spec():
        return _enforce_tensors(data, schema)
    return _enforce_columns(data, schema)


def enforce_params(params: dict | None, signature: ModelSignature | None) -> dict | None:
    """Params filled with their defaults and checked against the signature's params."""
    specs = signature.params if signature is not None else None
    if not specs:
        if params:
            raise InvalidParameterValue(
                f"The model takes no params, but the request has {sorted(params)}; "
                "log the model with a signature that declares them."
            )
        return params
    params = dict(params or {})
    known = {p.name for p in specs}
    unknown = sorted(set(params) - known)
    if unknown:
        raise InvalidParameterValue(
            f"Unrecognized params {unknown}: the model's signature declares {sorted(known)}."
        )
    out = {}
    for spec in specs:
        value = params.get(spec.name, spec.default)
        if spec.shape is None and spec.type in _NUMPY and value is not None:
            value = _scalar(value, spec)
        out[spec.name] = value
    return out


def _scalar(value: Any, spec: Any):
    if spec.type == "boolean":
        if isinstance(value, bool):
            return value
    elif spec.type in ("integer", "long"):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise InvalidParameterValue(
        f"Failed to convert value {value!r} of param {spec.name!r} to type {spec.type}."
    )
