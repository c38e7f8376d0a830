"""``order_by`` and page tokens for the registry and logged-model searches, as MLflow's
client and REST API take them.

Registered models and model versions take MLflow's strings (``"name ASC"``,
``"last_updated_timestamp DESC"``, ``"timestamp"`` = ``last_updated_timestamp``);
logged models take MLflow 3's dicts (``{"field_name": "metrics.acc", "ascending":
False}``). Pages use the same offset tokens as ``search_runs``
(:func:`evtrack.search.next_page_token`). Missing values sort last in either direction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from evtrack.errors import InvalidParameterValue
from evtrack.search.compiler import decode_page_token, next_page_token
from evtrack.store.base import PagedList

__all__ = ["page", "parse_order_by", "sort_by"]

T = TypeVar("T")


def parse_order_by(order_by: Sequence[Any] | None, keys: dict[str, str]) -> list[tuple[str, bool]]:
    """``[(field, ascending)]`` from MLflow strings (``"name DESC"``) or logged-model
    dicts; ``keys`` maps accepted names (and aliases) to fields. ``metrics.<key>`` is
    accepted when ``keys`` has ``"metrics."``."""
    out: list[tuple[str, bool]] = []
    for clause in order_by or []:
        if isinstance(clause, dict):
            name, ascending = str(clause.get("field_name", "")), bool(clause.get("ascending", True))
        else:
            parts = str(clause).split()
            if (
                not parts
                or len(parts) > 2
                or (len(parts) == 2 and parts[1].upper() not in ("ASC", "DESC"))
            ):
                raise InvalidParameterValue(f"Invalid order_by clause {clause!r}.")
            name, ascending = parts[0].strip("`"), len(parts) == 1 or parts[1].upper() == "ASC"
        if name.startswith("metrics.") and "metrics." in keys and len(name) > 8:
            out.append((name, ascending))
        elif name in keys:
            out.append((keys[name], ascending))
        else:
            allowed = sorted(k for k in keys if k != "metrics.")
            raise InvalidParameterValue(
                f"Invalid order_by field {name!r}: use one of {allowed}"
                + (" or metrics.<key>." if "metrics." in keys else ".")
            )
    return out


def sort_by(
    items: list[T], order: list[tuple[str, bool]], value: Callable[[T, str], Any]
) -> list[T]:
    """``items`` sorted by ``order`` (first clause most significant); stable, so the
    store's default order breaks ties."""
    for field, ascending in reversed(order):
        keyed = [(value(i, field), i) for i in items]
        known = [pair for pair in keyed if pair[0] is not None]
        known.sort(key=_first, reverse=not ascending)
        items = [i for _, i in known] + [i for v, i in keyed if v is None]
    return items


def _first(pair: tuple[Any, Any]) -> Any:
    return pair[0]


def page(items: list[T], max_results: int | None, page_token: str | None) -> PagedList[T]:
    """One page of ``items`` from ``page_token``'s offset; ``token`` is the next page's."""
    start = decode_page_token(page_token)
    if not max_results:
        return PagedList(items[start:], None)
    end = start + max_results
    return PagedList(items[start:end], next_page_token(end) if end < len(items) else None)
