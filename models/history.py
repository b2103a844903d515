"""Imported leader histories: which file was imported for which portfolio, and from when its
capital counts (docs/metrics.md, "Capital of an imported history")."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Date, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base
from models.types import UtcDateTime, utcnow


class LeaderHistoryImport(Base):
    """One import of past fills into a lead portfolio (append-only; re-running adds nothing).

    The metrics count the portfolio's declared capital from the earliest ``capital_since`` of its
    imports (default: the UTC day of the file's first fill), so the imported days are measured
    against the capital rather than against nothing.
    """

    __tablename__ = "leader_history_imports"
    __table_args__ = (UniqueConstraint("portfolio_id", "file_sha256", "capital_since"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    portfolio_id: Mapped[int] = mapped_column(ForeignKey("lead_portfolios.id"))
    file_name: Mapped[str] = mapped_column(String(128))
    file_sha256: Mapped[str] = mapped_column(String(64))
    first_fill_at: Mapped[datetime] = mapped_column(UtcDateTime)
    last_fill_at: Mapped[datetime] = mapped_column(UtcDateTime)
    fills: Mapped[int] = mapped_column(Integer)  # valid fills in the file (stored now or before)
    capital_since: Mapped[date] = mapped_column(Date)  # UTC day the declared capital counts from
    imported_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
