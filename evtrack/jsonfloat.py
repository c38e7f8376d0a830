"""Floats in JSON the way MLflow's REST API writes them.

JSON has no NaN or infinity; protobuf's JSON mapping, which MLflow's REST API follows,
writes them as the strings ``"NaN"``, ``"Infinity"`` and ``"-Infinity"``. Every JSON
evtrack emits or reads (the REST API, the native API, the web view's JSON twins) uses
these two functions.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["SPECIAL_FLOATS", "float_from_json", "float_to_json"]

#: The strings that stand for the floats JSON cannot spell.
SPECIAL_FLOATS = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def float_to_json(value: float) -> float | str:
    """``value`` itself if finite, else ``"NaN"``, ``"Infinity"`` or ``"-Infinity"``."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def float_from_json(value: Any) -> float:
    """A JSON number, or one of the strings of :data:`SPECIAL_FLOATS`, as a float."""
    if isinstance(value, str) and value in SPECIAL_FLOATS:
        return SPECIAL_FLOATS[value]
    return float(value)
