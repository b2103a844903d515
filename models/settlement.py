"""Settlement cycles and their payouts (R-SET-*): one row per (cycle, copy, kind), paid at most once."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base
from models.types import Amount, UtcDateTime, utcnow


class SettlementCycle(Base):
    """A settlement run: the weekly cycle (key = ISO week) or one event trigger (R-SET-4/5/9)."""

    __tablename__ = "settlement_cycles"
    __table_args__ = (
        CheckConstraint("status in ('running', 'blocked', 'completed')", name="status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    cycle_key: Mapped[str] = mapped_column(String(96), unique=True)
    kind: Mapped[str] = mapped_column(String(16))  # weekly | event
    trigger: Mapped[str] = mapped_column(
        String(32)
    )  # weekly | stop_copy | portfolio_closed | withdraw_profit | stop_loss
    as_of: Mapped[datetime] = mapped_column(UtcDateTime)
    status: Mapped[str] = mapped_column(String(16), default="running")
    validation_passed: Mapped[bool | None] = mapped_column()
    blocked_reason: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class SettlementPayout(Base):
    """A profit share or rebate of one copy in one cycle: paid, paused (R-SET-7) or deferred (R-SET-6)."""

    __tablename__ = "settlement_payouts"
    __table_args__ = (
        UniqueConstraint("cycle_id", "copy_id", "kind"),
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
    status: Mapped[str] = mapped_column(String(16))
    amount: Mapped[Decimal] = mapped_column(Amount)  # paid, or due when paused/deferred
    profit_basis: Mapped[Decimal] = mapped_column(
        Amount, default=Decimal(0)
    )  # realised (+ unrealised)
    ratio: Mapped[Decimal] = mapped_column(Amount, default=Decimal(0))
    paid_before: Mapped[Decimal] = mapped_column(
        Amount, default=Decimal(0)
    )  # "already paid" before
    reason: Mapped[str | None] = mapped_column(Text)
    transfer_id: Mapped[int | None] = mapped_column(ForeignKey("ledger_transfers.id"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
