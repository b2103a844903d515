"""Stage 1, accept: a leader event from the stream (or a backfill) → a ``LeaderFill`` to copy.

The event is validated against the markets and the trade ids already stored (R-IN-1); a bad one
is quarantined with its reason, a duplicate of a stored trade from another source is merged
(R-IN-3). An accepted fill carries what sizing needs: the leader's position before it, its legs
(an opening and/or a reduction), the price a follower meets now (R-COPY-12) and whether it is
the first fill of the leader's order. Once the fill is stored, ``note_stored`` moves the
in-memory leader state past it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from copytrade.domain.markets import Market
from copytrade.domain.money import ZERO
from copytrade.engine import history, ingest, leader_leverage
from copytrade.engine.ingest import Leg
from copytrade.engine.state import PortfolioState
from copytrade.engine.types import FillReport
from copytrade.exchange.protocol import Trade
from models import LeaderFill as LeaderFillRow
from models import QuarantinedEvent
from models.types import utcnow

if TYPE_CHECKING:
    from copytrade.engine.core import CopyEngine

log = logging.getLogger(__name__)
NOT_YET_STREAMED_LIMIT = 100_000


@dataclass(slots=True, frozen=True)
class LeaderFill:
    """A valid, new leader fill of a portfolio, ready to be sized."""

    trade: Trade
    source: str  # "stream", or the backfill / check that found it
    market: Market
    reference_price: Decimal  # what a follower's order meets now (R-COPY-12)
    position_before: Decimal  # the leader's signed position before the fill
    position_after: Decimal
    legs: list[Leg]
    first_of_order: bool  # the first fill of the leader's order (sizing's minimum checks)
    received_at: datetime


def accept(
    engine: CopyEngine, ps: PortfolioState, event: object, source: str
) -> LeaderFill | FillReport:
    """Return the event as a ``LeaderFill``, or the report of a quarantined or merged event."""
    markets = engine.markets(ps)
    symbol = getattr(event, "symbol", None)
    with engine.sf() as session:
        known = known_ids(session, ps, symbol) if isinstance(symbol, str) else None
    rejection = ingest.validate(event, markets, known, ps.baselines.get(symbol))
    if rejection and rejection.reason_code == "duplicate" and ps.merge(source, event):
        # The same trade from a backfill or a check and the stream: merged by trade id.
        return FillReport(merged=True)
    if rejection:
        quarantine(engine, ps.portfolio_id, source, rejection.reason_code, rejection.reason, event)
        return FillReport(quarantined=rejection.reason_code)
    trade: Trade = event  # type: ignore[assignment]
    position = ps.leader_positions.get(trade.symbol, ZERO)
    return LeaderFill(
        trade=trade,
        source=source,
        market=markets[trade.symbol],
        reference_price=engine.available_price(ps.mode, trade.symbol, trade.traded_at)
        or trade.price,
        position_before=position,
        position_after=ingest.position_after(ps.mode, trade.side, trade.quantity, position),
        legs=ingest.split_legs(ps.mode, trade.side, trade.quantity, position),
        first_of_order=trade.order_id not in ps.copied_orders,
        received_at=utcnow(),
    )


def note_stored(engine: CopyEngine, ps: PortfolioState, fill: LeaderFill) -> None:
    """Move the in-memory leader state past a fill now stored (position, ids, watermark)."""
    trade = fill.trade
    ps.leader_positions[trade.symbol] = fill.position_after
    if not fill.position_before and fill.position_after:  # opened: its leverage (R-LEAD-8)
        leader_leverage.opened(engine, ps, trade.symbol, trade.trade_id, trade.traded_at)
    ps.watermarks[trade.symbol] = max(ps.watermarks.get(trade.symbol, 0), int(trade.trade_id))
    ps.known_ids.setdefault(trade.symbol, set()).add(trade.trade_id)
    if fill.source != "stream":
        if len(ps.not_yet_streamed) >= NOT_YET_STREAMED_LIMIT:
            ps.not_yet_streamed.clear()  # only a quarantine note is lost, never a fill
        ps.not_yet_streamed.add((trade.symbol, trade.trade_id))
    ps.copied_orders.add(trade.order_id)
    if trade.realised_pnl:
        ps.leader_realised += trade.realised_pnl


def known_ids(session: Session, ps: PortfolioState, symbol: str) -> set[str]:
    """The leader's stored trade ids of ``symbol`` (read once, then kept in memory)."""
    ids = ps.known_ids.get(symbol)
    if ids is None:
        ids = ps.known_ids[symbol] = set(
            session.scalars(
                select(LeaderFillRow.exchange_trade_id).where(
                    LeaderFillRow.portfolio_id == ps.portfolio_id, LeaderFillRow.symbol == symbol
                )
            )
        )
    return ids


def reload_leader(engine: CopyEngine, ps: PortfolioState, symbol: str) -> None:
    """Re-derive the leader's positions and known trade ids of ``symbol`` from the database."""
    with engine.sf() as session:
        ps.leader_positions, ps.baselines = history.derive_positions(
            session, ps.portfolio_id, ps.mode
        )
        ps.known_ids.pop(symbol, None)
        known_ids(session, ps, symbol)


def quarantine(
    engine: CopyEngine,
    portfolio_id: int | None,
    source: str,
    code: str,
    reason: str,
    event: object,
) -> None:
    """Store a rejected event with its reason (R-IN-1); the stream goes on."""
    log.warning("quarantined %s event of portfolio %s: %s", code, portfolio_id, reason)
    with engine.sf() as session, session.begin():
        session.add(
            QuarantinedEvent(
                source=source[:32],
                portfolio_id=portfolio_id if portfolio_id in engine.portfolios else None,
                reason_code=code[:32],
                reason=reason,
                payload=ingest.payload_of(event),
            )
        )
