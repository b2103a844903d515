"""Mark prices from exchange candle files (the format of ``shared/data/market/``).

A candle file is CSV with ``timestamp, open, high, low, close, volume`` (UTC; ISO 8601 or
``YYYY-MM-DD HH:MM:SS``; volume in the base asset). Each candle becomes one mark: its close, at
the minute of the candle's close (open time + interval − 1 ms, Binance's ``closeTime``), with the
candle's quote volume (volume × close, rounded down to 1e-8). The file's name gives the market's
exchange id and the interval (``1000PEPEUSDT-5m-2025.csv``, ``XRP_USDT_USDT-5m.csv`` → XRPUSDT);
a file under a ``futures`` folder, or named with its settlement asset (``_USDT_USDT``), is ``usdm``,
one under ``spot`` is ``spot``; otherwise the market must be given.

A file with a bad row is refused whole (ValueError naming the file, line, field, value and rule):
marks are reference data, and half a file would make a day's close wrong without a trace.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path

from sqlalchemy.orm import Session

from copytrade.domain.money import round_down, to_units
from copytrade.marks.store import Mark, Recorded, record

_FILE_NAME = re.compile(
    r"^(?P<market>[A-Z0-9_]+?)-(?P<interval>\d+[mhd])(?:-[a-z_]+)?(?:-\d{4})?\.csv$"
)
_UNIT = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1)}
_ONE_MS = timedelta(milliseconds=1)


def symbol_of(path: Path) -> str:
    """The exchange symbol id a candle file holds (``XRP_USDT_USDT-5m.csv`` → ``XRPUSDT``).

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


def interval_of(path: Path) -> timedelta:
    """The candle interval the file's name states (``-5m`` → 5 minutes)."""
    match = _FILE_NAME.match(path.name)
    if not match:
        raise ValueError(f"candle file {path.name!r}: cannot tell the interval from its name")
    text = match.group("interval")
    return int(text[:-1]) * _UNIT[text[-1]]


def market_of(path: Path) -> str | None:
    """``usdm`` for futures files, ``spot`` for spot files, None when the path does not say."""
    if "futures" in path.parts or re.search(r"_([A-Z]+)_\1-", path.name):
        return "usdm"
    if "spot" in path.parts:
        return "spot"
    return None


def is_mark_file(path: Path) -> bool:
    """OHLCV candle files only: trades, mark-price and funding-rate files are not marks here."""
    return not any(word in path.name for word in ("trades", "mark", "funding"))


def candle_files(data_dir: Path) -> list[Path]:
    """The OHLCV candle files under ``<data_dir>/market``."""
    return sorted(p for p in (data_dir / "market").rglob("*.csv") if is_mark_file(p))


def _parse_time(text: str) -> datetime:
    moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _number(row: dict, name: str, path: Path, line: int) -> Decimal:
    text = (row.get(name) or "").strip()
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ValueError(
            f"candle file {path.name} line {line}: {name} {text[:40]!r} is not a decimal number"
        ) from None
    if not value.is_finite():
        raise ValueError(f"candle file {path.name} line {line}: {name} {text!r} must be finite")
    return value


def read_marks(path: Path, market: str | None = None, symbol: str | None = None) -> list[Mark]:
    """Every candle of the file as a mark at its close minute (oldest first)."""
    market = market or market_of(path)
    if market is None:
        raise ValueError(
            f"candle file {path.name}: give the market (spot or usdm); the path does not say"
        )
    symbol = symbol or symbol_of(path)
    interval = interval_of(path)
    source = f"candles:{path.name}"
    marks = []
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = {"timestamp", "close", "volume"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"candle file {path.name}: columns {sorted(missing)} are missing")
        for line, row in enumerate(reader, start=2):
            try:
                opened = _parse_time(row["timestamp"] or "")
            except ValueError:
                raise ValueError(
                    f"candle file {path.name} line {line}: timestamp "
                    f"{(row['timestamp'] or '')[:40]!r} is not an ISO 8601 time"
                ) from None
            close = _number(row, "close", path, line)
            volume = _number(row, "volume", path, line)
            if close <= 0 or volume < 0:
                raise ValueError(
                    f"candle file {path.name} line {line}: close {close} must be positive and "
                    f"volume {volume} not negative"
                )
            try:
                to_units(close, "close")  # storable exactly (≤ 8 decimals, within BIGINT units)
                quote_volume = round_down(volume * close)
                to_units(quote_volume, "quote volume")
                marks.append(
                    Mark(symbol, market, opened + interval - _ONE_MS, close, quote_volume, source)
                )
            except ValueError as exc:
                raise ValueError(f"candle file {path.name} line {line}: {exc}") from None
            except ArithmeticError:
                reason = f"quote volume {volume} × {close} is too large to store exactly"
                raise ValueError(f"candle file {path.name} line {line}: {reason}") from None
    return marks


def load_files(
    session: Session, paths: Iterable[Path], market: str | None = None
) -> dict[str, Recorded]:
    """Record every file's marks (idempotent); return what was recorded per file.

    Every file is read and checked before anything is stored, so a bad file changes nothing.
    """
    read = [(path, read_marks(path, market)) for path in paths]
    return {path.name: record(session, marks) for path, marks in read}


@dataclass(frozen=True, slots=True)
class DailyBar:
    """One UTC day of one market from a candle file: the day's close and quote volume."""

    symbol: str
    price_date: date
    price: Decimal
    quote_volume: Decimal
    candles: int
    source: str


def daily_bars(path: Path, symbol: str | None = None) -> list[DailyBar]:
    """The file's candles summed per UTC day of their close (what the warehouse derives)."""
    days: dict[date, list] = {}
    for mark in read_marks(path, market_of(path) or "spot", symbol):
        day = days.setdefault(mark.marked_at.date(), [mark.marked_at, mark.price, Decimal(0), 0])
        if mark.marked_at >= day[0]:
            day[0], day[1] = mark.marked_at, mark.price
        day[2] += mark.quote_volume
        day[3] += 1
    symbol = symbol or symbol_of(path)
    return [
        DailyBar(symbol, d, close, volume, count, path.name)
        for d, (_at, close, volume, count) in sorted(days.items())
    ]


def store_daily_bars(session: Session, bars: Iterable[DailyBar], market: str) -> Recorded:
    """Record daily bars as the marks of their days' last minute (23:59 UTC)."""
    return record(
        session,
        [
            Mark(
                b.symbol,
                market,
                datetime(
                    b.price_date.year, b.price_date.month, b.price_date.day, 23, 59, tzinfo=UTC
                ),
                b.price,
                b.quote_volume,
                f"candles:{b.source}",
            )
            for b in bars
        ],
    )
