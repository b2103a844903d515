"""Settlement cycles, their payouts and each copy's carried state (R-SET-*).

A cycle is one settlement run with a stable key: the ISO week for the weekly cycle, or the trigger
and copy for an event (R-SET-4/5). Each (cycle, copy, kind, asset) is paid at most once (R-SET-9);
every decision is a payout row, whether paid, paused (R-SET-7), deferred (R-SET-6) or nothing due.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base
from models.types import Amount, UtcDateTime, utcnow

CYCLE_STATUSES = ("running", "blocked", "completed")
PAYOUT_STATUSES = ("paid", "paused", "deferred", "nothing_due")


class SettlementCycle(Base):
    """A settlement run: the weekly cycle (key = ISO week) or one event trigger (R-SET-4/5/9)."""

    __tablename__ = "settlement_cycles"
    __table_args__ = (
        CheckConstraint("status in ('running', 'blocked', 'completed')", name="status"),
        CheckConstraint("kind in ('weekly', 'event')", name="kind"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    cycle_key: Mapped[str] = mapped_column(String(96), unique=True)
    kind: Mapped[str] = mapped_column(String(16))  # weekly | event
    trigger: Mapped[str] = mapped_column(
        String(32)
    )  # weekly | stop_copy | portfolio_closed | withdraw_profit | stop_loss
    copy_id: Mapped[int | None] = mapped_column(ForeignKey("copies.id"))  # event cycles
    as_of: Mapped[datetime] = mapped_column(UtcDateTime)  # fills up to here; marks taken here
    status: Mapped[str] = mapped_column(String(16), default="running")
    validation_passed: Mapped[bool | None] = mapped_column()
    blocked_reason: Mapped[str | None] = mapped_column(Text)
    summary: Mapped[dict | None] = mapped_column(JSON)  # counts and totals once completed
    started_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class SettlementPayout(Base):
    """A profit share or rebate of one copy in one cycle: paid, paused (R-SET-7) or deferred (R-SET-6)."""

    __tablename__ = "settlement_payouts"
    __table_args__ = (
        UniqueConstraint("cycle_id", "copy_id", "kind", "asset"),
        CheckConstraint("kind in ('profit_share', 'rebate')", name="kind"),
        CheckConstraint("status in ('paid', 'paused', 'deferred', 'nothing_due')", name="status"),
        CheckConstraint("amount >= 0", name="amount_non_negative"),
        Index(None, "copy_id", "kind"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    cycle_id: Mapped[int] = mapped_column(ForeignKey("settlement_cycles.id"))
    copy_id: Mapped[int] = mapped_column(ForeignKey("copies.id"))
    portfolio_id: Mapped[int] = mapped_column(ForeignKey("lead_portfolios.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    asset: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    amount: Mapped[Decimal] = mapped_column(Amount)  # paid, or due when paused/deferred
    profit_basis: Mapped[Decimal] = mapped_column(
        Amount, default=Decimal(0)
    )  # realised (+ unrealised) − fees, the basis the share was computed on
    realised: Mapped[Decimal | None] = mapped_column(Amount)  # realised PnL − fees
    unrealised: Mapped[Decimal | None] = mapped_column(Amount)  # futures, at the mark
    ratio: Mapped[Decimal] = mapped_column(Amount, default=Decimal(0))
    paid_before: Mapped[Decimal] = mapped_column(
        Amount, default=Decimal(0)
    )  # "already paid" before this payout
    reason: Mapped[str | None] = mapped_column(Text)
    transfer_id: Mapped[int | None] = mapped_column(ForeignKey("ledger_transfers.id"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class CopySettlementState(Base):
    """What one copy has paid so far in one asset: shares (R-SET-8), its peak profit (R-LED-5), rebates.

    Written in the same transaction as the payouts it sums, so it is always equal to them. The
    share columns are used on the row of the portfolio's settlement asset; rebates on every asset
    fees were paid in.
    """

    __tablename__ = "copy_settlement_states"

    copy_id: Mapped[int] = mapped_column(ForeignKey("copies.id"), primary_key=True)
    asset: Mapped[str] = mapped_column(String(16), primary_key=True)
    share_paid: Mapped[Decimal] = mapped_column(Amount, default=Decimal(0))  # only grows
    peak_profit: Mapped[Decimal] = mapped_column(
        Amount, default=Decimal(0)
    )  # highest basis seen at a settlement, ≥ 0
    outstanding: Mapped[Decimal] = mapped_column(
        Amount, default=Decimal(0)
    )  # share paused or deferred at the last settlement
    rebate_paid: Mapped[Decimal] = mapped_column(Amount, default=Decimal(0))
    last_cycle_id: Mapped[int | None] = mapped_column(ForeignKey("settlement_cycles.id"))
    final_cycle_id: Mapped[int | None] = mapped_column(
        ForeignKey("settlement_cycles.id")
    )  # the stop/close settlement, once done
    cash_released_at: Mapped[datetime | None] = mapped_column(
        UtcDateTime
    )  # a stopped copy's remaining cash went back to the follower's spot wallet
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
