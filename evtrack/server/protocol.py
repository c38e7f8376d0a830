"""MLflow's wire format: request fields in, entities out, as ``mlflow server`` does it.

MLflow describes each request with a protobuf message and parses JSON bodies (or query
strings for GET) with ``ParseDict(..., ignore_unknown_fields=True)``; responses are
``MessageToDict(preserving_proto_field_name=True)`` with int64 fields as JSON numbers.
This module reproduces that contract without protobuf:

* a :data:`Field` spec per request field (``string``, ``int64``, ``int32``, ``double``,
  ``bool``, an enum, a list or a nested message);
* unknown fields are ignored, as MLflow does, so newer clients keep working;
* a wrong type or a missing required field is ``INVALID_PARAMETER_VALUE`` (400), with
  MLflow's wording;
* doubles accept numbers and the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"`` and
  int64 fields accept numbers or decimal strings, as protobuf's JSON mapping does; in
  responses NaN and ±inf are written as those strings, so every body is strict JSON.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

from evtrack.entities import ViewType
from evtrack.errors import InvalidParameterValue
from evtrack.jsonfloat import SPECIAL_FLOATS, float_to_json

if TYPE_CHECKING:  # pragma: no cover
    from evtrack.entities import Experiment, FileInfo, Metric, Run, RunInfo

__all__ = [
    "ParseSpec",
    "dumps",
    "experiment_json",
    "file_info_json",
    "metric_json",
    "parse",
    "run_info_json",
    "run_json",
]

_HINT = " See the API docs for more information about request parameters."

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1

VIEW_TYPES = dict(ViewType._NAMES)
RUN_STATUSES = {"RUNNING": 1, "SCHEDULED": 2, "FINISHED": 3, "FAILED": 4, "KILLED": 5}

#: A request spec: field name -> type. A type is a scalar name, ``("enum", {name: n})``,
#: ``("list", type)`` or ``("message", spec)``.
ParseSpec = dict[str, Any]

_KEY_VALUE: ParseSpec = {"key": "string", "value": "string"}
METRIC: ParseSpec = {
    "key": "string",
    "value": "double",
    "timestamp": "int64",
    "step": "int64",
    "model_id": "string",
    "dataset_name": "string",
    "dataset_digest": "string",
    "run_id": "string",
}
DATASET: ParseSpec = {
    "name": "string",
    "digest": "string",
    "source_type": "string",
    "source": "string",
    "schema": "string",
    "profile": "string",
}
DATASET_INPUT: ParseSpec = {
    "tags": ("list", ("message", _KEY_VALUE)),
    "dataset": ("message", DATASET),
}
KEY_VALUES = ("list", ("message", _KEY_VALUE))


def _invalid(param: str, value: Any) -> InvalidParameterValue:
    shown = json.dumps(value, default=str)
    if len(shown) > 200:
        shown = shown[:200] + "..."
    return InvalidParameterValue(
        f"Invalid value {shown} for parameter '{param}' supplied. Hint: Value was of type "
        f"'{type(value).__name__}'.{_HINT}"
    )


def missing(param: str) -> InvalidParameterValue:
    return InvalidParameterValue(f"Missing value for required parameter '{param}'.{_HINT}")


def _int(value: Any, param: str, lo: int, hi: int) -> int:
    if isinstance(value, bool):
        raise _invalid(param, value)
    if isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str):
        try:
            number = int(value.strip())
        except ValueError:
            raise _invalid(param, value) from None
    else:
        raise _invalid(param, value)
    if not lo <= number <= hi:
        raise _invalid(param, value)
    return number


def to_double(value: Any, param: str = "value") -> float:
    """A protobuf-JSON double: a number, a numeric string, or NaN/Infinity/-Infinity."""
    if type(value) is float:
        return value
    if isinstance(value, bool):
        raise _invalid(param, value)
    if isinstance(value, int):
        try:
            return float(value)
        except OverflowError:
            raise _invalid(param, value) from None
    if isinstance(value, str):
        special = SPECIAL_FLOATS.get(value)
        if special is not None:
            return special
        try:
            number = float(value)
        except ValueError:
            raise _invalid(param, value) from None
        if math.isnan(number) or math.isinf(number):  # "nan", "inf": not protobuf's spelling
            raise _invalid(param, value)
        return number
    raise _invalid(param, value)


def to_int64(value: Any, param: str) -> int:
    if type(value) is int and INT64_MIN <= value <= INT64_MAX:
        return value
    return _int(value, param, INT64_MIN, INT64_MAX)


def _convert(value: Any, kind: Any, param: str) -> Any:
    if kind == "string":
        if not isinstance(value, str):
            raise _invalid(param, value)
        return value
    if kind == "int64":
        return to_int64(value, param)
    if kind == "int32":
        return _int(value, param, INT32_MIN, INT32_MAX)
    if kind == "double":
        return to_double(value, param)
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise _invalid(param, value)
    tag, arg = kind
    if tag == "enum":
        if isinstance(value, str) and value in arg:
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            for name, number in arg.items():
                if number == value:
                    return name
        raise _invalid(param, value)
    if tag == "list":
        if not isinstance(value, list):
            raise _invalid(param, value)
        return [_convert(item, arg, f"{param}[{i}]") for i, item in enumerate(value)]
    if tag == "message":
        if not isinstance(value, dict):
            raise _invalid(param, value)
        return _message(value, arg, param + ".")
    raise AssertionError(kind)  # pragma: no cover


def _message(data: dict[str, Any], spec: ParseSpec, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, kind in spec.items():
        if name in data and data[name] is not None:
            out[name] = _convert(data[name], kind, prefix + name)
    return out


def parse(data: dict[str, Any], spec: ParseSpec, required: tuple[str, ...] = ()) -> dict[str, Any]:
    """Check ``data`` against ``spec``; unknown fields are dropped, as MLflow does.

    ``required`` fields must be present and non-empty (MLflow's ``_assert_required``).
    ``run_id`` is satisfied by the older ``run_uuid`` too.
    """
    if not isinstance(data, dict):
        raise InvalidParameterValue(
            f"Invalid request body: expected a JSON object, got {type(data).__name__}.{_HINT}"
        )
    out = _message(data, spec)
    if "run_uuid" in spec and "run_id" in spec and not out.get("run_id") and out.get("run_uuid"):
        out["run_id"] = out["run_uuid"]
    for name in required:
        if out.get(name) in (None, "", []):
            raise missing(name)
    return out


def query_args(args: Any, spec: ParseSpec) -> dict[str, Any]:
    """A GET query string as the JSON object MLflow would build from it."""
    out: dict[str, Any] = {}
    for name, kind in spec.items():
        if name not in args:
            continue
        if isinstance(kind, tuple) and kind[0] == "list":
            out[name] = args.getlist(name)
        else:
            out[name] = args.get(name)
            if kind in ("int64", "int32", "double") or (
                isinstance(kind, tuple) and kind[0] == "enum" and out[name].isdigit()
            ):
                out[name] = _numeric_text(out[name], kind)
    return out


def _numeric_text(text: str, kind: Any) -> Any:
    if isinstance(kind, tuple):  # an enum by number
        return int(text)
    return text  # numeric strings are accepted by the converters as protobuf does


# -- responses -------------------------------------------------------------------------


def _number(value: float | None) -> Any:
    return None if value is None else float_to_json(value)


def dumps(body: Any) -> str:
    """Compact strict JSON (NaN/inf are already strings in entity bodies)."""
    return json.dumps(body, separators=(",", ":"), allow_nan=False)


def metric_json(m: Metric, run_id: str | None = None) -> dict[str, Any]:
    out = {"key": m.key, "value": _number(m.value), "timestamp": m.timestamp, "step": m.step}
    if run_id is not None:
        out["run_id"] = run_id
    return out


def _pairs(mapping: dict[str, str]) -> list[dict[str, str]]:
    return [{"key": k, "value": v} for k, v in mapping.items()]


def run_info_json(info: RunInfo, artifact_uri: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "run_uuid": info.run_id,
        "experiment_id": info.experiment_id,
        "run_name": info.run_name,
        "user_id": info.user_id,
        "status": info.status,
        "start_time": info.start_time,
        "end_time": info.end_time,
        "artifact_uri": artifact_uri if artifact_uri is not None else info.artifact_uri,
        "lifecycle_stage": info.lifecycle_stage,
        "run_id": info.run_id,
    }
    return {k: v for k, v in out.items() if v is not None}


def run_json(
    run: Run, artifact_uri: str | None = None, inputs: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    data: dict[str, Any] = {}
    metrics = [metric_json(m) for m in run.data._metric_objs] or [
        {"key": k, "value": _number(v), "timestamp": 0, "step": 0}
        for k, v in run.data.metrics.items()
    ]
    if metrics:
        data["metrics"] = metrics
    if run.data.params:
        data["params"] = _pairs(run.data.params)
    if run.data.tags:
        data["tags"] = _pairs(run.data.tags)
    out: dict[str, Any] = {"info": run_info_json(run.info, artifact_uri), "data": data}
    out["inputs"] = {"dataset_inputs": inputs} if inputs else {}
    return out


def experiment_json(exp: Experiment, artifact_location: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "experiment_id": exp.experiment_id,
        "name": exp.name,
        "artifact_location": artifact_location
        if artifact_location is not None
        else exp.artifact_location,
        "lifecycle_stage": exp.lifecycle_stage,
        "last_update_time": exp.last_update_time,
        "creation_time": exp.creation_time,
    }
    out = {k: v for k, v in out.items() if v is not None}
    if exp.tags:
        out["tags"] = _pairs(exp.tags)
    return out


def file_info_json(info: FileInfo, path: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"path": info.path if path is None else path, "is_dir": info.is_dir}
    if not info.is_dir and info.file_size is not None:
        out["file_size"] = info.file_size
    return out
