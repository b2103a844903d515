"""Bulk statements straight to the DB-API: the ledger and settlement write tens of thousands of rows.

SQLAlchemy's per-row parameter processing (type decorators, JSON, datetimes) cost more than the
database itself at this volume (measured: about three quarters of a settlement batch's time). Here
values are converted once, by us, to exactly what the column types would have stored — integer
units for amounts, SQLAlchemy's SQLite datetime text or an aware datetime for PostgreSQL, JSON
text — and handed to ``executemany`` (SQLite) or ``COPY`` (PostgreSQL).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy.orm import Session

from copytrade.domain.money import to_units


def units(value: Decimal, field: str = "amount") -> int:
    """Return an exact 8-decimal amount as integer units (the fast path of ``to_units``)."""
    if not isinstance(value, Decimal):
        return to_units(value, field)
    scaled = value.scaleb(8)
    whole = int(scaled)
    if whole != scaled or not -(2**63) < whole < 2**63:
        return to_units(value, field)  # raises with the field and the reason
    return whole


class Raw:
    """Dialect details of one session's connection for raw bulk statements."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.postgres = session.get_bind().dialect.name == "postgresql"
        self.mark = "%s" if self.postgres else "?"
        self._stamps: dict[datetime, object] = {}

    def stamp(self, at: datetime | None):
        """Return ``at`` as the UtcDateTime column stores it (a batch shares a few instants)."""
        if at is None:
            return None
        stamp = self._stamps.get(at)
        if stamp is None:
            utc = at.astimezone(UTC)
            stamp = utc if self.postgres else utc.strftime("%Y-%m-%d %H:%M:%S.%f")
            self._stamps[at] = stamp
        return stamp

    def json(self, value) -> str | None:
        return None if value is None else json.dumps(value)

    def placeholder(self, cast: str | None = None) -> str:
        return f"{self.mark}::{cast}" if (cast and self.postgres) else self.mark

    def insert(
        self,
        table: str,
        columns: Sequence[str],
        rows: Sequence[Sequence],
        *,
        casts: dict[str, str] | None = None,
        suffix: str = "",
    ) -> None:
        """``INSERT INTO table (columns) VALUES (…)`` for every row, in one ``executemany``.

        On PostgreSQL a plain insert (no ``suffix``) is one ``COPY``: the server parses the text
        of each value as its column's type, so ``casts`` are not needed there.
        """
        if not rows:
            return
        if self.postgres and not suffix:
            cursor = self.session.connection().connection.driver_connection.cursor()
            with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            cursor.close()
            return
        casts = casts or {}
        values = ", ".join(self.placeholder(casts.get(c)) for c in columns)
        sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({values}){suffix}"
        self.session.connection().exec_driver_sql(sql, list(map(tuple, rows)))

    def execute_many(self, sql: str, rows: Sequence[Sequence]) -> None:
        """Run ``sql`` (written with ``?`` placeholders) once per row."""
        if rows:
            if self.postgres:
                sql = sql.replace("?", "%s")
            self.session.connection().exec_driver_sql(sql, list(map(tuple, rows)))

    def select_in(self, sql: str, values: Sequence, chunk: int = 900) -> list[tuple]:
        """Run ``sql`` — ending in ``IN ({in})`` — for ``values`` in chunks; return every row."""
        rows: list[tuple] = []
        values = list(values)
        for start in range(0, len(values), chunk):
            part = values[start : start + chunk]
            marks = ", ".join([self.mark] * len(part))
            rows += (
                self.session.connection().exec_driver_sql(sql.format(in_=marks), tuple(part)).all()
            )
        return rows
