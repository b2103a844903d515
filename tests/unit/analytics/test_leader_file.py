"""The real lead trader's published fills: quirks survived, duplicates dropped, times in UTC."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from copytrade.analytics.leader_file import read_published_fills

FILE = "leaders/binance-lead-trader-fills-2025-01-27_2025-03-21.csv"


@pytest.fixture(scope="module")
def history():
    from copytrade.config import get_settings

    path = get_settings().data_dir / FILE
    if not path.exists():
        pytest.skip(f"{path} is absent (set COPYTRADE_DATA_DIR)")
    return read_published_fills(path)


def test_duplicates_dropped_and_counts_match_the_data_readme(history):
    assert history.rows == 1728
    assert history.duplicates == 263
    assert len(history.fills) == 1465
    assert sum(f.is_opening for f in history.fills) == 1058
    assert sum(not f.is_opening for f in history.fills) == 407
    assert len({f.trade_id for f in history.fills}) == 1465


def test_realised_pnl_sums_to_the_published_total(history):
    assert sum(f.realised_pnl for f in history.fills) == Decimal("1954.78955536")


def test_times_are_utc_and_oldest_first(history):
    times = [f.traded_at for f in history.fills]
    assert times == sorted(times)
    # newest row of the file: 2025-03-21 20:43:25 at UTC+3
    assert times[-1] == datetime(2025, 3, 21, 17, 43, 25, tzinfo=UTC)


def test_quantity_with_separators_and_unit_is_exact(history):
    pepe = [f for f in history.fills if f.symbol == "1000PEPEUSDT" and f.quantity == Decimal(97649)]
    assert pepe and pepe[0].realised_pnl == Decimal("-6.10198149")
    assert all(f.symbol.endswith("USDT") and not f.symbol.endswith("Perp") for f in history.fills)


def test_unknown_side_is_refused_with_line(tmp_path):
    path = tmp_path / "f.csv"
    path.write_text("a,b,c,d,e,f,g\n2025-01-01 00:00:00,XUSDTPerp,x,Sideways,1,1 X,0 USDT\n")
    with pytest.raises(ValueError, match="line 2: side 'Sideways'"):
        read_published_fills(path)
