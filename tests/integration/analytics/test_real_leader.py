"""The real lead trader (shared/data/leaders/): the warehouse's PnL and win rate over the file's
period equal what its published per-fill realised PnL says (R-MET-2, R-MET-3)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from analytics_support import add_portfolio, warehouse_frame
from sqlalchemy.orm import Session

import models
from copytrade.analytics.leader_file import read_published_fills, store_published_fills
from copytrade.analytics.warehouse import Warehouse, build
from copytrade.config import get_settings
from copytrade.db import make_engine

FILE = "leaders/binance-lead-trader-fills-2025-01-27_2025-03-21.csv"
LAST_DAY = date(2025, 3, 21)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    path = get_settings().data_dir / FILE
    if not path.exists():
        pytest.skip(f"{path} is absent (set COPYTRADE_DATA_DIR)")
    history = read_published_fills(path)
    root = tmp_path_factory.mktemp("real-leader")
    url = f"sqlite:///{root / 'ledger.db'}"
    engine = make_engine(url)
    models.Base.metadata.create_all(engine)
    with Session(engine) as session, session.begin():
        # an imported leader has no ledger flows: its capital is its one flow at creation
        add_portfolio(
            session,
            1,
            capital=Decimal(10_000),
            created=datetime(2025, 1, 26, tzinfo=UTC),
            post_capital=False,
        )
        store_published_fills(session, 1, history.fills)
    engine.dispose()
    warehouse = Warehouse.duckdb(root / "warehouse")
    report = build(warehouse, url, dbt_vars={"as_of_date": LAST_DAY.isoformat()})
    assert report.dbt.success, (report.dbt.error, report.dbt.failures)
    return {"warehouse": warehouse, "history": history}


def test_pnl_and_win_rate_equal_the_published_realised_pnl_R_MET_2(built):
    fills = built["history"].fills
    closes = [f for f in fills if not f.is_opening]
    expected_pnl = sum(f.realised_pnl for f in fills)
    expected_win_rate = sum(f.realised_pnl > 0 for f in closes) / len(closes)
    row = warehouse_frame(
        built["warehouse"].path,
        f"select * from leader_metrics where portfolio_id = 1 and period = 'all' and metric_date = date '{LAST_DAY}'",
    ).iloc[0]
    assert expected_pnl == Decimal("1954.78955536")
    assert row["realised_pnl_usd"] == expected_pnl
    assert row["pnl_usd"] == expected_pnl  # no fees published, positions carried at cost (no marks)
    assert row["closing_fills"] == len(closes) == 407
    assert row["win_rate"] == pytest.approx(expected_win_rate, rel=1e-15)
    assert row["equity_usd"] == Decimal(10_000) + expected_pnl
    assert row["history_days"] == (LAST_DAY - date(2025, 1, 26)).days + 1


def test_closes_of_positions_opened_before_the_file_are_prehistory_R_MET_3(built):
    """The file starts mid-position: such closes must not create negative (short) long positions."""
    frame = warehouse_frame(
        built["warehouse"].path,
        "select min(position_quantity) as lowest, max(prehistory_quantity) as prehistory "
        "from int_book_fills_positioned where book_type = 'leader' and position_side = 'long'",
    ).iloc[0]
    assert frame["lowest"] >= 0
    assert frame["prehistory"] > 0


def test_daily_pnl_matches_published_realised_pnl_per_utc_day(built):
    by_day: dict[date, Decimal] = {}
    for f in built["history"].fills:
        by_day[f.traded_at.date()] = by_day.get(f.traded_at.date(), Decimal(0)) + f.realised_pnl
    frame = warehouse_frame(
        built["warehouse"].path,
        "select return_date, daily_pnl_usd from fct_leader_daily_returns where portfolio_id = 1",
    )
    actual = dict(zip(frame["return_date"], frame["daily_pnl_usd"], strict=True))
    for day, pnl in by_day.items():
        assert actual[day] == pnl, day
    assert sum(actual.values()) == Decimal("1954.78955536")
