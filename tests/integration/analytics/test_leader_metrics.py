"""Leader metrics on DuckDB against empyrical-reloaded, hand-computed values and the rules (R-MET-*).

One warehouse is built for the module from a ledger with:
* leaders 1 and 2 trading 1000PEPEUSDT / ONDOUSDT at real 5-minute candle closes
  (shared/data/market/futures), positions held across days and marked at the real daily close;
  leader 2 deposits and withdraws mid-period;
* leader 3 with a hand-computable history (one closed trade a day, a deposit and a withdrawal);
* leader 4 created on the last day (one day of history);
* leader 5 taken offline (R-LEAD-9) and leader 6 full (copiers = follower cap).
"""

from __future__ import annotations

import csv
from datetime import date, datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from fractions import Fraction

import empyrical
import numpy as np
import pandas as pd
import pytest
from analytics_support import Fill, add_copy, add_fills, add_portfolio, flow, utc, warehouse_frame
from sqlalchemy.orm import Session

import models
from copytrade.analytics.warehouse import Warehouse, build, run_dbt
from copytrade.config import get_settings
from copytrade.db import make_engine
from copytrade.marks.candles import daily_bars, load_files
from tests.support import reference

D = Decimal
AS_OF = date(2025, 3, 21)
PEPE = "market/futures/1000PEPEUSDT-5m-2025.csv"
ONDO = "market/futures/ONDOUSDT-5m-2025.csv"
HAND_PNL = [100, -50, 200, 0, 150, -300, 80, 120, 60, -40]  # leader 3, 2025-03-01 … 03-10


def _candles(path) -> list[tuple[datetime, Decimal]]:
    with path.open(newline="") as handle:
        return [
            (
                datetime.fromisoformat(row["timestamp"]).replace(
                    tzinfo=pd.Timestamp(0, tz="UTC").tzinfo
                ),
                D(row["close"]),
            )
            for row in csv.DictReader(handle)
        ]


def _trade_candles(candles, every: int, until: date):
    return [c for i, c in enumerate(candles) if i % every == 0 and c[0].date() <= until]


def _avg_cost_fills(symbol: str, candles, quantity: Decimal) -> list[Fill]:
    """Cycles of long (open, add, close half, close rest) and short (open, close) trades, with the
    realised PnL an exchange publishes (average cost, truncated to 1e-8)."""
    fills: list[Fill] = []
    plan = [
        ("long", "buy", 1),
        ("long", "buy", 2),
        ("long", "sell", -1),
        ("long", "sell", -1),
        ("short", "sell", 1),
        ("short", "buy", -1),
    ]
    held = {"long": (D(0), D(0)), "short": (D(0), D(0))}  # quantity, cost
    for i, (at, price) in enumerate(candles):
        side_name, side, kind = plan[i % len(plan)]
        qty_held, cost = held[side_name]
        if kind > 0:
            q = quantity * kind
            held[side_name] = (qty_held + q, cost + q * price)
            fills.append(
                Fill(
                    symbol,
                    side,
                    side_name,
                    price,
                    q,
                    at,
                    D(0),
                    (q * price * D("0.0004")).quantize(D("1e-8"), ROUND_DOWN),
                )
            )
        else:
            q = qty_held if i % len(plan) in (3, 5) else (qty_held / 2).quantize(D("1"), ROUND_DOWN)
            avg = cost / qty_held
            sign = 1 if side_name == "long" else -1
            pnl = (sign * q * (price - avg)).quantize(D("1e-8"), ROUND_DOWN)
            held[side_name] = (qty_held - q, cost - avg * q if qty_held - q else D(0))
            fills.append(
                Fill(
                    symbol,
                    side,
                    side_name,
                    price,
                    q,
                    at,
                    pnl,
                    (q * price * D("0.0004")).quantize(D("1e-8"), ROUND_DOWN),
                    False,
                )
            )
    return fills


def _hand_fills(first: date, pnls: list[int], symbol: str = "HANDUSDT") -> list[Fill]:
    fills = []
    for i, pnl in enumerate(pnls):
        day = first + timedelta(days=i)
        fills.append(Fill(symbol, "buy", "long", D(1000), D(10), utc(day, 10)))
        fills.append(
            Fill(
                symbol,
                "sell",
                "long",
                D(1000) + D(pnl) / 10,
                D(10),
                utc(day, 11),
                D(pnl),
                D(0),
                False,
            )
        )
    return fills


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    data_dir = get_settings().data_dir
    if not data_dir.is_dir():
        pytest.skip(f"reference data folder {data_dir} is absent (set COPYTRADE_DATA_DIR)")
    root = tmp_path_factory.mktemp("metrics")
    url = f"sqlite:///{root / 'ledger.db'}"
    engine = make_engine(url)
    models.Base.metadata.create_all(engine)
    pepe = _candles(data_dir / PEPE)
    ondo = _candles(data_dir / ONDO)
    with Session(engine) as session, session.begin():
        load_files(session, [data_dir / PEPE, data_dir / ONDO])
        add_portfolio(session, 1, capital=D(10_000), created=utc(date(2025, 1, 27), 0))
        add_fills(
            session,
            1,
            _avg_cost_fills(
                "1000PEPEUSDT", _trade_candles(pepe, 97, date(2025, 3, 20)), D(100_000)
            ),
        )
        add_portfolio(session, 2, capital=D(20_000), created=utc(date(2025, 2, 24), 0))
        fills2 = _avg_cost_fills("ONDOUSDT", _trade_candles(ondo, 61, date(2025, 3, 20)), D(1_000))
        fills2 += _avg_cost_fills(
            "1000PEPEUSDT",
            _trade_candles(
                [c for c in pepe if c[0].date() >= date(2025, 2, 24)], 113, date(2025, 3, 20)
            ),
            D(200_000),
        )
        add_fills(session, 2, sorted(fills2, key=lambda f: f.at))
        flow(session, 2, D(5_000), utc(date(2025, 3, 5), 9), "dep-2")
        flow(session, 2, D(-2_000), utc(date(2025, 3, 12), 15), "wd-2")
        add_portfolio(session, 3, capital=D(10_000), created=utc(date(2025, 3, 1), 0))
        add_fills(session, 3, _hand_fills(date(2025, 3, 1), HAND_PNL))
        flow(session, 3, D(5_000), utc(date(2025, 3, 5), 0, 30), "dep-3")
        flow(session, 3, D(-3_000), utc(date(2025, 3, 8), 23), "wd-3")
        add_portfolio(session, 4, capital=D(1_000), created=utc(AS_OF, 1))
        add_fills(session, 4, _hand_fills(AS_OF, [25]))
        add_portfolio(
            session, 5, capital=D(5_000), created=utc(date(2025, 3, 10), 0), is_listed=False
        )
        add_fills(session, 5, _hand_fills(date(2025, 3, 10), [500, 400, 300, 600]))
        add_portfolio(
            session, 6, capital=D(5_000), created=utc(date(2025, 3, 10), 0), follower_cap=1
        )
        add_fills(session, 6, _hand_fills(date(2025, 3, 10), [10, -5, 20, 15]))
        add_copy(session, 1, 6, D(1_000), utc(date(2025, 3, 11), 0))
    warehouse = Warehouse.duckdb(root / "warehouse")
    report = build(
        warehouse, url, dbt_vars={"as_of_date": AS_OF.isoformat(), "metric_dates_per_build": 60}
    )
    assert report.dbt.success, (report.dbt.error, report.dbt.failures)
    engine.dispose()
    return {"warehouse": warehouse, "url": url, "data_dir": data_dir}


def _metrics(built, portfolio_id: int, period: str, metric_date: date = AS_OF) -> pd.Series:
    frame = warehouse_frame(
        built["warehouse"].path,
        f"select * from leader_metrics where portfolio_id = {portfolio_id} and period = '{period}' "
        f"and metric_date = date '{metric_date.isoformat()}'",
    )
    assert len(frame) == 1
    return frame.iloc[0]


def _returns(built, portfolio_id: int, first: date | None = None, last: date = AS_OF) -> pd.Series:
    frame = warehouse_frame(
        built["warehouse"].path,
        f"select return_date, daily_return from fct_leader_daily_returns where portfolio_id = {portfolio_id} "
        f"and return_date <= date '{last.isoformat()}' order by return_date",
    )
    if first is not None:
        frame = frame[frame["return_date"] >= first]
    return frame.set_index("return_date")["daily_return"]


@pytest.mark.parametrize("portfolio_id", [1, 2, 3, 4, 5, 6])
@pytest.mark.parametrize("period,days", [("7d", 7), ("30d", 30), ("90d", 90), ("all", None)])
def test_metrics_agree_with_empyrical_R_MET_3(built, portfolio_id, period, days):
    returns = _returns(built, portfolio_id)
    if days is not None:
        returns = returns[[d > AS_OF - timedelta(days=days) for d in returns.index]]
    row = _metrics(built, portfolio_id, period)
    assert row["return_days"] == len(returns) >= 1
    assert row["sharpe"] == pytest.approx(
        empyrical.sharpe_ratio(returns, annualization=365), rel=1e-9, abs=1e-12, nan_ok=True
    )
    assert row["mdd_pct"] / 100 == pytest.approx(
        -empyrical.max_drawdown(returns), rel=1e-9, abs=1e-12, nan_ok=True
    )
    assert row["annual_return_pct"] / 100 == pytest.approx(
        empyrical.annual_return(returns, annualization=365), rel=1e-9, abs=1e-12
    )
    assert row["twr_pct"] / 100 == pytest.approx(
        empyrical.cum_returns_final(returns), rel=1e-9, abs=1e-12, nan_ok=True
    )


@pytest.mark.parametrize(
    "portfolio_id,first,symbols",
    [(1, date(2025, 1, 27), [PEPE]), (2, date(2025, 2, 24), [PEPE, ONDO])],
)
def test_equity_marked_at_real_daily_closes_matches_reference_R_MET_3(
    built, portfolio_id, first, symbols
):
    """The warehouse's equity curve equals an independent day-by-day average-cost computation."""
    engine = make_engine(built["url"])
    fills = pd.read_sql(f"select * from leader_fills where portfolio_id = {portfolio_id}", engine)
    flows = pd.read_sql(
        "select t.created_at as at, p.amount from ledger_postings p join ledger_transfers t on t.id = p.transfer_id "
        f"join ledger_accounts a on a.id = p.account_id where a.address = 'leader:{portfolio_id}:capital'",
        engine,
    )
    engine.dispose()
    for column in ("price", "quantity", "fee", "realised_pnl"):
        fills[column] = fills[column] / 1e8
    fills["traded_at"] = pd.to_datetime(fills["traded_at"], utc=True)
    fills["is_opening"] = fills["is_opening"].astype(bool)
    flows["amount"] = flows["amount"] / 1e8
    flows["at"] = pd.to_datetime(flows["at"], utc=True)
    marks = {}
    for path in symbols:
        bars = daily_bars(built["data_dir"] / path)
        marks[bars[0].symbol] = pd.Series(
            [float(b.price) for b in bars], index=[b.price_date for b in bars]
        )
    expected = reference.daily_returns(reference.daily_equity(fills, flows, marks, first, AS_OF))
    actual = warehouse_frame(
        built["warehouse"].path,
        f"select e.equity_date, e.equity_usd, r.daily_return from fct_leader_daily_equity e "
        f"join fct_leader_daily_returns r on r.portfolio_id = e.portfolio_id and r.return_date = e.equity_date "
        f"where e.portfolio_id = {portfolio_id} order by 1",
    )
    assert list(actual["equity_date"]) == list(expected["date"])
    np.testing.assert_allclose(
        actual["equity_usd"].astype(float), expected["equity"], rtol=1e-12, atol=1e-6
    )
    np.testing.assert_allclose(
        actual["daily_return"], expected["daily_return"], rtol=1e-9, atol=1e-12
    )
    positions = warehouse_frame(
        built["warehouse"].path,
        f"select count(*) as open_days from int_book_unrealised_daily where book_id = {portfolio_id} "
        "and book_type = 'leader' and open_positions > unmarked_positions",
    )
    assert positions["open_days"].iloc[0] > 5  # positions really were held overnight and marked


def test_roi_with_deposit_and_withdrawal_is_time_weighted_R_MET_3(built):
    # Hand computation: flows count from the start of their day; the 10-day window 03-01 … 03-10.
    equity, returns = Fraction(0), []
    flows = {0: 10_000, 4: 5_000, 7: -3_000}
    for day, pnl in enumerate(HAND_PNL):
        base = equity + flows.get(day, 0)
        returns.append(Fraction(pnl) / base)
        equity = base + pnl
    pnl_total = sum(HAND_PNL)  # 320
    time_weighted_capital = Fraction(10_000 * 10 + 5_000 * 6 - 3_000 * 3, 10)  # 12,100
    row = _metrics(built, 3, "all", date(2025, 3, 10))
    assert row["pnl_usd"] == D(pnl_total)
    assert row["time_weighted_capital_usd"] == D("12100")
    assert row["roi_pct"] == pytest.approx(
        float(100 * Fraction(pnl_total) / time_weighted_capital), rel=1e-12
    )
    twr = np.prod([1 + float(r) for r in returns]) - 1
    assert row["twr_pct"] == pytest.approx(100 * twr, rel=1e-12)
    actual = _returns(built, 3, last=date(2025, 3, 10))
    np.testing.assert_allclose(actual.to_numpy(), [float(r) for r in returns], rtol=1e-12)
    assert row["equity_usd"] == D(12_320)
    assert row["win_rate"] == pytest.approx(6 / 10)  # closing fills with realised PnL > 0


def test_leader_with_one_day_has_null_sharpe_not_an_error_R_MET_2(built):
    for period in ("7d", "30d", "90d", "all"):
        row = _metrics(built, 4, period)
        assert row["history_days"] == 1
        assert row["return_days"] == 1
        assert pd.isna(row["sharpe"])
        assert row["pnl_usd"] == D(25)
        assert row["mdd_pct"] == pytest.approx(0)


def test_every_portfolio_has_every_period_and_the_r_met_2_columns(built):
    frame = warehouse_frame(
        built["warehouse"].path, f"select * from leader_metrics where metric_date = date '{AS_OF}'"
    )
    assert set(frame["period"]) == {"7d", "30d", "90d", "all"}
    assert sorted(frame["portfolio_id"].unique()) == [1, 2, 3, 4, 5, 6]
    for column in (
        "pnl_usd",
        "roi_pct",
        "sharpe",
        "mdd_pct",
        "win_rate",
        "copiers",
        "aum_usd",
        "copiers_pnl_usd",
        "history_days",
    ):
        assert column in frame.columns
    full = frame[(frame["portfolio_id"] == 6) & (frame["period"] == "all")].iloc[0]
    assert full["copiers"] == 1
    # AUM = leader equity + the active copy's equity (the copy has no fills: its allocation)
    assert full["aum_usd"] == full["equity_usd"] + D(1_000)


def test_leaderboard_order_hidden_and_full_listings_R_MET_4(built):
    board = warehouse_frame(
        built["warehouse"].path,
        "select * from leaderboard where period = '30d' order by sharpe_rank",
    )
    assert 5 not in set(board["portfolio_id"])  # taken offline (R-LEAD-9)
    assert set(board["portfolio_id"]) == {1, 2, 3, 4, 6}
    expected = board.assign(null_sharpe=board["sharpe"].isna()).sort_values(
        ["null_sharpe", "sharpe", "pnl_usd", "portfolio_id"], ascending=[True, False, False, True]
    )
    assert list(board["portfolio_id"]) == list(expected["portfolio_id"])
    assert list(board["sharpe_rank"]) == list(range(1, len(board) + 1))
    assert board.iloc[-1]["portfolio_id"] == 4  # no Sharpe yet: last
    flags = board.set_index("portfolio_id")["is_full"]
    assert flags[6] and not flags[1] and not flags[3]


def test_dbt_unit_tests_of_every_formula_pass(built):
    run = run_dbt(built["warehouse"], ["test", "--select", "test_type:unit"])
    assert run.success, run.failures
    assert len(run.nodes) >= 8
