"""Time as evtrack stores it: integer milliseconds since the epoch (UTC), MLflow's unit."""

from __future__ import annotations

import time

__all__ = ["now_ms"]


def now_ms() -> int:
    """The current wall-clock time in milliseconds since the epoch."""
    return int(time.time() * 1000)
