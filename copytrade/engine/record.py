"""Stage 5, record: the exchange's answers → intent outcomes, orders, fills, ledger, positions.

One transaction per batch of answers — the engine's recording thread puts the answers of
every leader fill waiting to be recorded into one (``record_many``) — R-COPY-7: every intent
ends in exactly one outcome:

1. each intent's outcome (``dispatch.outcome_of``) and its exchange order (inserted or updated
   by client order id);
2. each new follower trade (deduplicated by account, symbol and trade id) applied to the copy's
   in-memory position, stored as a follower fill with fee, rebate, leader price, slippage and copy
   delay (R-COPY-8, R-FEE-1/2/4), and turned into ledger transfers by the one posting module
   ``copytrade.ledger.fill_transfers``;
3. the transfers posted in bulk, the touched positions saved.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, NamedTuple

from sqlalchemy import select
from sqlalchemy.orm import Session

from copytrade import clock
from copytrade.db import update_rows
from copytrade.domain.fees import leader_rebate
from copytrade.domain.fills import slippage_bps
from copytrade.domain.markets import Market
from copytrade.domain.money import UNIT, ZERO
from copytrade.engine.dispatch import SendResult, outcome_of
from copytrade.engine.guards import add_day_pnl
from copytrade.engine.state import CopyState, PortfolioState
from copytrade.engine.types import Intent
from copytrade.exchange.protocol import OrderState, Trade
from copytrade.ledger import Ledger
from copytrade.ledger.errors import LedgerError
from copytrade.ledger.fill_transfers import fill_transfers
from copytrade.ledger.rawsql import Raw, units
from models import AuditEntry, CopyPosition, FollowerFill, FollowerOrder, FollowerOrderIntent
from models.types import utcnow

if TYPE_CHECKING:
    from copytrade.engine.core import CopyEngine

log = logging.getLogger(__name__)
DEFAULT_TAKER_FEE = Decimal("0.001")  # a symbol without market metadata (adopted leftovers)
POSITION_AMOUNTS = ("quantity", "average_price", "realised_pnl", "fees_paid", "accumulated")
# column → PostgreSQL type of the stored value, for the one-statement updates (``_update_many``)
POSITION_UPDATE_TYPES = {**dict.fromkeys(POSITION_AMOUNTS, "bigint"), "updated_at": "timestamptz"}
INTENT_UPDATE_TYPES = {
    "status": "text",
    "outcome": "text",
    "reason_code": "text",
    "reason": "text",
    "sent_at": "timestamptz",
    "acked_at": "timestamptz",
}
ORDER_COLUMNS = (
    "intent_id",
    "copy_id",
    "client_order_id",
    "exchange_order_id",
    "exchange_status",
    "filled_quantity",
    "average_price",
    "error_code",
    "error_message",
    "created_at",
    "updated_at",
)
ORDER_UPDATE_COLUMNS = (
    "exchange_order_id",
    "exchange_status",
    "filled_quantity",
    "average_price",
    "updated_at",
)


class IntentOutcome(NamedTuple):
    """How an intent ended (R-COPY-7), in the order of ``_update_intents``' statement."""

    status: str
    outcome: str | None
    reason_code: str | None
    reason: str | None
    sent_at: datetime | None
    acked_at: datetime | None
    intent_id: int


class FillPlan(NamedTuple):
    """An answered order with executed quantity: its trades become follower fills."""

    intent: Intent
    result: SendResult
    state: OrderState
    order_index: int  # index into the batch's exchange order rows


class FollowerFillRow(NamedTuple):
    """One follower fill as stored (``follower_fills``' columns; amounts as Decimal)."""

    order_id: int
    copy_id: int
    leader_fill_id: int | None
    exchange_account_id: int | None
    exchange_trade_id: str
    symbol: str
    side: str
    price: Decimal
    quantity: Decimal
    fee: Decimal
    fee_asset: str
    realised_pnl: Decimal | None
    traded_at: datetime
    leader_price: Decimal | None
    slippage_bps: Decimal | None
    rebate: Decimal
    copy_delay_ms: int | None

    def stored(self, raw: Raw) -> tuple:
        """The row as the column types store it: amounts in 1e-8 units, the time as the driver
        takes it (what the ORM's per-row parameter processing did, once and by hand)."""
        return (
            self.order_id,
            self.copy_id,
            self.leader_fill_id,
            self.exchange_account_id,
            self.exchange_trade_id,
            self.symbol,
            self.side,
            units(self.price, "price"),
            units(self.quantity, "quantity"),
            units(self.fee, "fee"),
            self.fee_asset,
            _units_or_none(self.realised_pnl, "realised_pnl"),
            raw.stamp(self.traded_at),
            _units_or_none(self.leader_price, "leader_price"),
            _units_or_none(self.slippage_bps, "slippage_bps"),
            units(self.rebate, "rebate"),
            self.copy_delay_ms,
        )


def _units_or_none(value: Decimal | None, field: str) -> int | None:
    return None if value is None else units(value, field)


class MarketTerms(NamedTuple):
    """What recording needs of a copy's market: the assets and the taker fee rate."""

    base: str
    quote: str
    taker_fee: Decimal

    @classmethod
    def of(cls, market: Market | None, symbol: str) -> MarketTerms:
        if market is None:
            return cls(symbol.removesuffix("USDT"), "USDT", DEFAULT_TAKER_FEE)
        return cls(market.base, market.quote, market.taker_fee)


@dataclass(slots=True)
class Recorded:
    """What one batch writes besides outcomes and orders."""

    fill_rows: list[FollowerFillRow]
    transfers: list
    touched: dict[tuple[int, str], object]


class Answered(NamedTuple):
    """One batch of send results to record: the portfolio (None: no longer active), the
    intents and their results in the same order."""

    ps: PortfolioState | None
    intents: list[Intent]
    results: list[SendResult]


def record(
    engine: CopyEngine,
    ps: PortfolioState | None,
    intents: list[Intent],
    results: list[SendResult],
) -> None:
    """Record send results: outcomes, orders, fills, ledger postings and positions."""
    record_many(engine, [Answered(ps, intents, results)])


def record_many(engine: CopyEngine, batches: list[Answered]) -> None:
    """Record several batches (leader fills of different portfolios) in ONE transaction.

    The statements are the same as for one batch, each over all their rows: one chain-head lock
    and one commit for all. Measured (``benchmarks/scale_out.py``, 250 orders per fill): a
    fill's recording took ~60 ms of CPU but ~250 ms of wall time, most of it ~15 round trips
    to PostgreSQL and the commit, each waiting for a CPU on a loaded machine.
    """
    batches = [b for b in batches if b.intents]
    if not batches:
        return
    intent_updates, order_rows, plans, owners = [], [], [], []
    for b in batches:
        updates, rows, answered = _outcomes(b.intents, b.results)
        offset = len(order_rows)
        intent_updates += updates
        order_rows += rows
        plans += [p._replace(order_index=p.order_index + offset) for p in answered]
        owners += [b.ps] * len(answered)
    try:
        with engine.sf() as session, session.begin():
            _update_intents(Raw(session), intent_updates)
            order_ids = upsert_orders(session, order_rows)
            record_fills(engine, session, owners, plans, order_ids)
    except Exception:
        # The fills were already applied to the in-memory positions when the transaction
        # failed (e.g. a dropped database session): reload the copies from the database
        # before the next fill, so the sweep's adoption of these orders counts them once.
        for b in batches:
            if b.ps is not None:
                b.ps.copies_stale = True
        raise
    for b in batches:
        engine.inflight.difference_update(it.intent_id for it in b.intents)


def _outcomes(
    intents: list[Intent], results: list[SendResult]
) -> tuple[list[IntentOutcome], list[dict], list[FillPlan]]:
    """Each intent's outcome row, each answered order's row, and the orders that executed."""
    now = utcnow()
    intent_updates, order_rows, plans = [], [], []
    for it, res in zip(intents, results, strict=True):
        status, outcome, code, reason = outcome_of(res)
        intent_updates.append(
            IntentOutcome(status, outcome, code, reason, res.sent_at, res.acked_at, it.intent_id)
        )
        if res.state is None and res.rejected is None:
            continue
        order_rows.append(_order_row(it, res, now))
        if res.state is not None and res.state.filled_quantity > 0:
            plans.append(FillPlan(it, res, res.state, len(order_rows) - 1))
    return intent_updates, order_rows, plans


def _update_intents(raw: Raw, updates: list[IntentOutcome]) -> None:
    """One raw executemany: SQLAlchemy's per-row parameter processing cost more than the update."""
    _update_many(
        raw,
        FollowerOrderIntent.__tablename__,
        INTENT_UPDATE_TYPES,
        [
            (u.status, u.outcome, u.reason_code, u.reason)
            + (raw.stamp(u.sent_at), raw.stamp(u.acked_at), u.intent_id)
            for u in updates
        ],
    )


def _update_many(raw: Raw, table: str, types: dict[str, str], rows: list[tuple]) -> None:
    """``UPDATE table SET column = … WHERE id = …`` for each row (the id last, after ``types``'
    columns in order). On PostgreSQL one statement over ``unnest`` of one array per column: an
    executemany there is a round of driver work per row."""
    if not rows:
        return
    columns = list(types)
    if not raw.postgres:
        sets = ", ".join(f"{c} = ?" for c in columns)
        raw.execute_many(f"UPDATE {table} SET {sets} WHERE id = ?", rows)
        return
    arrays = ", ".join(f"%s::{types[c]}[]" for c in columns) + ", %s::bigint[]"
    sets = ", ".join(f"{c} = v.{c}" for c in columns)
    raw.cursor().execute(
        f"UPDATE {table} AS t SET {sets} FROM unnest({arrays}) AS v({', '.join(columns)}, id) "
        "WHERE t.id = v.id",
        [list(values) for values in zip(*rows, strict=True)],
    )


def _order_row(it: Intent, res: SendResult, now: datetime) -> dict:
    state = res.state
    return {
        "intent_id": it.intent_id,
        "copy_id": it.copy.copy_id,
        "client_order_id": it.client_order_id,
        "exchange_order_id": state.order_id if state else None,
        "exchange_status": state.status if state else "rejected",
        "filled_quantity": state.filled_quantity if state else ZERO,
        "average_price": state.average_price if state else None,
        "error_code": None if state else str(res.rejected.code),
        "error_message": None if state else str(res.rejected)[:2000],
        "created_at": now,
        "updated_at": now,
    }


def upsert_orders(session: Session, rows: list[dict]) -> list[int]:
    """Insert new exchange orders, update known ones (by client order id); return their ids."""
    if not rows:
        return []
    existing = dict(
        session.execute(
            select(FollowerOrder.client_order_id, FollowerOrder.id).where(
                FollowerOrder.client_order_id.in_([r["client_order_id"] for r in rows])
            )
        ).all()
    )
    fresh = [r for r in rows if r["client_order_id"] not in existing]
    if fresh:
        raw = Raw(session)
        raw.insert(
            FollowerOrder.__tablename__, ORDER_COLUMNS, [_stored_order(raw, r) for r in fresh]
        )
        existing.update(
            raw.select_in(
                f"SELECT client_order_id, id FROM {FollowerOrder.__tablename__} "
                "WHERE client_order_id IN ({in_})",
                [r["client_order_id"] for r in fresh],
            )
        )
    stale = [r for r in rows if r not in fresh]
    update_rows(
        session,
        FollowerOrder.__table__,
        [{**r, "cid": r["client_order_id"]} for r in stale],
        key="client_order_id",
        key_param="cid",
        columns=ORDER_UPDATE_COLUMNS,
    )
    return [existing[r["client_order_id"]] for r in rows]


def _stored_order(raw: Raw, row: dict) -> tuple:
    """An order row as the column types store it, in ``ORDER_COLUMNS`` order."""
    average = row["average_price"]
    return (
        row["intent_id"],
        row["copy_id"],
        row["client_order_id"],
        row["exchange_order_id"],
        row["exchange_status"],
        units(row["filled_quantity"], "filled_quantity"),
        None if average is None else units(average, "average_price"),
        row["error_code"],
        row["error_message"],
        raw.stamp(row["created_at"]),
        raw.stamp(row["updated_at"]),
    )


def record_fills(
    engine: CopyEngine,
    session: Session,
    owners: PortfolioState | list[PortfolioState | None] | None,
    plans: list[FillPlan],
    order_ids: list[int],
) -> None:
    """Store each new follower trade as a fill, post its transfers, save the positions.

    ``owners``: the portfolio of every plan (a list in the plans' order), or one for all."""
    if not plans:
        return
    if not isinstance(owners, list):
        owners = [owners] * len(plans)
    trades_by_plan = [list(p.state.trades) or [aggregate_trade(p.intent, p.state)] for p in plans]
    known = _known_trades(session, plans, trades_by_plan)
    out = Recorded([], [], {})
    for plan, trades, ps in zip(plans, trades_by_plan, owners, strict=True):
        it, copy = plan.intent, plan.intent.copy
        terms = MarketTerms.of(engine.markets_by_kind.get(copy.kind, {}).get(it.symbol), it.symbol)
        for t in trades:
            if (copy.account_id, t.symbol, t.trade_id) in known:
                continue
            known.add((copy.account_id, t.symbol, t.trade_id))
            _record_trade(engine.venue, plan, order_ids[plan.order_index], terms, t, out)
        out.touched[(copy.copy_id, it.symbol)] = copy.position(it.symbol)
        if ps is not None and it.index is not None and it.index < len(ps.copies):
            ps.refresh_copy(it.index)
    if out.fill_rows:
        raw = Raw(session)
        raw.insert(
            FollowerFill.__tablename__,
            FollowerFillRow._fields,
            [row.stored(raw) for row in out.fill_rows],
        )
    post(session, out.transfers, engine.ledger_stream)
    save_positions(session, out.touched)


def _known_trades(session: Session, plans: list[FillPlan], trades_by_plan) -> set[tuple]:
    """(account, symbol, trade id) of the batch's trades already stored (R-COPY-11: once)."""
    ids = list({t.trade_id for trades in trades_by_plan for t in trades})
    if not ids:
        return set()
    accounts = [a for a in {p.intent.copy.account_id for p in plans} if a is not None]
    return set(
        session.execute(
            select(
                FollowerFill.exchange_account_id,
                FollowerFill.symbol,
                FollowerFill.exchange_trade_id,
            ).where(
                FollowerFill.exchange_account_id.in_(accounts or [0]),
                FollowerFill.exchange_trade_id.in_(ids),
            )
        ).all()
    )


def _record_trade(
    venue: str, plan: FillPlan, order_id: int, terms: MarketTerms, t: Trade, out: Recorded
) -> None:
    """Apply one follower trade to the copy and add its fill row and ledger transfers."""
    it, copy = plan.intent, plan.intent.copy
    if t.fee_asset is None:  # no trade details: the fee at the follower's rate
        fee, fee_asset = (t.quantity * t.price * terms.taker_fee).quantize(UNIT), terms.quote
    else:
        fee, fee_asset = t.fee or ZERO, t.fee_asset
    realised = _apply_to_copy(copy, it.symbol, t, fee, fee_asset, terms)
    if t.realised_pnl is not None and copy.kind == "futures":
        realised_rec = t.realised_pnl
    else:
        realised_rec = realised
    acked, leader_time = plan.result.acked_at, it.leader_time
    out.fill_rows.append(
        FollowerFillRow(
            order_id=order_id,
            copy_id=copy.copy_id,
            leader_fill_id=it.leader_fill_id,
            exchange_account_id=copy.account_id,
            exchange_trade_id=t.trade_id,
            symbol=t.symbol,
            side=t.side,
            price=t.price,
            quantity=t.quantity,
            fee=fee,
            fee_asset=fee_asset,
            realised_pnl=realised_rec,
            traded_at=t.traded_at,
            leader_price=it.leader_price,
            slippage_bps=slippage_bps(t.side, it.leader_price, t.price),
            rebate=leader_rebate(fee) if fee > 0 else ZERO,
            copy_delay_ms=int((acked - leader_time).total_seconds() * 1000)
            if leader_time and acked
            else None,
        )
    )
    out.transfers.extend(
        fill_transfers(
            key=f"{copy.account_id}:{t.symbol}:{t.trade_id}",
            copy_id=copy.copy_id,
            portfolio_id=it.portfolio_id,
            venue=venue,
            kind=copy.kind,
            base=terms.base,
            quote=terms.quote,
            side=t.side,
            quantity=t.quantity,
            price=t.price,
            fee=fee,
            fee_asset=fee_asset,
            realised_pnl=realised,
            refs={"copy_id": copy.copy_id, "client_order_id": it.client_order_id},
        )
    )


def _apply_to_copy(
    copy: CopyState, symbol: str, t: Trade, fee: Decimal, fee_asset: str, terms: MarketTerms
) -> Decimal:
    """Move the copy's position, cash, fees and day result by one trade; return its realised."""
    pos = copy.position(symbol)
    realised = pos.apply(t.side, t.quantity, t.price)
    if copy.kind == "spot" and fee_asset == terms.base and t.side == "buy":
        pos.quantity -= fee  # Binance takes a spot buy's fee from the bought asset
    fee_quote = fee if fee_asset == terms.quote else (fee * t.price).quantize(UNIT)
    pos.fees_paid += fee_quote
    copy.realised += realised
    copy.fees += fee_quote
    add_day_pnl(copy, realised - fee_quote)
    if copy.kind == "spot":
        cost = (t.quantity * t.price).quantize(UNIT)
        copy.cash += -cost if t.side == "buy" else cost
    else:
        copy.cash += realised
    if fee_asset == terms.quote:
        copy.cash -= fee
    return realised


def post(session: Session, transfers: list, stream: int = 0) -> None:
    """Post the batch's transfers in bulk on the engine's ledger ``stream`` (its shard's chain);
    one refused posting must not lose the others."""
    if not transfers:
        return
    ledger = Ledger(session)
    try:
        with session.begin_nested():
            ledger.post_many(transfers, stream)
    except LedgerError as exc:
        # One copy's ledger problem (e.g. a fill that cost more than its cash) must not lose
        # the others' postings or the fills themselves: post one by one and log the refusal.
        log.error("bulk ledger posting refused (%s); posting one by one", exc)
        for spec in transfers:
            try:
                with session.begin_nested():
                    ledger.post(spec, stream)
            except LedgerError as one:
                log.error("ledger refused %s: %s", spec.key, one)
                session.add(
                    AuditEntry(
                        actor="system",
                        action="ledger_posting_refused",
                        subject_type="transfer",
                        subject_id=spec.key[:64],
                        rule=getattr(one, "rule", None),
                        reason=str(one)[:2000],
                    )
                )


def save_positions(session: Session, touched: dict[tuple[int, str], object]) -> None:
    """Insert or update the copy positions ``touched`` ((copy id, symbol) → position)."""
    if not touched:
        return
    now = utcnow()
    existing = {
        (c, s): i
        for i, c, s in session.execute(
            select(CopyPosition.id, CopyPosition.copy_id, CopyPosition.symbol).where(
                CopyPosition.copy_id.in_({c for c, _ in touched})
            )
        )
    }
    fresh, changed = [], []
    for (copy_id, symbol), pos in touched.items():
        row = {
            "copy_id": copy_id,
            "symbol": symbol,
            "quantity": pos.quantity,
            "average_price": pos.average_price,
            "realised_pnl": pos.realised_pnl,
            "fees_paid": pos.fees_paid,
            "accumulated": pos.accumulated,
            "updated_at": now,
        }
        if (copy_id, symbol) in existing:
            changed.append({**row, "pid": existing[(copy_id, symbol)]})
        else:
            fresh.append(row)
    if fresh:
        session.execute(CopyPosition.__table__.insert(), fresh)
    raw = Raw(session)
    _update_many(
        raw,
        CopyPosition.__tablename__,
        POSITION_UPDATE_TYPES,
        [_stored_position(raw, row) for row in changed],
    )


def _stored_position(raw: Raw, row: dict) -> tuple:
    """A position update's parameters as the column types store them (``POSITION_UPDATE_TYPES``, id)."""
    amounts = [units(row[c], c) for c in POSITION_AMOUNTS]
    return (*amounts, raw.stamp(row["updated_at"]), row["pid"])


def aggregate_trade(it: Intent, state: OrderState) -> Trade:
    """One fill for an order the exchange answered without trade details (keyed by order id)."""
    return Trade(
        trade_id=f"o{state.order_id}",
        order_id=state.order_id,
        client_order_id=state.client_order_id,
        symbol=state.symbol,
        side=state.side,
        price=state.average_price or it.leader_price or ZERO,
        quantity=state.filled_quantity,
        fee=ZERO,
        fee_asset=None,  # type: ignore[arg-type]
        realised_pnl=None,
        is_maker=False,
        traded_at=state.updated_at or clock.now(),
    )
