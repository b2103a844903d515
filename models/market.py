"""Market reference data the warehouse needs: one daily bar per market and UTC day.

Leader metrics mark open positions at the day's close (R-MET-3) and size capacity from the day's
traded quote volume (R-X-5). Bars are loaded from candle files by ``copytrade.analytics.prices``.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import Date, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base
from models.types import Amount, UtcDateTime, utcnow


class MarkPrice(Base):
    """The close of one market on one UTC day, with the day's quote volume (from exchange candles)."""

    __tablename__ = "mark_prices"
    __table_args__ = (UniqueConstraint("symbol", "price_date"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    symbol: Mapped[str] = mapped_column(String(32))  # exchange id, e.g. 1000PEPEUSDT
    price_date: Mapped[date] = mapped_column(Date)  # UTC day
    price: Mapped[Decimal] = mapped_column(Amount)  # close of the day's last candle
    quote_volume: Mapped[Decimal] = mapped_column(Amount, default=Decimal(0))  # Σ volume × close
    candles: Mapped[int] = mapped_column(Integer, default=0)  # candles the bar was built from
    source: Mapped[str] = mapped_column(String(128), default="")  # file the bar came from
    loaded_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
