"""Daily mark prices from exchange candle files (``shared/data/market/``) into ``mark_prices``.

A bar is one UTC day of one market: its close is the close of the day's last candle (what open
positions are marked at, R-MET-3) and its quote volume is Σ volume × close over the day's candles
(what capacity is sized from, R-X-5). Prices stay exact decimals read from the file's text.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from copytrade.domain.money import round_down, to_decimal
from models.market import MarkPrice

_FILE_NAME = re.compile(r"^(?P<market>[A-Z0-9_]+?)(?:-\d+[mhd])(?:-[a-z_]+)?(?:-\d{4})?\.csv$")


@dataclass(frozen=True, slots=True)
class DailyBar:
    symbol: str
    price_date: date
    price: Decimal
    quote_volume: Decimal
    candles: int
    source: str


def symbol_of(path: Path) -> str:
    """Return the exchange symbol id a candle file holds (``XRP_USDT_USDT-5m.csv`` → ``XRPUSDT``).

    Futures files name the settlement asset a second time (``_USDT`` after the quote); the
    exchange id is base + quote.
    """
    match = _FILE_NAME.match(path.name)
    if not match:
        raise ValueError(f"candle file {path.name!r}: cannot tell the market from its name")
    parts = match.group("market").split("_")
    if len(parts) == 3 and parts[1] == parts[2]:
        parts = parts[:2]
    return "".join(parts)


def _parse_time(text: str) -> datetime:
    text = text.strip().replace("Z", "+00:00")
    moment = datetime.fromisoformat(text)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def daily_bars(path: Path, symbol: str | None = None) -> list[DailyBar]:
    """Aggregate a candle CSV (timestamp, open, high, low, close, volume; UTC) into daily bars."""
    symbol = symbol or symbol_of(path)
    days: dict[date, list] = {}
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = {"timestamp", "close", "volume"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"candle file {path.name}: columns {sorted(missing)} are missing")
        for line, row in enumerate(reader, start=2):
            try:
                at = _parse_time(row["timestamp"])
                close = to_decimal(row["close"], "close")
                volume = to_decimal(row["volume"], "volume")
            except (ValueError, TypeError) as exc:
                raise ValueError(f"candle file {path.name} line {line}: {exc}") from exc
            if close <= 0 or volume < 0:
                raise ValueError(
                    f"candle file {path.name} line {line}: close {close} and volume {volume} "
                    "must be positive"
                )
            day = days.setdefault(at.date(), [at, close, Decimal(0), 0])
            if at >= day[0]:
                day[0], day[1] = at, close
            day[2] += volume * close
            day[3] += 1
    return [
        DailyBar(symbol, d, close, round_down(quote_volume), candles, path.name)
        for d, (_at, close, quote_volume, candles) in sorted(days.items())
    ]


def candle_files(data_dir: Path) -> list[Path]:
    """Return the OHLCV candle files under ``<data_dir>/market`` (mark-price and funding files excluded)."""
    root = data_dir / "market"
    return sorted(
        p
        for p in root.rglob("*.csv")
        if "trades" not in p.name and "mark" not in p.name and "funding" not in p.name
    )


def store_bars(session: Session, bars: Iterable[DailyBar]) -> tuple[int, int]:
    """Insert new bars and correct changed ones (idempotent); return (inserted, updated)."""
    bars = list(bars)
    if not bars:
        return 0, 0
    symbols = {b.symbol for b in bars}
    existing = {
        (row.symbol, row.price_date): row
        for row in session.scalars(select(MarkPrice).where(MarkPrice.symbol.in_(symbols)))
    }
    inserted = updated = 0
    for bar in bars:
        row = existing.get((bar.symbol, bar.price_date))
        if row is None:
            session.add(
                MarkPrice(
                    symbol=bar.symbol,
                    price_date=bar.price_date,
                    price=bar.price,
                    quote_volume=bar.quote_volume,
                    candles=bar.candles,
                    source=bar.source,
                )
            )
            inserted += 1
        elif (row.price, row.quote_volume, row.candles) != (
            bar.price,
            bar.quote_volume,
            bar.candles,
        ):
            row.price, row.quote_volume, row.candles = bar.price, bar.quote_volume, bar.candles
            row.source = bar.source
            updated += 1
    session.flush()
    return inserted, updated


def load_candle_files(session: Session, paths: Iterable[Path]) -> dict[str, tuple[int, int]]:
    """Load every candle file's daily bars; return (inserted, updated) per symbol."""
    return {symbol_of(p): store_bars(session, daily_bars(p)) for p in paths}
