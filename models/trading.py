"""Leader fills in, follower orders out: what the exchange reported and what the engine decided.

Fields taken verbatim from the exchange (trade ids, order ids, prices as reported) are kept apart
from the platform's own decisions (outcome, reason, client order id).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base
from models.types import Amount, UtcDateTime, utcnow

OUTCOMES = ("filled", "partially_filled", "rejected", "skipped")


class LeaderFill(Base):
    """One leader trade (exchange fill), stored once per exchange trade id (R-LED-3, R-COPY-10)."""

    __tablename__ = "leader_fills"
    __table_args__ = (
        # Binance numbers trades per symbol, so the id is unique per portfolio and symbol.
        UniqueConstraint("portfolio_id", "symbol", "exchange_trade_id"),
        CheckConstraint("side in ('buy', 'sell')", name="side"),
        Index(None, "portfolio_id", "traded_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    portfolio_id: Mapped[int] = mapped_column(ForeignKey("lead_portfolios.id"))
    # verbatim from the exchange
    exchange_trade_id: Mapped[str] = mapped_column(String(64))
    exchange_order_id: Mapped[str | None] = mapped_column(String(64))
    symbol: Mapped[str] = mapped_column(String(32))  # exchange id, e.g. BTCUSDT
    side: Mapped[str] = mapped_column(String(4))
    position_side: Mapped[str | None] = mapped_column(String(8))  # futures: long | short
    price: Mapped[Decimal] = mapped_column(Amount)
    quantity: Mapped[Decimal] = mapped_column(Amount)
    fee: Mapped[Decimal] = mapped_column(Amount, default=Decimal(0))
    fee_asset: Mapped[str | None] = mapped_column(String(16))
    realised_pnl: Mapped[Decimal | None] = mapped_column(Amount)  # as published by the exchange
    recomputed_pnl: Mapped[Decimal | None] = mapped_column(Amount)  # ours, average cost (imports)
    traded_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # ours
    is_opening: Mapped[bool] = mapped_column(Boolean)  # increases the leader's position
    position_before: Mapped[Decimal] = mapped_column(
        Amount, default=Decimal(0)
    )  # signed, base units
    source: Mapped[str] = mapped_column(String(16), default="stream")  # stream | backfill | import
    received_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class FollowerOrderIntent(Base):
    """The engine's decision for one leader fill × copy × leg, persisted before anything is sent.

    Every leader fill × active copy ends in exactly one outcome with a reason (R-COPY-7); the
    client order id is derived from (leader fill, copy, leg) (R-COPY-11).
    """

    __tablename__ = "follower_order_intents"
    __table_args__ = (
        UniqueConstraint("leader_fill_id", "copy_id", "leg"),
        CheckConstraint("status in ('pending', 'sent', 'unknown', 'acked', 'done')", name="status"),
        CheckConstraint(
            "outcome is null or outcome in ('filled', 'partially_filled', 'rejected', 'skipped')",
            name="outcome",
        ),
        CheckConstraint("kind in ('copy', 'resync', 'close', 'stop', 'adopted')", name="kind"),
        Index(None, "status"),
        Index(None, "copy_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    leader_fill_id: Mapped[int | None] = mapped_column(
        ForeignKey("leader_fills.id")
    )  # None: resync/close
    copy_id: Mapped[int] = mapped_column(ForeignKey("copies.id"))
    leg: Mapped[int] = mapped_column(Integer, default=0)
    kind: Mapped[str] = mapped_column(String(16), default="copy")
    client_order_id: Mapped[str] = mapped_column(String(36), unique=True)
    symbol: Mapped[str] = mapped_column(String(32))
    side: Mapped[str] = mapped_column(String(4))
    quantity: Mapped[Decimal] = mapped_column(Amount)  # after rounding and limits; 0 when skipped
    computed_quantity: Mapped[Decimal] = mapped_column(Amount)  # before rounding (R-COPY-6)
    reduce_only: Mapped[bool] = mapped_column(Boolean, default=False)
    leverage: Mapped[int | None] = mapped_column(Integer)
    leader_price: Mapped[Decimal | None] = mapped_column(Amount)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    outcome: Mapped[str | None] = mapped_column(String(20))
    reason_code: Mapped[str | None] = mapped_column(String(32))  # machine-readable, for R-X-1
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    acked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class FollowerOrder(Base):
    """The order as the exchange knows it, for an intent that was sent."""

    __tablename__ = "follower_orders"

    id: Mapped[int] = mapped_column(primary_key=True)
    intent_id: Mapped[int] = mapped_column(ForeignKey("follower_order_intents.id"), unique=True)
    copy_id: Mapped[int] = mapped_column(ForeignKey("copies.id"), index=True)
    client_order_id: Mapped[str] = mapped_column(String(36), unique=True)
    # verbatim from the exchange
    exchange_order_id: Mapped[str | None] = mapped_column(String(64))
    exchange_status: Mapped[str | None] = mapped_column(String(32))
    filled_quantity: Mapped[Decimal] = mapped_column(Amount, default=Decimal(0))
    average_price: Mapped[Decimal | None] = mapped_column(Amount)
    error_code: Mapped[str | None] = mapped_column(String(32))
    error_message: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class FollowerFill(Base):
    """One execution of a follower order, with what copy quality needs (R-COPY-8, R-FEE-1, R-X-1)."""

    __tablename__ = "follower_fills"
    __table_args__ = (
        UniqueConstraint("exchange_account_id", "symbol", "exchange_trade_id"),
        Index(None, "copy_id", "traded_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("follower_orders.id"), index=True)
    copy_id: Mapped[int] = mapped_column(ForeignKey("copies.id"))
    leader_fill_id: Mapped[int | None] = mapped_column(ForeignKey("leader_fills.id"), index=True)
    exchange_account_id: Mapped[int | None] = mapped_column(ForeignKey("exchange_accounts.id"))
    # verbatim from the exchange
    exchange_trade_id: Mapped[str] = mapped_column(String(64))
    symbol: Mapped[str] = mapped_column(String(32))
    side: Mapped[str] = mapped_column(String(4))
    price: Mapped[Decimal] = mapped_column(Amount)
    quantity: Mapped[Decimal] = mapped_column(Amount)
    fee: Mapped[Decimal] = mapped_column(Amount)
    fee_asset: Mapped[str] = mapped_column(String(16))
    realised_pnl: Mapped[Decimal | None] = mapped_column(Amount)
    traded_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # ours
    leader_price: Mapped[Decimal | None] = mapped_column(Amount)
    slippage_bps: Mapped[Decimal | None] = mapped_column(Amount)  # + is worse for the follower
    rebate: Mapped[Decimal] = mapped_column(Amount, default=Decimal(0))  # R-FEE-2 accrued
    copy_delay_ms: Mapped[int | None] = mapped_column(BigInteger)  # leader fill → follower ack


class QuarantinedEvent(Base):
    """An exchange event that was malformed, duplicated, out of order or unknown (R-IN-1)."""

    __tablename__ = "quarantined_events"
    __table_args__ = (Index(None, "source", "received_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(32))  # stream | backfill | import:<file>
    portfolio_id: Mapped[int | None] = mapped_column(ForeignKey("lead_portfolios.id"))
    reason_code: Mapped[str] = mapped_column(
        String(32)
    )  # malformed | duplicate | out_of_order | unknown_symbol
    reason: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict | str | None] = mapped_column(JSON)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class CopyPosition(Base):
    """A copy's position in one symbol as the engine tracks it (average-cost basis, signed quantity).

    Spot positions are base-asset holdings bought by the copy (never negative); futures positions
    are signed contracts (+ long, - short). ``accumulated`` is the unsent remainder of the
    ``accumulate`` below-minimum policy (R-COPY-6), in base units.
    """

    __tablename__ = "copy_positions"
    __table_args__ = (UniqueConstraint("copy_id", "symbol"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    copy_id: Mapped[int] = mapped_column(ForeignKey("copies.id"))
    symbol: Mapped[str] = mapped_column(String(32))
    quantity: Mapped[Decimal] = mapped_column(Amount, default=Decimal(0))
    average_price: Mapped[Decimal] = mapped_column(Amount, default=Decimal(0))
    realised_pnl: Mapped[Decimal] = mapped_column(Amount, default=Decimal(0))
    fees_paid: Mapped[Decimal] = mapped_column(Amount, default=Decimal(0))  # in the quote asset
    accumulated: Mapped[Decimal] = mapped_column(Amount, default=Decimal(0))
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class LeaderWatermark(Base):
    """The highest exchange trade id stored per lead portfolio and symbol: where backfill resumes."""

    __tablename__ = "leader_watermarks"
    __table_args__ = (UniqueConstraint("portfolio_id", "symbol"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    portfolio_id: Mapped[int] = mapped_column(ForeignKey("lead_portfolios.id"))
    symbol: Mapped[str] = mapped_column(String(32))
    last_trade_id: Mapped[int] = mapped_column(BigInteger)
    position: Mapped[Decimal] = mapped_column(Amount, default=Decimal(0))  # leader's, signed
    # Where the engine started following the symbol (R-IN-3): the leader's position then and the
    # newest trade id then. The leader's position is this baseline plus every stored fill with a
    # higher trade id, in trade-id order; trades at or below it are history and never copied.
    baseline_trade_id: Mapped[int] = mapped_column(BigInteger, default=0)
    baseline_position: Mapped[Decimal] = mapped_column(Amount, default=Decimal(0))
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


GAP_KINDS = ("backfill_failed", "missing_fills", "position_drift")


class IngestGap(Base):
    """A known hole in a lead portfolio's fill history, or a drift from the exchange (R-IN-3).

    ``backfill_failed``: the exchange's trade list could not be read after a start or reconnect;
    ``missing_fills``: fills found on the exchange but not stored (backfilled when found, so the
    row is usually resolved at once); ``position_drift``: the leader's position on the exchange
    differs from the one the stored fills give. While a portfolio has an open gap
    (``resolved_at`` null) its copying is close-only.
    """

    __tablename__ = "ingest_gaps"
    __table_args__ = (
        CheckConstraint(
            "kind in ('backfill_failed', 'missing_fills', 'position_drift')", name="kind"
        ),
        Index(None, "portfolio_id", "resolved_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    portfolio_id: Mapped[int] = mapped_column(ForeignKey("lead_portfolios.id"))
    symbol: Mapped[str | None] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str] = mapped_column(Text, default="")
    fills: Mapped[int] = mapped_column(Integer, default=0)  # missing fills found and stored
    opened_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    resolution: Mapped[str | None] = mapped_column(Text)


class CopyStopEvent(Base):
    """Why and when a copy stopped copying: the settlement trigger the settlement service acts on.

    ``trigger``: stop_loss | take_profit (R-COPY-3), stop_copy (R-COPY-5), portfolio_closed
    (R-LEAD-10). ``settled_at`` is set by settlement once the event cycle ran (R-SET-5).
    """

    __tablename__ = "copy_stop_events"
    __table_args__ = (
        CheckConstraint(
            "trigger in ('stop_loss', 'take_profit', 'stop_copy', 'portfolio_closed')",
            name="trigger",
        ),
        UniqueConstraint("copy_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    copy_id: Mapped[int] = mapped_column(ForeignKey("copies.id"))
    trigger: Mapped[str] = mapped_column(String(32))
    cumulative_pnl: Mapped[Decimal | None] = mapped_column(Amount)  # marked, after fees
    threshold: Mapped[Decimal | None] = mapped_column(Amount)
    reason: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    settled_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
