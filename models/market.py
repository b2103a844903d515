"""Mark prices: one table for the whole platform, at minute grain.

Analytics marks open positions at each UTC day's last mark (R-MET-3) and sizes capacity from the
day's summed quote volume (R-X-5); live components record the marks they see into the same table.
Access goes through ``copytrade.marks.store`` (record, look up, daily closes, prune).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import CheckConstraint, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base
from models.types import Amount, UtcDateTime, utcnow

MARKETS = ("spot", "usdm")


class MarkPrice(Base):
    """The price of one market at one UTC minute (at most one row per market, symbol and minute).

    ``marked_at`` is truncated to the minute; for a candle it is the minute of the candle's close
    (its open time + interval − 1 ms, as Binance's ``closeTime``), so a daily close is the last
    mark of the day. ``quote_volume`` is the quote volume traded in the interval the mark closes
    (0 when unknown, e.g. a premium-index mark). ``source`` says where it came from:
    ``candles:<file>``, ``exchange:klines``, ``exchange:premiumIndex`` …
    """

    __tablename__ = "mark_prices"
    __table_args__ = (
        UniqueConstraint("market", "symbol", "marked_at"),
        CheckConstraint("market in ('spot', 'usdm')", name="market"),
        Index(None, "symbol", "marked_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    symbol: Mapped[str] = mapped_column(String(32))  # exchange id, e.g. 1000PEPEUSDT
    market: Mapped[str] = mapped_column(String(8))  # spot | usdm
    marked_at: Mapped[datetime] = mapped_column(UtcDateTime)  # UTC, truncated to the minute
    price: Mapped[Decimal] = mapped_column(Amount)
    quote_volume: Mapped[Decimal] = mapped_column(Amount, default=Decimal(0))
    source: Mapped[str] = mapped_column(String(128), default="")
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
