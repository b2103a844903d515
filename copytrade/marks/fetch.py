"""Marks from the exchange: daily or minute candles through a gateway that serves klines.

The gateway protocol (``copytrade.exchange.protocol``) is for trading; candles come from any
object with the ``KlineSource`` method below (the ccxt gateway's ``fetch_ohlcv``, the paper
exchange's ``/fapi/v1/klines``, a fake in tests). Candles are fetched page by page from ``start``
to ``end`` and recorded as marks at their close minute, exactly as the candle files are
(``copytrade.marks.candles``), so both loaders give the same rows for the same candles.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Protocol

from sqlalchemy.orm import Session

from copytrade.domain.money import round_down
from copytrade.marks.store import Mark, Recorded, record

INTERVALS = {"1m": timedelta(minutes=1), "1d": timedelta(days=1)}
PAGE = 1000  # Binance returns at most 1,000 klines (futures 1,500) per request
_ONE_MS = timedelta(milliseconds=1)


@dataclass(frozen=True, slots=True)
class Candle:
    """One kline as the exchange gives it: open time (UTC), close, quote volume (exact)."""

    opened_at: datetime
    close: Decimal
    quote_volume: Decimal


class KlineSource(Protocol):
    """What fetching marks needs from an exchange: candles of one market, oldest first."""

    async def klines(
        self, symbol: str, interval: str, start: datetime, end: datetime, limit: int
    ) -> list[Candle]: ...


async def fetch_marks(
    source: KlineSource,
    session: Session,
    symbol: str,
    market: str,
    start: datetime,
    end: datetime,
    interval: str = "1d",
) -> Recorded:
    """Fetch the candles of ``[start, end)`` page by page and record them as marks (idempotent)."""
    if interval not in INTERVALS:
        raise ValueError(f"interval {interval!r} must be one of {', '.join(INTERVALS)}")
    if start.tzinfo is None or end.tzinfo is None or start >= end:
        raise ValueError(f"start {start} must be before end {end}, both with a time zone")
    step = INTERVALS[interval]
    marks: list[Mark] = []
    cursor = start.astimezone(UTC)
    while cursor < end:
        page = await source.klines(symbol, interval, cursor, end, PAGE)
        page = [c for c in page if cursor <= c.opened_at < end]
        if not page:
            break
        for candle in page:
            closed_at = candle.opened_at + step - _ONE_MS
            if closed_at > datetime.now(UTC):
                continue  # the candle still trading has no close yet
            marks.append(
                Mark(
                    symbol,
                    market,
                    closed_at,
                    candle.close,
                    round_down(candle.quote_volume),
                    f"exchange:klines:{interval}",
                )
            )
        cursor = page[-1].opened_at + step
    return record(session, marks)


class BinanceKlines:
    """``KlineSource`` over a ccxt Binance client through Binance's raw klines endpoint.

    The raw endpoint (``GET /api/v3/klines``, ``GET /fapi/v1/klines``) returns prices and the
    quote volume as decimal strings, so they stay exact (ccxt's ``fetch_ohlcv`` gives floats).
    Row layout: open time, open, high, low, close, volume, close time, quote asset volume, ….
    """

    def __init__(self, exchange, market: str) -> None:  # a ccxt.async_support binance client
        self.exchange = exchange
        self.market = market

    async def klines(
        self, symbol: str, interval: str, start: datetime, end: datetime, limit: int
    ) -> list[Candle]:
        params = {
            "symbol": symbol,
            "interval": interval,
            "startTime": int(start.timestamp() * 1000),
            "endTime": int(end.timestamp() * 1000) - 1,
            "limit": limit,
        }
        if self.market == "usdm":
            rows = await self.exchange.fapiPublicGetKlines(params)
        else:
            rows = await self.exchange.publicGetKlines(params)
        return [
            Candle(
                datetime.fromtimestamp(int(row[0]) / 1000, UTC), Decimal(row[4]), Decimal(row[7])
            )
            for row in rows
        ]
