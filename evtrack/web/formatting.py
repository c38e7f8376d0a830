"""How values look on the pages: times, durations, metric values, sizes.

Pure functions, used as Jinja filters. Times are rendered in UTC on the server inside
``<time datetime=…>``; the page's script rewrites them in the reader's time zone.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

__all__ = ["FILTERS", "fmt_duration", "fmt_iso", "fmt_size", "fmt_time", "fmt_value"]


def fmt_iso(ms: int | None) -> str:
    if ms is None:
        return ""
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).isoformat(timespec="seconds")


def fmt_time(ms: int | None) -> str:
    if ms is None:
        return "—"
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def fmt_duration(ms: int | float | None) -> str:
    if ms is None:
        return "—"
    ms = max(0, int(ms))
    if ms < 1000:
        return f"{ms}ms"
    s = ms / 1000
    if s < 60:
        return f"{s:.1f}s"
    m, s = divmod(int(s), 60)
    if m < 60:
        return f"{m}m {s:02d}s"
    h, m = divmod(m, 60)
    if h < 48:
        return f"{h}h {m:02d}m"
    d, h = divmod(h, 24)
    return f"{d}d {h:02d}h"


def fmt_value(value: Any) -> str:
    """A metric or param value: numbers to 6 significant digits, text as it is."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        if value == int(value) and abs(value) < 1e15:
            return str(int(value))
        return f"{value:.6g}"
    return str(value)


def fmt_size(size: int | None) -> str:
    if size is None:
        return ""
    value = float(size)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # pragma: no cover


FILTERS = {
    "iso": fmt_iso,
    "time": fmt_time,
    "duration": fmt_duration,
    "value": fmt_value,
    "size": fmt_size,
}
