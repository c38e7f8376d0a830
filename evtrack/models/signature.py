"""Model signatures: the input and output schema of a model, in MLflow's JSON form.

A signature is stored in the ``MLmodel`` file as two JSON strings (``inputs``,
``outputs``) plus optional ``params``, exactly as MLflow writes them, so either tool
reads the other's. Column-based schemas (:class:`ColSpec`) describe data frames;
tensor-based ones (:class:`TensorSpec`) describe numpy arrays.

Limits: MLflow's nested types (``Array``, ``Object``, ``Map``) are read and written
back unchanged but not enforced; only the scalar types are checked at scoring time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from evtrack.errors import InvalidParameterValue

__all__ = [
    "ColSpec",
    "ModelSignature",
    "ParamSpec",
    "Schema",
    "TensorSpec",
    "infer_signature",
]

# MLflow's DataType names and the numpy dtype each one means.
_NUMPY_OF_TYPE = {
    "boolean": "bool",
    "integer": "int32",
    "long": "int64",
    "float": "float32",
    "double": "float64",
    "string": "object",
    "binary": "object",
    "datetime": "datetime64[ns]",
}


def _type_of_dtype(dtype: Any) -> str:
    """MLflow's DataType name for a numpy / pandas dtype."""
    import numpy as np

    kind = getattr(dtype, "kind", None)
    if kind is None or str(dtype) in ("str", "string"):
        return "string"
    if kind == "b":
        return "boolean"
    if kind in "iu":
        return "integer" if np.dtype(dtype).itemsize <= 4 and kind == "i" else "long"
    if kind == "f":
        return "float" if np.dtype(dtype).itemsize <= 4 else "double"
    if kind == "M":
        return "datetime"
    if kind == "S":
        return "binary"
    return "string"


@dataclass(frozen=True)
class ColSpec:
    """One named (or unnamed) column of a data frame."""

    type: str
    name: str | None = None
    required: bool = True
    raw: dict | None = field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict:
        if self.raw is not None:
            return self.raw
        out: dict[str, Any] = {"type": self.type}
        if self.name is not None:
            out["name"] = self.name
        out["required"] = self.required
        return out


@dataclass(frozen=True)
class TensorSpec:
    """A numpy array of one dtype; ``-1`` in ``shape`` means any length."""

    dtype: str
    shape: tuple[int, ...]
    name: str | None = None

    def to_dict(self) -> dict:
        out: dict[str, Any] = {
            "type": "tensor",
            "tensor-spec": {"dtype": self.dtype, "shape": list(self.shape)},
        }
        if self.name is not None:
            out["name"] = self.name
        return out


class Schema:
    """A list of :class:`ColSpec` or a list of :class:`TensorSpec` (never mixed)."""

    def __init__(self, inputs: list[ColSpec | TensorSpec]) -> None:
        kinds = {isinstance(s, TensorSpec) for s in inputs}
        if len(kinds) > 1:
            raise InvalidParameterValue("A schema mixes tensor and column specs; use one kind.")
        self.inputs = list(inputs)

    def is_tensor_spec(self) -> bool:
        return bool(self.inputs) and isinstance(self.inputs[0], TensorSpec)

    def has_input_names(self) -> bool:
        return bool(self.inputs) and all(s.name is not None for s in self.inputs)

    def input_names(self) -> list[str | int]:
        return [s.name if s.name is not None else i for i, s in enumerate(self.inputs)]

    def required_input_names(self) -> list[str | int]:
        return [
            s.name if s.name is not None else i
            for i, s in enumerate(self.inputs)
            if not isinstance(s, ColSpec) or s.required
        ]

    def to_json(self) -> str:
        return json.dumps([s.to_dict() for s in self.inputs])

    @classmethod
    def from_json(cls, text: str | list) -> Schema:
        items = json.loads(text) if isinstance(text, str) else text
        specs: list[ColSpec | TensorSpec] = []
        for item in items:
            if item.get("type") == "tensor":
                spec = item["tensor-spec"]
                specs.append(TensorSpec(spec["dtype"], tuple(spec["shape"]), item.get("name")))
            else:
                scalar = item.get("type") in _NUMPY_OF_TYPE
                specs.append(
                    ColSpec(
                        item.get("type") if scalar else "object",
                        item.get("name"),
                        item.get("required", True),
                        raw=None if scalar else item,
                    )
                )
        return cls(specs)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Schema) and self.inputs == other.inputs

    def __repr__(self) -> str:
        return f"Schema({self.inputs!r})"


@dataclass(frozen=True)
class ParamSpec:
    """An inference parameter (``params`` in a request) with its type and default."""

    name: str
    type: str
    default: Any
    shape: tuple[int, ...] | None = None

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "type": self.type,
            "default": self.default,
            "shape": list(self.shape) if self.shape is not None else None,
        }


@dataclass
class ModelSignature:
    """Inputs, outputs and inference params of a model."""

    inputs: Schema | None = None
    outputs: Schema | None = None
    params: list[ParamSpec] | None = None

    def to_dict(self) -> dict:
        return {
            "inputs": self.inputs.to_json() if self.inputs is not None else None,
            "outputs": self.outputs.to_json() if self.outputs is not None else None,
            "params": json.dumps([p.to_dict() for p in self.params]) if self.params else None,
        }

    @classmethod
    def from_dict(cls, data: dict) -> ModelSignature:
        params = data.get("params")
        parsed = None
        if params:
            items = json.loads(params) if isinstance(params, str) else params
            parsed = [
                ParamSpec(
                    p["name"],
                    p["type"],
                    p.get("default"),
                    tuple(p["shape"]) if p.get("shape") else None,
                )
                for p in items
            ]
        return cls(
            Schema.from_json(data["inputs"]) if data.get("inputs") else None,
            Schema.from_json(data["outputs"]) if data.get("outputs") else None,
            parsed,
        )


def _schema_of(data: Any) -> Schema | None:
    """Infer the schema of an example value (data frame, array, dict, list, scalar)."""
    import numpy as np

    if data is None:
        return None
    pd = _pandas()
    if pd is not None and isinstance(data, pd.DataFrame):
        return Schema([ColSpec(_type_of_dtype(_column_dtype(data[c])), str(c)) for c in data])
    if pd is not None and isinstance(data, pd.Series):
        return Schema([ColSpec(_type_of_dtype(_column_dtype(data)), data.name)])
    if isinstance(data, np.ndarray):
        return Schema([TensorSpec(str(data.dtype), (-1, *data.shape[1:]))])
    if isinstance(data, dict):
        if pd is not None and all(np.ndim(v) <= 1 for v in data.values()):
            return _schema_of(pd.DataFrame({k: np.atleast_1d(v) for k, v in data.items()}))
        return Schema(
            [
                TensorSpec(str(np.asarray(v).dtype), (-1, *np.shape(v)[1:]), k)
                for k, v in data.items()
            ]
        )
    if (
        isinstance(data, list)
        and data
        and all(isinstance(r, dict) for r in data)
        and pd is not None
    ):
        return _schema_of(pd.DataFrame(data))
    if isinstance(data, (list, tuple)):
        arr = np.asarray(data)
        if arr.dtype.kind in "OU":
            return Schema([ColSpec("string")])
        return Schema([TensorSpec(str(arr.dtype), (-1, *arr.shape[1:]))])
    if isinstance(data, str):
        return Schema([ColSpec("string")])
    if isinstance(data, (bool, int, float)):
        return Schema([ColSpec(_type_of_dtype(np.asarray(data).dtype))])
    raise InvalidParameterValue(
        f"Cannot infer a schema from a {type(data).__name__}; pass a pandas DataFrame, "
        "a numpy array, a dict or a list."
    )


def _column_dtype(series: Any) -> Any:
    """The dtype a column stands for: object columns of text are strings."""
    dtype = series.dtype
    if getattr(dtype, "kind", None) == "O":
        values = series.dropna()
        if len(values) and all(isinstance(v, bytes) for v in values):
            import numpy as np

            return np.dtype("S")
    return dtype


def _pandas():
    try:
        import pandas as pd
    except ImportError:  # signatures of numpy-only models need no pandas
        return None
    return pd


def _infer_params(params: dict[str, Any] | None) -> list[ParamSpec] | None:
    if not params:
        return None
    import numpy as np

    specs = []
    for name, value in params.items():
        arr = np.asarray(value)
        shape = None if arr.ndim == 0 else (-1,)
        kind = _type_of_dtype(arr.dtype) if arr.dtype.kind != "U" else "string"
        default = value.tolist() if isinstance(value, np.ndarray) else value
        specs.append(ParamSpec(name, kind, default, shape))
    return specs


def infer_signature(
    model_input: Any = None, model_output: Any = None, params: dict[str, Any] | None = None
) -> ModelSignature:
    """MLflow's ``infer_signature``: a signature from example input, output and params."""
    return ModelSignature(_schema_of(model_input), _schema_of(model_output), _infer_params(params))
