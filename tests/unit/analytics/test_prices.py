"""Daily mark prices from the real candle files (R-MET-3 marks, R-X-5 volume)."""

from __future__ import annotations

import csv
from datetime import date
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from copytrade.analytics.prices import candle_files, daily_bars, load_candle_files, symbol_of
from models.market import MarkPrice


@pytest.mark.parametrize(
    "name,symbol",
    [
        ("1000PEPEUSDT-5m-2025.csv", "1000PEPEUSDT"),
        ("XRP_USDT_USDT-5m.csv", "XRPUSDT"),
        ("ETH_BTC-5m.csv", "ETHBTC"),
        ("XRP_ETH-1m.csv", "XRPETH"),
    ],
)
def test_symbol_of_candle_file(tmp_path, name, symbol):
    assert symbol_of(tmp_path / name) == symbol


def test_daily_close_is_the_last_candle_of_the_utc_day(shared_data):
    path = shared_data / "market/futures/1000PEPEUSDT-5m-2025.csv"
    bars = daily_bars(path)
    with path.open(newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["timestamp"].startswith("2025-02-03")]
    bar = next(b for b in bars if b.price_date == date(2025, 2, 3))
    assert bar.price == Decimal(rows[-1]["close"])
    assert bar.candles == len(rows) == 288
    expected_volume = sum(Decimal(r["volume"]) * Decimal(r["close"]) for r in rows)
    assert bar.quote_volume == expected_volume.quantize(Decimal("1e-8"), rounding="ROUND_DOWN")
    assert [b.price_date for b in bars] == sorted({b.price_date for b in bars})


def test_candle_files_exclude_trades_mark_and_funding(shared_data):
    names = {p.name for p in candle_files(shared_data)}
    assert "ONDOUSDT-5m-2025.csv" in names
    assert not {n for n in names if "trades" in n or "funding" in n or "mark" in n}


def test_bad_candle_row_names_file_line_and_value(tmp_path):
    path = tmp_path / "BAD_USDT-5m.csv"
    path.write_text("timestamp,open,high,low,close,volume\n2025-01-01 00:00:00,1,1,1,abc,5\n")
    with pytest.raises(ValueError, match=r"BAD_USDT-5m.csv line 2: .*'abc'"):
        daily_bars(path)


def test_loading_bars_twice_changes_nothing(session, shared_data):
    paths = [shared_data / "market/futures/ONDOUSDT-5m-2025.csv"]
    with session.begin():
        first = load_candle_files(session, paths)
    with session.begin():
        second = load_candle_files(session, paths)
    assert first == {"ONDOUSDT": (27, 0)}
    assert second == {"ONDOUSDT": (0, 0)}
    assert session.scalar(select(func.count()).select_from(MarkPrice)) == 27
