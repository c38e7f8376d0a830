"""Resource caps for user SQL (``POST /api/evtrack/sql``), read-only servers included.

One request could otherwise take several GiB: each DuckDB database defaults to 80 % of
the machine's RAM, several requests run at once, and a wide answer is held in memory
and sent whole. A server therefore has, per worker process:

* a **memory budget** (``--sql-memory``, default :func:`default_memory`: 1/8 of RAM,
  at most 4 GiB), shared by at most ``concurrency`` queries at a time, so each query's
  DuckDB gets ``memory_limit = budget / concurrency`` and no temporary directory to
  spill to: a query that needs more fails with DuckDB's out-of-memory error
  (400 ``INVALID_PARAMETER_VALUE``), the server stays up;
* a **concurrency limit** (``--sql-concurrency``, default 2): a query that cannot start
  within :data:`QUEUE_SECONDS` (10 s) gets 429 ``RESOURCE_EXHAUSTED`` with ``Retry-After``;
* an **answer cap**: at most ``max_rows`` rows (then ``"truncated": true``, as before)
  and at most ``max_answer_bytes`` of JSON (``--sql-max-answer-bytes``, default 16 MiB),
  beyond which the request fails with a message saying to select less.

With ``--workers N`` the budget is split between the workers. Limits of these caps:
the events table the views read is Arrow memory outside DuckDB's limit (it is the
store's own data, not sized by the query), and DuckDB's limit is a target its
operators honour, not a hard ceiling on the process; ``benchmarks/sql_memory.py``
measures what a heavy query costs with and without the cap.
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass, field

from evtrack.errors import InvalidParameterValue

__all__ = ["QUEUE_SECONDS", "SqlBudget", "default_memory", "parse_size"]

#: How long a query waits for a free slot before it is refused with 429.
QUEUE_SECONDS = 10.0
DEFAULT_CONCURRENCY = 2
DEFAULT_MAX_ANSWER_BYTES = 16 * 1024 * 1024

_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(%|[kmgt]?i?b?)?\s*", re.IGNORECASE)


def total_memory() -> int:
    """Physical memory of the machine in bytes (0 when the OS does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return 0


def default_memory() -> int:
    """1/8 of physical memory, between 256 MiB and 4 GiB."""
    total = total_memory() or 2 * 1024**3
    return max(256 * 1024**2, min(total // 8, 4 * 1024**3))


def parse_size(text: str | int) -> int:
    """``"512MB"``, ``"1GiB"``, ``"10%"`` (of RAM) or a number of bytes -> bytes."""
    if isinstance(text, int):
        return text
    m = _SIZE.fullmatch(text)
    if m is None:
        raise InvalidParameterValue(
            f"Invalid size {text!r}: give bytes, or a number with KB, MB, GB (or KiB, MiB, "
            "GiB), or a percentage of RAM such as 10%."
        )
    number, unit = float(m[1]), (m[2] or "").lower()
    if unit == "%":
        return int(total_memory() * number / 100)
    return int(number * _UNITS[unit[:1] if unit[:1] in _UNITS else ""])


@dataclass
class SqlBudget:
    """The caps of one worker; :meth:`slot` hands out one query's share."""

    memory_bytes: int = field(default_factory=default_memory)
    concurrency: int = DEFAULT_CONCURRENCY
    max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES
    queue_seconds: float = QUEUE_SECONDS

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise InvalidParameterValue("SQL concurrency must be at least 1.")
        if self.memory_bytes < 16 * 1024**2 * self.concurrency:
            raise InvalidParameterValue(
                f"SQL memory budget {self.memory_bytes} bytes is too small: give at least "
                f"16 MiB per concurrent query ({self.concurrency})."
            )
        self._slots = threading.BoundedSemaphore(self.concurrency)

    @property
    def per_query_bytes(self) -> int:
        return self.memory_bytes // self.concurrency

    def acquire(self) -> bool:
        """Take a query slot, waiting up to :attr:`queue_seconds`; False if none freed."""
        return self._slots.acquire(timeout=self.queue_seconds)

    def release(self) -> None:
        self._slots.release()

    def settings(self) -> list[str]:
        """DuckDB statements that bound one query (run before the configuration lock)."""
        mib = max(self.per_query_bytes // 1024**2, 16)
        return [
            f"SET memory_limit = '{mib}MiB'",
            f"SET max_memory = '{mib}MiB'",
            "SET threads = 1",
            "SET temp_directory = ''",  # no spilling to the server's disk
            "SET preserve_insertion_order = false",
        ]
