"""The hot insert of one leader fill's intents: one DBAPI ``executemany`` of plain tuples.

Between the leader fill and the first order sent, the engine persists an intent per active copy
(R-COPY-11: durable before anything is sent). Through SQLAlchemy's executemany each row is a dict
whose parameters are processed one by one; at 1,000 copies that was most of the 100 ms between
"sized" and "sent". Here the rows are tuples in the order of ``INTENT_COLUMNS`` (amounts already
in 1e-8 units, the ``Amount`` storage), written with the driver's own ``executemany`` inside the
session's transaction; only the one timestamp goes through the column type's bind processor.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from models import FollowerOrderIntent

INTENT_COLUMNS = (
    "leader_fill_id",
    "copy_id",
    "leg",
    "kind",
    "client_order_id",
    "symbol",
    "side",
    "quantity",
    "computed_quantity",
    "reduce_only",
    "leverage",
    "leader_price",
    "created_at",
    "status",
    "outcome",
    "reason_code",
    "reason",
)
CREATED_AT = INTENT_COLUMNS.index("created_at")
_TABLE = FollowerOrderIntent.__tablename__
_MARKS = {"qmark": "?", "format": "%s", "pyformat": "%s"}


def _mark(dialect) -> str:
    mark = _MARKS.get(dialect.paramstyle)
    if mark is None:
        raise NotImplementedError(f"paramstyle {dialect.paramstyle!r} (sqlite and psycopg only)")
    return mark


def stored_time(session: Session, value: datetime):
    """``value`` as the database driver receives it for a ``UtcDateTime`` column."""
    dialect = session.get_bind().dialect
    process = FollowerOrderIntent.__table__.c.created_at.type.bind_processor(dialect)
    return process(value) if process else value


def insert_intents(session: Session, fill_id: int, rows: list[tuple]) -> list[int]:
    """Insert one leader fill's intent rows; return their ids in the order of ``rows``."""
    if not rows:
        return []
    conn = session.connection()
    mark = _mark(conn.dialect)
    cursor = conn.connection.driver_connection.cursor()
    try:
        cursor.executemany(
            f"INSERT INTO {_TABLE} ({', '.join(INTENT_COLUMNS)}) "
            f"VALUES ({', '.join([mark] * len(INTENT_COLUMNS))})",
            rows,
        )
        cursor.execute(
            f"SELECT client_order_id, id FROM {_TABLE} WHERE leader_fill_id = {mark}", (fill_id,)
        )
        found = dict(cursor.fetchall())
    finally:
        cursor.close()
    cid = INTENT_COLUMNS.index("client_order_id")
    return [found[r[cid]] for r in rows]
