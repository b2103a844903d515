"""People, lead portfolios, copies and the audit log: the platform's own state (not the exchange's)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import Base
from models.types import Amount, UtcDateTime, utcnow


class Person(Base):
    """A user of the platform; may be one leader (R-ACC-1) and follow up to 10 portfolios (R-ACC-2)."""

    __tablename__ = "persons"

    id: Mapped[int] = mapped_column(primary_key=True)
    handle: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(128), default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class ExchangeAccount(Base):
    """An exchange sub-account the platform trades for (a leader's account or a follower's copy account).

    Secrets are never stored here: ``credentials_ref`` names where they live (an environment
    variable or a Prefect Secret block).
    """

    __tablename__ = "exchange_accounts"
    __table_args__ = (UniqueConstraint("venue", "market", "api_key_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("persons.id"), index=True)
    venue: Mapped[str] = mapped_column(String(32), default="paper")  # paper | binance
    market: Mapped[str] = mapped_column(String(16))  # spot | futures
    api_key_id: Mapped[str] = mapped_column(String(128))  # public key id, safe to show
    credentials_ref: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class LeadPortfolio(Base):
    """A leader's lead portfolio whose trades followers copy (R-LEAD-*)."""

    __tablename__ = "lead_portfolios"
    __table_args__ = (
        CheckConstraint("mode in ('spot', 'futures')", name="mode"),
        CheckConstraint("visibility in ('public', 'private')", name="visibility"),
        CheckConstraint("status in ('active', 'closed')", name="status"),
        CheckConstraint("profit_share_ratio >= 0 and profit_share_ratio <= 30000000", name="ratio"),
        Index(None, "leader_person_id", "mode"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    leader_person_id: Mapped[int] = mapped_column(ForeignKey("persons.id"))
    mode: Mapped[str] = mapped_column(String(16))
    visibility: Mapped[str] = mapped_column(String(16), default="public")
    nickname: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(Text, default="")
    invitation_code: Mapped[str | None] = mapped_column(String(32), unique=True)
    profit_share_ratio: Mapped[Decimal] = mapped_column(Amount)  # fixed at creation (R-LEAD-5)
    capital: Mapped[Decimal] = mapped_column(Amount)
    capital_asset: Mapped[str] = mapped_column(String(16), default="USDT")
    status: Mapped[str] = mapped_column(String(16), default="active")
    follower_cap: Mapped[int] = mapped_column(Integer)
    is_listed: Mapped[bool] = mapped_column(
        Boolean, default=True
    )  # False: taken offline (R-LEAD-9)
    offline_reason: Mapped[str | None] = mapped_column(Text)
    agreement_accepted_at: Mapped[datetime] = mapped_column(UtcDateTime)
    exchange_account_id: Mapped[int | None] = mapped_column(ForeignKey("exchange_accounts.id"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

    copies: Mapped[list[Copy]] = relationship(back_populates="portfolio")


class CapacityRequest(Base):
    """A leader's request to raise the follower cap and the operator's decision (R-LEAD-7)."""

    __tablename__ = "capacity_requests"
    __table_args__ = (
        CheckConstraint("status in ('pending', 'approved', 'rejected')", name="status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    portfolio_id: Mapped[int] = mapped_column(ForeignKey("lead_portfolios.id"), index=True)
    current_cap: Mapped[int] = mapped_column(Integer)
    requested_cap: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    decided_by: Mapped[str | None] = mapped_column(String(64))
    decision_reason: Mapped[str | None] = mapped_column(Text)
    requested_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class Copy(Base):
    """A follower's copy of one lead portfolio with its settings (R-COPY-1/3/6/12, R-X-3)."""

    __tablename__ = "copies"
    __table_args__ = (
        CheckConstraint("status in ('active', 'stopped')", name="status"),
        CheckConstraint("sizing_mode in ('fixed_ratio', 'fixed_amount')", name="sizing_mode"),
        CheckConstraint("below_min_policy in ('skip', 'round_up', 'accumulate')", name="below_min"),
        CheckConstraint("leverage >= 1 and leverage <= 10", name="leverage"),
        Index(None, "portfolio_id", "status"),
        Index(None, "follower_person_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    portfolio_id: Mapped[int] = mapped_column(ForeignKey("lead_portfolios.id"))
    follower_person_id: Mapped[int] = mapped_column(ForeignKey("persons.id"))
    exchange_account_id: Mapped[int | None] = mapped_column(ForeignKey("exchange_accounts.id"))
    status: Mapped[str] = mapped_column(String(16), default="active")
    allocation: Mapped[Decimal] = mapped_column(Amount)  # funds moved into the copy (USDT)
    sizing_mode: Mapped[str] = mapped_column(String(16), default="fixed_ratio")
    fixed_amount: Mapped[Decimal | None] = mapped_column(Amount)  # notional per opening order
    below_min_policy: Mapped[str] = mapped_column(String(16), default="skip")
    stop_loss_pct: Mapped[Decimal | None] = mapped_column(Amount)  # of allocation (R-COPY-3)
    take_profit_pct: Mapped[Decimal | None] = mapped_column(Amount)
    max_cost_per_order: Mapped[Decimal | None] = mapped_column(Amount)
    slippage_limit_pct: Mapped[Decimal | None] = mapped_column(Amount)  # None: SPEC default
    position_take_profit_pct: Mapped[Decimal | None] = mapped_column(Amount)
    position_stop_loss_pct: Mapped[Decimal | None] = mapped_column(Amount)
    leverage: Mapped[int] = mapped_column(Integer, default=1)
    symbols: Mapped[list[str] | None] = mapped_column(JSON)  # allow-list; None: every symbol
    daily_loss_limit: Mapped[Decimal | None] = mapped_column(Amount)  # R-X-3
    close_only: Mapped[bool] = mapped_column(Boolean, default=False)  # R-X-3
    paused_until: Mapped[datetime | None] = mapped_column(UtcDateTime)  # daily loss limit hit
    stop_reason: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    stopped_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

    portfolio: Mapped[LeadPortfolio] = relationship(back_populates="copies")


class LeaderLeverageViolation(Base):
    """A leader position opened above 5× while the portfolio's AUM was at or above 100,000 USD (R-LEAD-8).

    The platform does not run the exchange, so it cannot refuse the leader's own order; it records
    the violation here (once per leader position, ``exchange_ref``) and shows it with the portfolio.
    Copies of it never use more than 5× (the copy engine's cap).
    """

    __tablename__ = "leader_leverage_violations"
    __table_args__ = (UniqueConstraint("portfolio_id", "symbol", "exchange_ref"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    portfolio_id: Mapped[int] = mapped_column(ForeignKey("lead_portfolios.id"), index=True)
    symbol: Mapped[str] = mapped_column(String(32))
    leverage: Mapped[int] = mapped_column(Integer)
    aum: Mapped[Decimal] = mapped_column(Amount)  # USD, when the position was opened
    exchange_ref: Mapped[str] = mapped_column(String(64))  # the opening fill's trade id
    opened_at: Mapped[datetime] = mapped_column(UtcDateTime)
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class AuditEntry(Base):
    """An operator or rule decision, kept forever (R-LEAD-7 capacity, R-LEAD-9 impersonation, gates)."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(64))  # operator name, or "system"
    action: Mapped[str] = mapped_column(String(64))
    subject_type: Mapped[str] = mapped_column(String(32))
    subject_id: Mapped[str] = mapped_column(String(64))
    rule: Mapped[str | None] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(Text, default="")
    details: Mapped[dict | None] = mapped_column(JSON)
