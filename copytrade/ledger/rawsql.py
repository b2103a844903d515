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
        self._json: dict[int, tuple[object, str]] = {}
        self._cursor = None

    def cursor(self):
        """The driver's cursor on the session's connection, inside its transaction.

        Statements go to it directly: SQLAlchemy's ``exec_driver_sql`` costs tens of
        microseconds of CPU per statement, which a posting of a few transfers notices.
        """
        if self._cursor is None:
            self._cursor = self.session.connection().connection.driver_connection.cursor()
        return self._cursor

    def rows(self, sql: str, params: Sequence = ()) -> list[tuple]:
        """Run ``sql`` (``?`` placeholders on both databases) and return its rows, if any."""
        cursor = self.cursor()
        cursor.execute(sql.replace("?", "%s") if self.postgres else sql, tuple(params))
        return cursor.fetchall() if cursor.description is not None else []

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
        """Return ``value`` as JSON text; the same object (a fill's refs, shared by the fill's
        transfers) is encoded once per ``Raw``."""
        if value is None:
            return None
        known = self._json.get(id(value))
        if known is not None and known[0] is value:
            return known[1]
        text = json.dumps(value)
        self._json[id(value)] = (value, text)  # holding the value keeps its id unique
        return text

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
            with self.cursor().copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            return
        casts = casts or {}
        values = ", ".join(self.placeholder(casts.get(c)) for c in columns)
        sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({values}){suffix}"
        self.cursor().executemany(sql, rows)

    def execute_many(self, sql: str, rows: Sequence[Sequence]) -> None:
        """Run ``sql`` (written with ``?`` placeholders) once per row."""
        if rows:
            if self.postgres:
                sql = sql.replace("?", "%s")
            self.cursor().executemany(sql, rows)

    def select_matching(
        self, sql: str, column: str, values: Sequence, array_type: str
    ) -> list[tuple]:
        """Run ``sql`` (``… WHERE {column} IN ({in_})``) for every value in ``values``.

        PostgreSQL gets one statement joining an array: a long ``IN`` list on a table whose
        statistics lag behind (a ledger that grew since the last ANALYZE) was planned as a
        sequential scan per list (measured: 0.5 s per 900 keys on a 30,000-transfer ledger), and
        psycopg spends client CPU splitting a query of 900 placeholders. SQLite: lists of 900.
        """
        values = list(values)
        if not values:
            return []
        if self.postgres:
            joined = sql.replace(
                f"WHERE {column} IN ({{in_}})",
                f"JOIN unnest(?::{array_type}[]) AS wanted(v) ON {column} = wanted.v",
            )
            assert joined != sql, f"select_matching: no 'WHERE {column} IN ({{in_}})' in {sql!r}"
            return self.rows(joined, (values,))
        rows: list[tuple] = []
        for start in range(0, len(values), 900):  # SQLite's bound-parameter limit
            part = values[start : start + 900]
            rows += self.rows(sql.format(in_=", ".join("?" * len(part))), part)
        return rows

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
