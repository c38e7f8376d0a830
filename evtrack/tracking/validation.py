"""The rules every key, value, id, path and batch must follow before it becomes an event.

The rules, limits, error codes and message wording are MLflow's (``mlflow/utils/validation.py``,
the tracking stores and the REST handlers of MLflow 3.x), so a script or an HTTP client that
works against MLflow gets the same answer from evtrack. Each message starts with MLflow's own
sentence; evtrack sometimes adds a second one that says how to fix the input. Every failure is
:class:`~evtrack.errors.InvalidParameterValue` (``INVALID_PARAMETER_VALUE``, HTTP 400).
``docs/limits.md`` lists every rule next to MLflow's, with the few deliberate differences.

Hot path. ``log_metric`` must sustain 500,000 calls/s from one thread, which leaves about
0.3 µs for validation. So :func:`check_metric_key` remembers keys it has accepted (one dict
lookup on a hit; the cache is bounded and simply cleared when full), and
:func:`check_metric_value`, :func:`check_step` and :func:`check_timestamp` return plain
``float``/``int`` after one ``type(x) is ...`` test; everything else takes a slower path
that converts NumPy scalars, one-element arrays and tensors. :func:`check_metric` does all
four in one call. :func:`check_metric_arrays` validates whole NumPy/Arrow arrays with
Arrow compute kernels, never a Python loop.

Each ``check_*`` function returns the normalised value (``str``, ``float``, ``int``) so the
caller stores what was checked, not what it was given.
"""

from __future__ import annotations

import json
import logging
import math
import numbers
import posixpath
import re
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, SupportsFloat, cast

from evtrack.errors import InvalidParameterValue

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa

__all__ = [
    "GET_METRIC_HISTORY_MAX_RESULTS",
    "INT64_MAX",
    "INT64_MIN",
    "MAX_ARTIFACT_LOCATION_LENGTH",
    "MAX_BATCH_LOG_REQUEST_SIZE",
    "MAX_ENTITIES_PER_BATCH",
    "MAX_ENTITY_KEY_LENGTH",
    "MAX_EXPERIMENT_NAME_LENGTH",
    "MAX_EXPERIMENT_TAG_KEY_LENGTH",
    "MAX_EXPERIMENT_TAG_VAL_LENGTH",
    "MAX_FILTER_CLAUSES",
    "MAX_METRICS_PER_BATCH",
    "MAX_PARAMS_TAGS_PER_BATCH",
    "MAX_PARAM_VAL_LENGTH",
    "MAX_RUN_NAME_LENGTH",
    "MAX_TAG_VAL_LENGTH",
    "PARAM_VALIDATION_MSG",
    "SEARCH_MAX_RESULTS_DEFAULT",
    "SEARCH_MAX_RESULTS_THRESHOLD",
    "check_artifact_path",
    "check_batch_limits",
    "check_batch_request_size",
    "check_experiment_artifact_location",
    "check_experiment_id",
    "check_experiment_name",
    "check_experiment_tag",
    "check_filter_clauses",
    "check_max_results",
    "check_metric",
    "check_metric_arrays",
    "check_metric_key",
    "check_metric_value",
    "check_param",
    "check_param_key",
    "check_param_keys_unique",
    "check_param_unchanged",
    "check_param_value",
    "check_params_unchanged",
    "check_run_id",
    "check_run_name",
    "check_step",
    "check_tag",
    "check_tag_key",
    "check_tag_value",
    "check_text",
    "check_timestamp",
    "check_unicode",
    "clear_key_cache",
]

_logger = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------
# Limits. Names and numbers are MLflow 3.x's (mlflow/utils/validation.py and
# mlflow/store/tracking/__init__.py) unless the comment says "evtrack".
# ---------------------------------------------------------------------------------------------

MAX_ENTITY_KEY_LENGTH = 250
MAX_PARAM_VAL_LENGTH = 6000
MAX_TAG_VAL_LENGTH = 8000
MAX_EXPERIMENT_NAME_LENGTH = 500
MAX_EXPERIMENT_TAG_KEY_LENGTH = 250
MAX_EXPERIMENT_TAG_VAL_LENGTH = 20000
MAX_PARAMS_TAGS_PER_BATCH = 100
MAX_METRICS_PER_BATCH = 1000
MAX_ENTITIES_PER_BATCH = 1000
MAX_BATCH_LOG_REQUEST_SIZE = int(1e6)
SEARCH_MAX_RESULTS_DEFAULT = 1000
SEARCH_MAX_RESULTS_THRESHOLD = 50000
#: Page size MLflow's client uses to page through a metric history (not a cap on its length).
GET_METRIC_HISTORY_MAX_RESULTS = 25000
#: MLflow's default of ``MLFLOW_ARTIFACT_LOCATION_MAX_LENGTH``.
MAX_ARTIFACT_LOCATION_LENGTH = 2048
#: evtrack: comparisons in one search filter. MLflow has no limit; past ~100 the compiled
#: query takes seconds to plan (200: ~12 s, and DuckDB's expression depth limit fails
#: the query in the thousands), so one request could hold a server worker for minutes.
MAX_FILTER_CLAUSES = 100
#: evtrack: MLflow has no check, but its ``runs.name`` column is ``String(250)``.
MAX_RUN_NAME_LENGTH = 250
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

#: MLflow's client appends this to every INVALID_PARAMETER_VALUE error of ``log_param``.
PARAM_VALIDATION_MSG = """

The cause of this error is typically due to repeated calls
to an individual run_id event logging.

Incorrect Example:
---------------------------------------
with mlflow.start_run():
    mlflow.log_param("depth", 3)
    mlflow.log_param("depth", 5)
---------------------------------------

Which will throw an MlflowException for overwriting a
logged parameter.

Correct Example:
---------------------------------------
with mlflow.start_run():
    with mlflow.start_run(nested=True):
        mlflow.log_param("depth", 3)
    with mlflow.start_run(nested=True):
        mlflow.log_param("depth", 5)
---------------------------------------

Which will create a new nested run for each individual
model and prevent parameter key collisions within the
tracking store."""

# MLflow's non-Windows rule. On Windows MLflow also forbids ':'; evtrack never turns a key
# into a file name, and a store must mean the same on every OS, so ':' is allowed everywhere.
_KEY_RE = re.compile(r"[/\w.\- :]*")
_RUN_ID_RE = re.compile(r"[a-zA-Z0-9][\w\-]{0,255}")
_EXPERIMENT_ID_RE = re.compile(r"[a-zA-Z0-9][\w\-]{0,63}")

_BAD_CHARACTERS_MESSAGE = (
    "Names may only contain alphanumerics, underscores (_), dashes (-), periods (.),"
    " spaces ( ), colon(:) and slashes (/)."
)
_MISSING_KEY_NAME_MESSAGE = "A key name must be provided."
_VALUE_HINT = (
    "Please specify value as a valid double (64-bit floating point): an int, a float or a"
    " NumPy number (NaN and +/-inf are kept). bool and str are refused; convert with float()."
)


def _fmt(value: Any) -> str:
    """A value as MLflow's ``invalid_value`` shows it (JSON), or its repr, kept short."""
    try:
        text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 300 else text[:300] + "..."


def _invalid_value(path: str, value: Any, message: str | None = None) -> InvalidParameterValue:
    if message:
        text = f"Invalid value {_fmt(value)} for parameter '{path}' supplied: {message}"
    else:
        text = f"Invalid value {_fmt(value)} for parameter '{path}' supplied."
    return InvalidParameterValue(text)


def _too_long(entity: str, limit: int, length: int, hint: str) -> InvalidParameterValue:
    return InvalidParameterValue(
        f"'{entity}' exceeds the maximum length of {limit} characters (got {length}). {hint}"
    )


# ---------------------------------------------------------------------------------------------
# Text: every string that becomes an event must be encodable as UTF-8
# ---------------------------------------------------------------------------------------------

#: A lone UTF-16 surrogate (U+D800..U+DFFF): JSON's "\ud800" decodes to one, and UTF-8
#: cannot encode it, so it would fail only when the event is written (a 500, half a write).
_SURROGATE_RE = re.compile("[\ud800-\udfff]")


def check_text(value: Any, path: str = "value") -> Any:
    """``value`` unchanged, unless it is a string holding a lone UTF-16 surrogate.

    Cheap on the hot path: ASCII strings (nearly all keys and values) skip the scan.
    Non-strings are returned as they are; their own checks decide about them.
    """
    if type(value) is str and not value.isascii() and (found := _SURROGATE_RE.search(value)):
        at = found.start()
        raise InvalidParameterValue(
            f"Invalid value for parameter '{path}' supplied: it holds a lone UTF-16 surrogate"
            f" (U+{ord(value[at]):04X} at character {at}), which is not valid Unicode text."
            " Send valid UTF-8 (a surrogate pair must encode one character, e.g. \\ud83d\\ude00)."
        )
    return value


def check_unicode(data: Any, path: str = "body") -> Any:
    """:func:`check_text` on every string (keys too) of a decoded JSON document.

    Iterative, so a document nested as deep as the JSON parser allows cannot exhaust the
    stack here.
    """
    stack: list[tuple[Any, str]] = [(data, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            check_text(item, where)
        elif isinstance(item, dict):
            for k, v in item.items():
                check_text(k, where)
                stack.append((v, f"{where}.{k}" if isinstance(k, str) and k.isascii() else where))
        elif isinstance(item, list):
            stack.extend((v, f"{where}[{n}]") for n, v in enumerate(item))
    return data


# ---------------------------------------------------------------------------------------------
# Keys of metrics, params and tags
# ---------------------------------------------------------------------------------------------

#: Keys already accepted, mapped to themselves as plain ``str``. The rules are the same for
#: metric, param and tag keys, so one cache serves all three.
_KEY_CACHE: dict[str, str] = {}
_KEY_CACHE_MAX = 65536


def clear_key_cache() -> None:
    """Forget every key accepted so far (tests, or a process that logged millions of keys)."""
    _KEY_CACHE.clear()


def _path_not_unique(name: str) -> bool:
    # MLflow's path_not_unique: the key must be its own normal form as a POSIX path.
    norm = posixpath.normpath(name)
    return norm != name or norm == "." or norm.startswith("..") or norm.startswith("/")


# kind -> (message when None, entity name in the length message)
_KINDS = {
    "metric": ("Metric name cannot be None. " + _MISSING_KEY_NAME_MESSAGE, "Metric name"),
    "param": (_MISSING_KEY_NAME_MESSAGE, "Param key"),
    "tag": (None, "key"),
}


def _check_key(key: Any, path: str, kind: str) -> str:
    """The full key rules; the hot-path wrappers call this on a cache miss only."""
    none_message, entity = _KINDS[kind]
    if key is None:
        if kind == "tag":
            raise InvalidParameterValue(f"Missing value for required parameter '{path}'.")
        # MLflow shows a missing param key as "" and a missing metric name as null.
        raise _invalid_value(path, "" if kind == "param" else None, none_message)
    if not isinstance(key, str):
        raise _invalid_value(
            path, key, f"Keys must be strings, got {type(key).__name__}. Pass str(key)."
        )
    key = str(key)  # a plain str, even for str subclasses
    if not key:
        raise _invalid_value(path, key, _MISSING_KEY_NAME_MESSAGE)
    if _KEY_RE.fullmatch(key) is None:
        bad = sorted({c for c in key if _KEY_RE.fullmatch(c) is None})
        found = ", ".join(repr(c) for c in bad[:10])
        raise _invalid_value(path, key, f"{_BAD_CHARACTERS_MESSAGE} Found {found}.")
    if _path_not_unique(key):
        raise _invalid_value(
            path,
            key,
            "Names may be treated as files in certain cases, and must not resolve to other"
            f" names when treated as such. This name would resolve to"
            f" {posixpath.normpath(key)!r}. Remove leading or trailing slashes, empty, '.'"
            " and '..' components, and leading '..'.",
        )
    if len(key) > MAX_ENTITY_KEY_LENGTH:
        raise _too_long(entity, MAX_ENTITY_KEY_LENGTH, len(key), "Use a shorter key.")
    if len(_KEY_CACHE) >= _KEY_CACHE_MAX:
        _KEY_CACHE.clear()  # bounded: a program that invents keys forever cannot grow it
    _KEY_CACHE[key] = key
    return key


def check_metric_key(key: Any, path: str = "name") -> str:
    """A metric key (MLflow: "metric name"); ``path`` names the field in error messages."""
    try:
        return _KEY_CACHE[key]
    except (KeyError, TypeError):  # TypeError: unhashable, reported by _check_key
        return _check_key(key, path, "metric")


def check_param_key(key: Any, path: str = "key") -> str:
    """A param key: same characters, path and length rules as a metric key."""
    try:
        return _KEY_CACHE[key]
    except (KeyError, TypeError):
        return _check_key(key, path, "param")


def check_tag_key(key: Any, path: str = "key") -> str:
    """A run tag key: same characters, path and length rules as a metric key."""
    try:
        return _KEY_CACHE[key]
    except (KeyError, TypeError):
        return _check_key(key, path, "tag")


# ---------------------------------------------------------------------------------------------
# Metric values, steps, timestamps
# ---------------------------------------------------------------------------------------------


def _metric_label(key: str | None) -> str:
    return f"metric '{key}'. " if key is not None else ""


# Types already seen to be real (resp. integral) numbers, e.g. numpy.float32, so the next
# value of that type skips the ABC isinstance checks (~0.3 µs each). Holds types, not
# values, so it stays a handful of entries. bool never gets in: it is refused before.
_REAL_TYPES: set[type] = {int}
_INTEGRAL_TYPES: set[type] = {int}


def _too_big(value: Any, key: str | None) -> InvalidParameterValue:
    return _invalid_value(
        "value", value, f"{_metric_label(key)}The number is too large for a 64-bit float."
    )


def _metric_value_slow(value: Any, key: str | None, depth: int = 0) -> float:
    if type(value) in _REAL_TYPES:
        try:
            return float(value)
        except OverflowError:
            raise _too_big(value, key) from None
    if value is None:
        raise InvalidParameterValue(
            "Missing value for required parameter 'value'."
            + (f" Metric '{key}' needs a number." if key is not None else "")
        )
    if isinstance(value, bool):
        # evtrack rule: MLflow's client turns True into 1.0 before its own bool check runs.
        raise _invalid_value(
            "value",
            value,
            f"{_metric_label(key)}bool is not a metric value; log float(flag) if you mean 0/1.",
        )
    if isinstance(value, float):  # float subclasses such as numpy.float64
        return float(value)
    if isinstance(value, (str, bytes, bytearray)):
        raise _invalid_value("value", value, _metric_label(key) + _VALUE_HINT)
    if isinstance(value, numbers.Real):  # NumPy ints and floats, Fraction
        _REAL_TYPES.add(type(value))
        try:
            return float(value)
        except OverflowError:
            raise _too_big(value, key) from None
    if isinstance(value, numbers.Number) and not isinstance(value, numbers.Complex):
        try:  # decimal.Decimal: a Number but not Real; MLflow accepts it
            # numbers.Number declares no __float__ (Decimal has one); a Number without it
            # raises TypeError, handled below.
            return float(cast(SupportsFloat, value))
        except (TypeError, ValueError, OverflowError):
            pass
    elif depth == 0 and not isinstance(value, numbers.Number):
        # One-element arrays and tensors, as MLflow accepts them: ndarray/torch/jax .item(),
        # TensorFlow .numpy(). The result goes through the rules again (np.bool_ -> bool).
        for method in ("item", "numpy"):
            convert = getattr(value, method, None)
            if callable(convert):
                try:
                    scalar = convert()
                except (TypeError, ValueError, RuntimeError, IndexError):
                    raise _invalid_value(
                        "value",
                        value,
                        f"{_metric_label(key)}Only a single number, or an array or tensor"
                        " holding exactly one, can be logged here. Log arrays of points"
                        " with the array API, or pick one element.",
                    ) from None
                if method == "numpy" and hasattr(scalar, "item"):
                    try:
                        scalar = scalar.item()
                    except (TypeError, ValueError):
                        break
                return _metric_value_slow(scalar, key, depth + 1)
    raise _invalid_value("value", value, _metric_label(key) + _VALUE_HINT)


def check_metric_value(value: Any, key: str | None = None) -> float:
    """A metric value as a Python ``float``.

    Accepted: ``float`` (NaN and +/-inf included), ``int``, NumPy numbers, ``Fraction``,
    ``Decimal``, and one-element arrays or tensors. Refused: ``bool`` (also ``numpy.bool_``),
    ``str``, ``None``, complex numbers, anything else. ``key`` only improves the message.
    """
    if type(value) is float:
        return value
    return _metric_value_slow(value, key)


def _whole_number(value: Any) -> int | None:
    """``value`` as an int if it is an integer or a finite whole float, else None."""
    if type(value) in _INTEGRAL_TYPES:
        return int(value)
    if isinstance(value, bool):
        return None
    if isinstance(value, numbers.Integral):
        _INTEGRAL_TYPES.add(type(value))
        return int(value)
    if isinstance(value, numbers.Real):
        as_float = float(value)
        if math.isfinite(as_float) and as_float.is_integer():
            return int(as_float)
    return None


def _step_slow(step: Any, key: str | None) -> int:
    number = _whole_number(step)
    if number is None or not INT64_MIN <= number <= INT64_MAX:
        raise _invalid_value(
            "step",
            step,
            f"{_metric_label(key)}Step must be a valid long (64-bit integer)."
            " Use an int such as the epoch or batch index.",
        )
    return number


def check_step(step: Any, key: str | None = None) -> int:
    """A step as a Python ``int`` in the int64 range (negative steps are fine, as in MLflow).

    NumPy integers and whole floats (``3.0``) are converted; ``1.5``, NaN, bool and str are
    refused.
    """
    # Literal bounds and two comparisons: measurably faster than globals and a chain.
    if type(step) is int and -0x8000000000000000 <= step and step <= 0x7FFFFFFFFFFFFFFF:
        return step
    return _step_slow(step, key)


def _timestamp_slow(timestamp: Any, key: str | None) -> int:
    number: int | None = None
    if type(timestamp) in _INTEGRAL_TYPES:
        number = int(timestamp)
    elif not isinstance(timestamp, bool):
        if isinstance(timestamp, numbers.Integral):
            _INTEGRAL_TYPES.add(type(timestamp))
            number = int(timestamp)
        elif isinstance(timestamp, numbers.Real) and math.isfinite(float(timestamp)):
            # MLflow accepts any number; time.time() * 1000 is common, and a fraction of a
            # millisecond carries no meaning, so it is dropped.
            number = math.floor(float(timestamp))
    if number is None or not 0 <= number <= INT64_MAX:
        raise _invalid_value(
            "timestamp",
            timestamp,
            f"{_metric_label(key)}Timestamp must be a nonnegative long (64-bit integer):"
            " milliseconds since the epoch, e.g. int(time.time() * 1000).",
        )
    return number


def check_timestamp(timestamp: Any, key: str | None = None) -> int:
    """A timestamp in milliseconds since the epoch as a Python ``int`` (>= 0, int64)."""
    if type(timestamp) is int and 0 <= timestamp and timestamp <= 0x7FFFFFFFFFFFFFFF:
        return timestamp
    return _timestamp_slow(timestamp, key)


def check_metric(key: Any, value: Any, step: Any, timestamp: Any) -> tuple[str, float, int, int]:
    """All four checks of one metric point in one call: the cheapest form for ``log_metric``.

    The common case (a known ``str`` key, a ``float``, two ``int``) is one boolean
    expression; anything else goes through the per-field checks.
    """
    if (
        type(key) is str  # exact str: a subclass could fake __eq__/__hash__
        and key in _KEY_CACHE
        and type(value) is float
        and type(step) is int
        and -0x8000000000000000 <= step
        and step <= 0x7FFFFFFFFFFFFFFF
        and type(timestamp) is int
        and 0 <= timestamp
        and timestamp <= 0x7FFFFFFFFFFFFFFF
    ):
        return key, value, step, timestamp
    key = check_metric_key(key)
    return (
        key,
        check_metric_value(value, key),
        check_step(step, key),
        check_timestamp(timestamp, key),
    )


# ---------------------------------------------------------------------------------------------
# Arrays of metric points
# ---------------------------------------------------------------------------------------------


def _as_arrow(data: Any, name: str) -> pa.Array:
    import pyarrow as pa

    if isinstance(data, pa.ChunkedArray):
        return data.combine_chunks()
    if isinstance(data, pa.Array):
        return data
    if isinstance(data, (str, bytes)) or not hasattr(data, "__len__"):
        raise InvalidParameterValue(
            f"Invalid value for parameter '{name}': expected a 1-D array (NumPy, Arrow or a"
            f" list), got {type(data).__name__}."
        )
    try:
        return pa.array(data)
    except OverflowError:
        raise InvalidParameterValue(
            f"Invalid value for parameter '{name}': a number does not fit in 64 bits. Steps"
            " and timestamps must be in -2**63..2**63-1 (timestamps non-negative)."
        ) from None
    except (pa.ArrowException, TypeError, ValueError) as exc:
        raise InvalidParameterValue(
            f"Invalid value for parameter '{name}': cannot read it as a 1-D numeric array"
            f" ({exc}). Pass a NumPy or Arrow array of numbers."
        ) from None


def _numeric_kind(arr: pa.Array, name: str) -> str:
    """'int' or 'float' (decimals count as float); anything else is refused."""
    import pyarrow as pa

    t = arr.type
    if pa.types.is_integer(t) or (pa.types.is_null(t) and not len(arr)):  # [] has type null
        kind = "int"
    elif pa.types.is_floating(t) or pa.types.is_decimal(t):
        kind = "float"
    elif pa.types.is_boolean(t):
        raise InvalidParameterValue(
            f"Invalid value for parameter '{name}': the array is boolean; bool is not a"
            " number here. Cast it to float64 (or int64) if you mean 0/1."
        )
    else:
        raise InvalidParameterValue(
            f"Invalid value for parameter '{name}': the array has type {t}; expected integers"
            " or floats."
        )
    if arr.null_count:
        hint = "use NaN for a missing value" if name == "values" else "every point needs one"
        raise InvalidParameterValue(
            f"Invalid value for parameter '{name}': {arr.null_count} missing (null) entries;"
            f" {hint}."
        )
    return kind


def _int64_array(arr: pa.Array, name: str, minimum: int, rule: str) -> pa.Array:
    import pyarrow as pa
    import pyarrow.compute as pc

    def fail(detail: str) -> InvalidParameterValue:
        return InvalidParameterValue(f"Invalid value for parameter '{name}': {detail}. {rule}")

    if _numeric_kind(arr, name) == "float":
        arr = arr.cast(pa.float64())
        if len(arr):
            if not pc.all(pc.is_finite(arr)).as_py():
                raise fail("it contains NaN or +/-inf")
            if name == "steps":
                if not pc.all(pc.equal(pc.floor(arr), arr)).as_py():
                    raise fail("it contains numbers with a fractional part")
            else:  # timestamps: fractions of a millisecond are dropped, as for scalars
                arr = pc.floor(arr)
            lo, hi = pc.min_max(arr).values()
            # 2.0**63 is the first float64 past INT64_MAX.
            if lo.as_py() < minimum or hi.as_py() >= 2.0**63:
                raise fail(f"values range from {lo.as_py()} to {hi.as_py()}")
        return arr.cast(pa.int64(), safe=False)
    if len(arr):
        lo, hi = pc.min_max(arr).values()
        if lo.as_py() < minimum or hi.as_py() > INT64_MAX:
            raise fail(f"values range from {lo.as_py()} to {hi.as_py()}")
    return arr.cast(pa.int64(), safe=False)


def check_metric_arrays(
    values: Any, steps: Any = None, timestamps: Any = None
) -> tuple[pa.Array, pa.Array | None, pa.Array | None]:
    """Validate many points of one metric at once; return Arrow ``float64, int64, int64``.

    Each argument is a 1-D NumPy array, Arrow (chunked) array or list; ``steps`` and
    ``timestamps`` may also be one number, repeated for every point, or ``None``, returned
    as ``None`` for the caller to fill with its defaults. The rules are those of
    :func:`check_metric_value`, :func:`check_step` and :func:`check_timestamp`, applied with
    Arrow compute kernels: values are integers or floats (NaN/inf kept, bool and null
    refused), steps are whole numbers in int64, timestamps are whole, non-negative
    milliseconds, and all three have the same length.
    """
    import pyarrow as pa

    vals = _as_arrow(values, "values")
    _numeric_kind(vals, "values")
    vals = vals.cast(pa.float64(), safe=False)  # large ints round, as float(int) does
    n = len(vals)

    def column(data: Any, name: str, minimum: int, rule: str, scalar_check: Any) -> pa.Array | None:
        if data is None:
            return None
        if isinstance(data, (numbers.Number, pa.Scalar)) or (
            hasattr(data, "ndim") and data.ndim == 0
        ):
            scalar = data.as_py() if isinstance(data, pa.Scalar) else data
            if hasattr(scalar, "item"):
                scalar = scalar.item()
            return pa.repeat(pa.scalar(scalar_check(scalar), pa.int64()), n)
        arr = _int64_array(_as_arrow(data, name), name, minimum, rule)
        if len(arr) != n:
            raise InvalidParameterValue(
                f"Invalid value for parameter '{name}': {len(arr)} entries for {n} values."
                " Pass one step and one timestamp per value (or a single number for all)."
            )
        return arr

    step_arr = column(
        steps, "steps", INT64_MIN, "Steps must be valid longs (64-bit integers).", check_step
    )
    ts_arr = column(
        timestamps,
        "timestamps",
        0,
        "Timestamps must be nonnegative longs (64-bit integers): milliseconds since the epoch.",
        check_timestamp,
    )
    return vals, step_arr, ts_arr


# ---------------------------------------------------------------------------------------------
# Params and tags
# ---------------------------------------------------------------------------------------------


def _limit_text(entity: str, limit: int, value: Any, truncate: bool, hint: str) -> str:
    text = value if type(value) is str else str(value)  # MLflow's client logs str(value)
    check_text(text, entity)
    if len(text) <= limit:
        return text
    if truncate:
        # MLflow's default (MLFLOW_TRUNCATE_LONG_VALUES=true): keep the head, log a warning.
        _logger.warning(
            "%s '%s...' (%d characters) is truncated to %d characters to meet the length limit.",
            entity,
            text[:100],
            len(text),
            limit,
        )
        return text[:limit]
    raise _too_long(entity, limit, len(text), hint)


def check_param_value(value: Any, *, truncate: bool = True) -> str:
    """A param value as ``str(value)``, at most :data:`MAX_PARAM_VAL_LENGTH` characters.

    Longer values are cut to the limit with a logged warning when ``truncate`` (MLflow's
    default behaviour), refused otherwise.
    """
    return _limit_text(
        "Param value",
        MAX_PARAM_VAL_LENGTH,
        value,
        truncate,
        "Log long text as an artifact (log_text / log_dict) instead.",
    )


def check_param(key: Any, value: Any, *, truncate: bool = True) -> tuple[str, str]:
    """``(key, value)`` of one param, both checked."""
    return check_param_key(key), check_param_value(value, truncate=truncate)


def check_tag_value(value: Any, *, truncate: bool = True, path: str = "value") -> str:
    """A run tag value as ``str(value)``, at most :data:`MAX_TAG_VAL_LENGTH` characters.

    ``truncate`` works as in :func:`check_param_value`.
    """
    return _limit_text(
        path,
        MAX_TAG_VAL_LENGTH,
        value,
        truncate,
        "Log long text as an artifact (log_text / log_dict) instead.",
    )


def check_tag(key: Any, value: Any, *, truncate: bool = True) -> tuple[str, str]:
    """``(key, value)`` of one run tag, both checked."""
    return check_tag_key(key), check_tag_value(value, truncate=truncate)


def check_experiment_tag(key: Any, value: Any) -> tuple[str, str]:
    """``(key, value)`` of an experiment tag: value up to 20,000 characters, never truncated."""
    key = check_tag_key(key)  # MAX_EXPERIMENT_TAG_KEY_LENGTH == MAX_ENTITY_KEY_LENGTH
    text = check_text(value if type(value) is str else str(value), "value")
    if len(text) > MAX_EXPERIMENT_TAG_VAL_LENGTH:
        raise _too_long(
            "value",
            MAX_EXPERIMENT_TAG_VAL_LENGTH,
            len(text),
            "Store long text as an artifact instead.",
        )
    return key, text


def check_param_keys_unique(keys: Iterable[str]) -> None:
    """A batch may hold each param key once (even with the same value), as in MLflow."""
    seen: set[str] = set()
    dupes = []
    for key in keys:
        if key in seen:
            dupes.append(key)
        seen.add(key)
    if dupes:
        raise InvalidParameterValue(
            f"Duplicate parameter keys have been submitted: {dupes}. Please ensure "
            "the request contains only one param value per param key."
        )


def check_param_unchanged(run_id: str, key: str, old_value: str, new_value: str) -> None:
    """Params are immutable: the same value again is fine, a different one is an error.

    The wording is MLflow's. Its client's ``log_param`` appends :data:`PARAM_VALIDATION_MSG`
    to this (and to every other INVALID_PARAMETER_VALUE error of ``log_param``).
    """
    if old_value != new_value:
        raise InvalidParameterValue(
            f"Changing param values is not allowed. Param with key='{key}' was already"
            f" logged with value='{old_value}' for run ID='{run_id}'. Attempted logging"
            f" new value '{new_value}'."
        )


def check_params_unchanged(
    run_id: str, existing: Mapping[str, str], params: Iterable[tuple[str, str]]
) -> None:
    """The batch form (``log_batch``): every param whose value differs, in one message."""
    changed = [
        {"key": key, "old_value": existing[key], "new_value": value}
        for key, value in params
        if key in existing and existing[key] != value
    ]
    if changed:
        raise InvalidParameterValue(
            "Changing param values is not allowed. Params were already"
            f" logged='{changed}' for run ID='{run_id}'."
        )


# ---------------------------------------------------------------------------------------------
# Batches and search
# ---------------------------------------------------------------------------------------------


def _batch_limit(entity: str, limit: int, length: int) -> None:
    if length > limit:
        raise InvalidParameterValue(
            f"A batch logging request can contain at most {limit} {entity}. "
            f"Got {length} {entity}. Please split up {entity} across multiple"
            " requests and try again."
        )


def check_batch_limits(n_metrics: int, n_params: int, n_tags: int) -> None:
    """The sizes of one ``log_batch`` request (REST and store level).

    MLflow's Python client never hits these: it splits a large ``log_batch`` into requests
    that fit. evtrack's client should do the same.
    """
    _batch_limit("metrics", MAX_METRICS_PER_BATCH, n_metrics)
    _batch_limit("params", MAX_PARAMS_TAGS_PER_BATCH, n_params)
    _batch_limit("tags", MAX_PARAMS_TAGS_PER_BATCH, n_tags)
    _batch_limit("metrics, params, and tags", MAX_ENTITIES_PER_BATCH, n_metrics + n_params + n_tags)


def check_batch_request_size(n_bytes: int) -> None:
    """The body of a REST ``runs/log-batch`` request: at most 1,000,000 bytes."""
    if n_bytes > MAX_BATCH_LOG_REQUEST_SIZE:
        raise InvalidParameterValue(
            f"Batched logging API requests must be at most {MAX_BATCH_LOG_REQUEST_SIZE} bytes,"
            f" got a request of size {n_bytes}."
        )


def check_filter_clauses(count: int, filter_string: str) -> None:
    """A search filter has at most :data:`MAX_FILTER_CLAUSES` comparisons."""
    if count > MAX_FILTER_CLAUSES:
        shown = filter_string if len(filter_string) <= 200 else filter_string[:200] + "..."
        raise InvalidParameterValue(
            f"Invalid filter {shown!r}: more than {MAX_FILTER_CLAUSES} comparisons. Narrow "
            "the search with fewer conditions, or run SQL (evtrack.sql) for complex queries."
        )


def check_max_results(
    max_results: Any, *, threshold: int = SEARCH_MAX_RESULTS_THRESHOLD, allow_none: bool = False
) -> int | None:
    """A ``max_results`` argument: an integer from 1 to ``threshold`` (or None if allowed)."""
    if max_results is None and allow_none:
        return None
    number = None if isinstance(max_results, bool) else _whole_number(max_results)
    if isinstance(max_results, float):
        number = None  # MLflow's protobuf field is an int; 10.0 is a caller's mistake
    if number is None or number < 1:
        raise InvalidParameterValue(
            f"Invalid value {max_results} for parameter 'max_results' supplied. It must be "
            "a positive integer"
        )
    if number > threshold:
        raise InvalidParameterValue(
            f"Invalid value {max_results} for parameter 'max_results' supplied. It must be at "
            f"most {threshold}"
        )
    return number


# ---------------------------------------------------------------------------------------------
# Ids and names
# ---------------------------------------------------------------------------------------------


def check_run_id(run_id: Any, path: str = "run_id") -> str:
    """A run id: a letter or digit, then up to 255 letters, digits, ``_`` or ``-``."""
    if not isinstance(run_id, str) or _RUN_ID_RE.fullmatch(run_id) is None:
        raise _invalid_value(
            path,
            run_id,
            "Run IDs are 1 to 256 characters: a letter or digit, then letters, digits,"
            " underscores (_) or dashes (-).",
        )
    return str(run_id)


def check_experiment_id(experiment_id: Any) -> str:
    """An experiment id as ``str``: an int >= 0, or a string of 1 to 64 characters that
    starts with a letter or digit, then letters, digits, ``_`` or ``-``."""
    if isinstance(experiment_id, int) and not isinstance(experiment_id, bool):
        experiment_id = str(experiment_id)
    elif not isinstance(experiment_id, str):
        raise InvalidParameterValue(
            f"Invalid experiment id: {experiment_id} of type {type(experiment_id)}. "
            "Must be one of str, int, or None."
        )
    if _EXPERIMENT_ID_RE.fullmatch(experiment_id) is None:
        raise InvalidParameterValue(
            f"Invalid experiment ID: '{experiment_id}'. Experiment IDs are 1 to 64 characters:"
            " a letter or digit, then letters, digits, underscores (_) or dashes (-)."
        )
    return str(experiment_id)


def check_experiment_name(name: Any) -> str:
    """An experiment name: a string, not blank, at most 500 characters."""
    if name is None or (isinstance(name, str) and not name.strip()):
        raise InvalidParameterValue(
            f"Invalid experiment name: '{name}'. Experiment names must be non-blank strings."
        )
    if not isinstance(name, str):
        raise InvalidParameterValue(f"Invalid experiment name: {name}. Expects a string.")
    check_text(name, "name")
    if len(name) > MAX_EXPERIMENT_NAME_LENGTH:
        raise _too_long("name", MAX_EXPERIMENT_NAME_LENGTH, len(name), "Use a shorter name.")
    return str(name)


def check_run_name(name: Any, *, tag_value: str | None = None) -> str | None:
    """A run name, or None when the caller should generate one (``None`` or ``""``).

    ``tag_value`` is the ``mlflow.runName`` tag passed to the same call, if any; MLflow
    refuses the pair when both are set and differ.
    """
    if name is None or name == "":
        return None
    if not isinstance(name, str):
        raise InvalidParameterValue(
            f"Invalid run name: {_fmt(name)}. Expects a string, got {type(name).__name__}."
        )
    check_text(name, "run_name")
    if len(name) > MAX_RUN_NAME_LENGTH:
        raise _too_long("run_name", MAX_RUN_NAME_LENGTH, len(name), "Use a shorter name.")
    if tag_value and tag_value != name:
        raise InvalidParameterValue(
            "Both 'run_name' argument and 'mlflow.runName' tag are specified, but with "
            f"different values (run_name='{name}', mlflow.runName='{tag_value}')."
        )
    return str(name)


# ---------------------------------------------------------------------------------------------
# Paths
# ---------------------------------------------------------------------------------------------

_DRIVE_RE = re.compile(r"[A-Za-z]:")
_URI_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:/")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


def _unquote_fully(text: str) -> str:
    # Like MLflow's validate_path_is_safe, look through any depth of %-encoding ("%252e").
    for _ in range(10):
        decoded = urllib.parse.unquote(text)
        if decoded == text:
            return text
        text = decoded
    return text


def _path_problem(path: str) -> str | None:
    if _CONTROL_RE.search(path):
        return "it contains a NUL or control character"
    if "\\" in path:
        return "it contains a backslash (use '/' between components)"
    if "#" in path:
        return "it contains '#'"
    if path.startswith("/"):
        return "it is absolute"
    if _DRIVE_RE.match(path):
        return "it starts with a drive letter"
    if _URI_RE.match(path):
        return "it is a URI, not a path"
    for part in path.split("/"):
        if part == "..":
            return "it contains a '..' component"
        if part and part != "." and not part.strip(". "):
            # "...", ". ." : Windows trims trailing dots and spaces, so these can mean "..".
            return f"it contains the component {part!r}, made only of dots and spaces"
    return None


def check_artifact_path(path: Any, *, allow_root: bool = True) -> str:
    """A path inside a run's artifact root, normalised: ``"a//b/./c/"`` -> ``"a/b/c"``.

    Refused: ``..`` components, absolute paths (``/x``, ``//server``), drive paths (``C:``),
    URIs (``file:/``, ``s3://``), backslashes, ``#``, NUL and other control characters,
    components made only of dots and spaces, and any of these hidden behind %-encoding.
    ``None`` and ``""`` mean the root; with ``allow_root=False`` they are refused.
    """
    if path is None:
        path = ""
    if not isinstance(path, str):
        raise InvalidParameterValue(
            f"Invalid path: {_fmt(path)}. Artifact paths are strings, got {type(path).__name__}."
        )
    problem = _path_problem(path)
    if problem is None:
        decoded = _unquote_fully(path)
        if decoded != path:
            problem = _path_problem(decoded)
            if problem is not None:
                problem = "once %-decoded, " + problem
    if problem is not None:
        raise InvalidParameterValue(
            f"Invalid path: {_fmt(path)}: {problem}. Artifact paths are relative paths inside"
            " the run's artifact root, with '/' between components."
        )
    normalised = "/".join(p for p in path.split("/") if p and p != ".")
    if not normalised and not allow_root:
        raise InvalidParameterValue(
            f"Invalid path: {_fmt(path)}: a file name is required, not the artifact root."
        )
    return normalised


def check_experiment_artifact_location(location: Any) -> str | None:
    """The artifact location given to ``create_experiment``: not a ``runs:/`` URI, at most
    2048 characters (MLflow's default ``MLFLOW_ARTIFACT_LOCATION_MAX_LENGTH``)."""
    if location is None:
        return None
    if not isinstance(location, str):
        raise InvalidParameterValue(
            f"Invalid artifact location: {_fmt(location)}. Expects a string (a path or URI)."
        )
    check_text(location, "artifact_location")
    if location.startswith("runs:"):
        raise InvalidParameterValue(
            f"Artifact location cannot be a runs:/ URI. Given: '{location}'"
        )
    if len(location) > MAX_ARTIFACT_LOCATION_LENGTH:
        raise InvalidParameterValue(
            "Invalid artifact path length. The length of the artifact path cannot be "
            f"greater than {MAX_ARTIFACT_LOCATION_LENGTH} characters."
        )
    return location
