"""Column types: exact money stored as BIGINT 1e-8 units, timestamps always UTC."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import BigInteger, DateTime
from sqlalchemy.types import TypeDecorator

from copytrade import clock
from copytrade.domain.money import from_units, to_units


class Amount(TypeDecorator[Decimal]):
    """A Decimal stored exactly as integer units of 1e-8 (SQL sums stay exact on every database).

    Raw SQL (validation, dbt) sees the integer units; the ORM sees Decimal.
    """

    impl = BigInteger
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        return to_units(value)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return from_units(value)


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on SQLite and PostgreSQL alike (naive values are refused)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: timestamps must carry a time zone")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return clock.now()
