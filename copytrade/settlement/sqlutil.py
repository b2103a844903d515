"""Small SQL helpers of the settlement's bulk paths: raw integer units, chunked IN lists."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TypeVar

from sqlalchemy import BigInteger, type_coerce

T = TypeVar("T")
CHUNK = 900  # bound parameters per IN list (SQLite's historical limit is 999)


def raw_units(column):
    """Select an Amount column as its stored integer 1e-8 units (no Decimal round trip)."""
    return type_coerce(column, BigInteger)


def chunks(items: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    """Yield consecutive slices of ``items`` of at most ``size``."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
