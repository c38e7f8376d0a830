"""The Open Inference Protocol (KServe V2) next to ``/invocations``: request tensors
to model input, predictions to response tensors, and model metadata.

A request's tensors are matched to the signature: named tensors become the columns
of the same name; a single ``[rows, k]`` tensor fills the signature's ``k`` columns in
order. The binary tensor extension is not supported (JSON tensors only).
"""

from __future__ import annotations

from typing import Any

from evtrack.errors import BadRequest
from evtrack.models.signature import ColSpec, Schema, TensorSpec

__all__ = ["metadata", "to_model_input", "to_response"]

_DTYPES = {
    "BOOL": "bool",
    "INT8": "int8",
    "INT16": "int16",
    "INT32": "int32",
    "INT64": "int64",
    "UINT8": "uint8",
    "UINT16": "uint16",
    "UINT32": "uint32",
    "UINT64": "uint64",
    "FP16": "float16",
    "FP32": "float32",
    "FP64": "float64",
    "BYTES": "object",
}
_OF_MLFLOW_TYPE = {
    "boolean": "BOOL",
    "integer": "INT32",
    "long": "INT64",
    "float": "FP32",
    "double": "FP64",
    "string": "BYTES",
    "binary": "BYTES",
    "datetime": "BYTES",
}


def _v2_type(dtype: Any) -> str:
    import numpy as np

    dtype = np.dtype(dtype)
    for name, np_name in _DTYPES.items():
        if np_name != "object" and dtype == np.dtype(np_name):
            return name
    return "BYTES"


def _tensor(item: Any, i: int):
    import numpy as np

    if not isinstance(item, dict) or not {"name", "shape", "datatype", "data"} <= set(item):
        raise BadRequest(
            f"Invalid input: inputs[{i}] must have 'name', 'shape', 'datatype' and 'data'."
        )
    dtype = _DTYPES.get(str(item["datatype"]).upper())
    if dtype is None:
        raise BadRequest(
            f"Invalid input: inputs[{i}] has datatype {item['datatype']!r}; use one of {list(_DTYPES)}."
        )
    try:
        arr = np.asarray(item["data"], dtype=dtype).reshape(item["shape"])
    except (ValueError, TypeError) as exc:
        raise BadRequest(f"Invalid input: inputs[{i}] ({item['name']!r}): {exc}.") from None
    return str(item["name"]), arr


def to_model_input(body: Any, schema: Schema | None) -> tuple[Any, dict | None]:
    """A V2 inference request -> (model input, params)."""
    import pandas as pd

    if not isinstance(body, dict) or not isinstance(body.get("inputs"), list) or not body["inputs"]:
        raise BadRequest("Invalid input: a V2 request is an object with a non-empty 'inputs' list.")
    tensors = dict(_tensor(item, i) for i, item in enumerate(body["inputs"]))
    params = body.get("parameters")
    params = params if isinstance(params, dict) and params else None
    columns = schema is not None and not schema.is_tensor_spec() and schema.inputs
    if columns and schema is not None and len(tensors) == 1:
        ((name, arr),) = tensors.items()
        names = schema.input_names()
        if name not in names and arr.ndim == 2 and arr.shape[1] == len(names):
            return pd.DataFrame(arr, columns=names), params
    if columns or (
        schema is None and all(a.ndim <= 1 or a.shape[1:] == (1,) for a in tensors.values())
    ):
        try:
            return pd.DataFrame({k: a.reshape(len(a)) for k, a in tensors.items()}), params
        except ValueError as exc:
            raise BadRequest(
                f"Invalid input: the input tensors have different lengths ({exc})."
            ) from None
    if len(tensors) == 1 and (schema is None or not schema.has_input_names()):
        return next(iter(tensors.values())), params
    return tensors, params


def _out(name: str, arr: Any) -> dict:
    import numpy as np

    arr = np.asarray(arr)
    kind = _v2_type(arr.dtype)
    data = arr.reshape(-1).tolist() if kind != "BYTES" else [str(v) for v in arr.reshape(-1)]
    return {"name": name, "datatype": kind, "shape": list(arr.shape), "data": data}


def to_response(model_name: str, pred: Any, request_id: Any = None) -> dict:
    """Predictions -> V2 response tensors (one per column of a frame)."""
    import numpy as np

    if hasattr(pred, "columns"):
        outputs = [_out(str(c), pred[c].to_numpy()) for c in pred.columns]
    elif isinstance(pred, dict):
        outputs = [_out(str(k), v) for k, v in pred.items()]
    else:
        outputs = [_out("predictions", np.asarray(pred))]
    out: dict[str, Any] = {"model_name": model_name, "outputs": outputs}
    if request_id is not None:
        out["id"] = request_id
    return out


def _spec(spec: ColSpec | TensorSpec, i: int, unnamed: str = "input") -> dict:
    if isinstance(spec, TensorSpec):
        return {
            "name": spec.name or f"{unnamed}-{i}",
            "datatype": _v2_type(spec.dtype),
            "shape": list(spec.shape),
        }
    return {
        "name": spec.name or f"{unnamed}-{i}",
        "datatype": _OF_MLFLOW_TYPE.get(spec.type, "BYTES"),
        "shape": [-1],
    }


def metadata(model_name: str, signature: Any) -> dict:
    inputs = signature.inputs.inputs if signature is not None and signature.inputs else []
    outputs = signature.outputs.inputs if signature is not None and signature.outputs else []
    return {
        "name": model_name,
        "versions": [],
        "platform": "evtrack_pyfunc",
        "inputs": [_spec(s, i) for i, s in enumerate(inputs)],
        "outputs": [_spec(s, i, "predictions") for i, s in enumerate(outputs)],
    }
