"""Stage 3, persist: a leader fill and *all* its intents in one transaction before any send.

R-COPY-11: every intent is durable, with its deterministic client order id
``c<fill>-<copy>-<leg>``, before anything is sent; a skipped copy gets its outcome here
(R-COPY-7). The leader's watermark and the accumulate remainders (R-COPY-6) move in the same
transaction. Intents no leader fill caused (close, stop, resync) go through ``persist_extra``.

The hot insert is one DBAPI ``executemany`` of ``IntentRow`` named tuples: through SQLAlchemy's
executemany each row is a dict whose parameters are processed one by one; at 1,000 copies that
was most of the 100 ms between "sized" and "sent". Amounts are already in 1e-8 units (the
``Amount`` storage) and only the one timestamp goes through the column type's bind processor.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
from sqlalchemy import case, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from copytrade.domain.money import UNIT, ZERO, from_units, to_units
from copytrade.domain.sizing import SEND, SKIP_SLIPPAGE
from copytrade.engine import accept, history
from copytrade.engine.record import save_positions
from copytrade.engine.size import IntentBatch
from copytrade.engine.state import CopyState, PortfolioState
from copytrade.engine.types import FillReport, Intent
from models import FollowerOrderIntent, LeaderWatermark
from models import LeaderFill as LeaderFillRow
from models.types import utcnow

if TYPE_CHECKING:
    from copytrade.engine.core import CopyEngine


class IntentRow(NamedTuple):
    """One intent as inserted (the insert's column order); amounts in 1e-8 units."""

    leader_fill_id: int
    copy_id: int
    leg: int
    kind: str
    client_order_id: str
    symbol: str
    side: str
    quantity: int
    computed_quantity: int
    reduce_only: bool
    leverage: int | None
    leader_price: int
    created_at: object  # as the driver takes it (``stored_time``)
    status: str
    outcome: str | None
    reason_code: str | None
    reason: str | None


class ExtraOrder(NamedTuple):
    """An order no leader fill caused: a close, a stop's close or a resync."""

    copy: CopyState
    index: int | None  # the copy's place in the book (None: no longer active)
    symbol: str
    side: str
    quantity: Decimal
    reduce_only: bool


@dataclass(slots=True)
class Persisted:
    """A stored leader fill: the intents to send now, and the report so far."""

    fill_id: int
    intents: list[Intent]
    report: FillReport


INTENT_COLUMNS = IntentRow._fields
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


def insert_intents(session: Session, fill_id: int, rows: list[IntentRow]) -> list[int]:
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
    return [found[r.client_order_id] for r in rows]


def client_order_id(fill_id: int, copy_id: int, leg: int) -> str:
    """Return the deterministic client order id of (leader fill, copy, leg) (R-COPY-11)."""
    return f"c{fill_id}-{copy_id}-{leg}"


def persist_fill(
    engine: CopyEngine, ps: PortfolioState, batch: IntentBatch
) -> Persisted | FillReport:
    """Store the leader fill and every intent in one transaction; return what to send.

    A fill stored meanwhile by another process (a reconcile run) is merged, or quarantined as a
    duplicate when it came from the stream.
    """
    fill = batch.fill
    with engine.sf() as session, session.begin():
        try:
            with session.begin_nested():
                fill_id = _insert_leader_fill(session, ps, fill)
        except IntegrityError:
            return _stored_meanwhile(engine, ps, fill)
        created = stored_time(session, fill.received_at)
        rows, copy_indices = _intent_rows(ps, batch, fill_id, created)
        ids = insert_intents(session, fill_id, rows)
        save_watermark(session, ps, fill.trade, fill.position_after)
        save_accumulators(session, ps, batch.accumulated_before)
    intents = [
        _intent(ps, fill, iid, row, ci)
        for iid, row, ci in zip(ids, rows, copy_indices, strict=True)
        if row.status == "pending"
    ]
    report = FillReport(
        leader_fill_id=fill_id,
        leader_time=fill.trade.traded_at,
        received_at=fill.received_at,
        intents=len(rows),
        skipped=len(rows) - len(intents),
        sent=len(intents),
    )
    return Persisted(fill_id, intents, report)


def _insert_leader_fill(session: Session, ps: PortfolioState, fill: accept.LeaderFill) -> int:
    trade = fill.trade
    return session.execute(
        LeaderFillRow.__table__.insert().returning(LeaderFillRow.id),
        {
            "portfolio_id": ps.portfolio_id,
            "exchange_trade_id": trade.trade_id,
            "exchange_order_id": trade.order_id,
            "symbol": trade.symbol,
            "side": trade.side,
            "position_side": None,
            "price": trade.price,
            "quantity": trade.quantity,
            "fee": trade.fee or ZERO,
            "fee_asset": trade.fee_asset,
            "realised_pnl": trade.realised_pnl,
            "traded_at": trade.traded_at,
            "is_opening": fill.legs[0].opening,
            "position_before": fill.position_before,
            "source": fill.source,
            "received_at": fill.received_at,
        },
    ).scalar_one()


def _stored_meanwhile(
    engine: CopyEngine, ps: PortfolioState, fill: accept.LeaderFill
) -> FillReport:
    # Take its effect on the leader's position from the stored fills instead of counting it twice
    # or never.
    trade = fill.trade
    accept.reload_leader(engine, ps, trade.symbol)
    if fill.source != "stream":
        return FillReport(merged=True)
    accept.quarantine(
        engine,
        ps.portfolio_id,
        fill.source,
        "duplicate",
        f"trade {trade.symbol}#{trade.trade_id} already stored",
        trade,
    )
    return FillReport(quarantined="duplicate")


def _intent_rows(
    ps: PortfolioState, batch: IntentBatch, fill_id: int, created
) -> tuple[list[IntentRow], list[int]]:
    """One row per (leg, active copy), and each row's copy index in the book."""
    trade = batch.fill.trade
    price_units = to_units(trade.price.quantize(UNIT))
    futures = ps.mode == "futures"
    rows, copy_indices = [], []
    for leg, sizing in batch.legs:
        quantities = sizing.quantity_units.tolist()
        computed = sizing.computed_units.tolist()
        for i, (copy, code) in enumerate(zip(ps.copies, sizing.codes.tolist(), strict=True)):
            status, outcome, reason_code, reason = _initial_outcome(code, batch)
            rows.append(
                IntentRow(
                    leader_fill_id=fill_id,
                    copy_id=copy.copy_id,
                    leg=leg.index,
                    kind="copy",
                    client_order_id=client_order_id(fill_id, copy.copy_id, leg.index),
                    symbol=trade.symbol,
                    side=trade.side,
                    quantity=quantities[i],
                    computed_quantity=computed[i],
                    reduce_only=sizing.reduce_only,
                    leverage=copy.leverage if futures else None,
                    leader_price=price_units,
                    created_at=created,
                    status=status,
                    outcome=outcome,
                    reason_code=reason_code,
                    reason=reason,
                )
            )
            copy_indices.append(i)
    return rows, copy_indices


def _initial_outcome(
    code: int, batch: IntentBatch
) -> tuple[str, str | None, str | None, str | None]:
    """(status, outcome, reason code, reason): pending to send, or done as skipped."""
    if code == SEND:
        return "pending", None, None, None
    why_code, why = history.skip_reason(code)
    if code == SKIP_SLIPPAGE:  # a skip records both prices
        fill = batch.fill
        why = f"{why}: leader {fill.trade.price}, available {fill.reference_price}"
    return "done", "skipped", why_code, why


def _intent(
    ps: PortfolioState, fill: accept.LeaderFill, intent_id: int, row: IntentRow, copy_index: int
) -> Intent:
    return Intent(
        intent_id=intent_id,
        portfolio_id=ps.portfolio_id,
        copy=ps.copies[copy_index],
        index=copy_index,
        client_order_id=row.client_order_id,
        symbol=row.symbol,
        side=row.side,
        quantity=from_units(row.quantity),
        reduce_only=row.reduce_only,
        leverage=row.leverage,
        leader_fill_id=row.leader_fill_id,
        leader_price=fill.trade.price,
        leader_time=fill.trade.traded_at,
        leg=row.leg,
    )


def save_watermark(session: Session, ps: PortfolioState, trade, position: Decimal) -> None:
    """Move the leader's watermark of the symbol to the highest stored trade id."""
    table = LeaderWatermark.__table__
    tid = int(trade.trade_id)
    # A late fill lies below the watermark: the watermark stays the highest stored id.
    highest = case((table.c.last_trade_id < tid, tid), else_=table.c.last_trade_id)
    updated = session.execute(
        update(table)
        .where(table.c.portfolio_id == ps.portfolio_id, table.c.symbol == trade.symbol)
        .values(last_trade_id=highest, position=position, updated_at=utcnow())
    ).rowcount
    if not updated:
        # First fill of a symbol never baselined: the leader started flat in it.
        ps.baselines.setdefault(trade.symbol, 0)
        session.execute(
            table.insert(),
            {
                "portfolio_id": ps.portfolio_id,
                "symbol": trade.symbol,
                "last_trade_id": tid,
                "position": position,
                "baseline_trade_id": 0,
                "baseline_position": ZERO,
                "updated_at": utcnow(),
            },
        )


def save_accumulators(session: Session, ps: PortfolioState, before: dict) -> None:
    """Persist accumulate remainders that sizing changed (R-COPY-6 accumulate)."""
    touched = {}
    for symbol, acc in ps.book.accumulated.items():
        old = before.get(symbol)
        changed = (
            np.nonzero(acc != old)[0]
            if old is not None and len(old) == len(acc)
            else np.nonzero(acc)[0]
        )
        for i in changed:
            copy = ps.copies[int(i)]
            pos = copy.position(symbol)
            pos.accumulated = from_units(acc[int(i)])
            touched[(copy.copy_id, symbol)] = pos
    save_positions(session, touched)


def persist_extra(engine: CopyEngine, ps: PortfolioState, orders, kind: str) -> list[Intent]:
    """Persist intents that no leader fill caused (close, stop, resync) before sending them."""
    now = utcnow()
    orders = [ExtraOrder(*o) for o in orders]
    rows = [
        {
            "leader_fill_id": None,
            "copy_id": o.copy.copy_id,
            "leg": 0,
            "kind": kind,
            "client_order_id": f"{kind[0]}{o.copy.copy_id}-{uuid.uuid4().hex[:24]}",
            "symbol": o.symbol,
            "side": o.side,
            "quantity": o.quantity,
            "computed_quantity": o.quantity,
            "reduce_only": o.reduce_only,
            "leverage": o.copy.leverage if ps.mode == "futures" else None,
            "leader_price": engine.prices.get(o.symbol),
            "created_at": now,
            "status": "pending",
        }
        for o in orders
    ]
    with engine.sf() as session, session.begin():
        ids = session.scalars(
            FollowerOrderIntent.__table__.insert().returning(
                FollowerOrderIntent.id, sort_by_parameter_order=True
            ),
            rows,
        ).all()
    engine.inflight.update(ids)
    return [
        Intent(
            intent_id=iid,
            portfolio_id=ps.portfolio_id,
            copy=o.copy,
            index=o.index,
            client_order_id=row["client_order_id"],
            symbol=o.symbol,
            side=o.side,
            quantity=o.quantity,
            reduce_only=o.reduce_only,
            leverage=row["leverage"],
            leader_fill_id=None,
            leader_price=row["leader_price"],
            leader_time=None,
            kind=kind,
        )
        for iid, row, o in zip(ids, rows, orders, strict=True)
    ]
