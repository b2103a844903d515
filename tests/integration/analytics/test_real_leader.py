"""The real lead trader (shared/data/leaders/) the user's way, through the CLI only:
`wallets deposit` → `leaders apply` → `leaders import-fills` → `marks load` (the real 1000PEPE and
ONDO candles) → `metrics build` → `leaders top`. PnL and win rate equal the file's published
figures; Sharpe, MDD, annual and cumulative return equal empyrical-reloaded's (R-MET-2, R-MET-3).
"""

from __future__ import annotations

import json
from datetime import date, timedelta
from decimal import Decimal

import empyrical
import pytest
from analytics_support import warehouse_frame
from typer.testing import CliRunner

from copytrade.cli import app
from copytrade.config import get_settings

FILE = "leaders/binance-lead-trader-fills-2025-01-27_2025-03-21.csv"
CANDLES = ("market/futures/1000PEPEUSDT-5m-2025.csv", "market/futures/ONDOUSDT-5m-2025.csv")
LAST_DAY = date(2025, 3, 21)
FIRST_DAY = date(2025, 1, 26)  # the first fill, 2025-01-27 00:49 UTC+3, is 01-26 21:49 UTC
PUBLISHED_PNL = Decimal("1954.78955536")  # Σ realised PnL of the file without duplicates
PERIODS = {"7d": 7, "30d": 30, "90d": 90, "all": None}
runner = CliRunner()


def cli(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, (args, result.output)
    return result.output


@pytest.fixture(scope="module")
def user(tmp_path_factory):
    data = get_settings().data_dir
    if not (data / FILE).exists():
        pytest.skip(f"{data / FILE} is absent (set COPYTRADE_DATA_DIR)")
    home = tmp_path_factory.mktemp("real-leader")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("COPYTRADE_HOME", str(home))
        from copytrade.cli.common import console

        env.setattr(console, "width", 200)  # the leaderboard table is wide
        env.delenv("COPYTRADE_DATABASE_URL", raising=False)
        env.delenv("COPYTRADE_WAREHOUSE_PATH", raising=False)
        env.delenv("COPYTRADE_DBT_TARGET", raising=False)
        get_settings.cache_clear()
        cli("db", "upgrade")
        cli("wallets", "deposit", "--handle", "trader", "--amount", "10000")
        cli(
            "leaders", "apply", "--handle", "trader", "--mode", "futures",
            "--nickname", "RealTrader", "--description", "a real Binance lead trader",
            "--capital", "10000", "--accept-agreement",
        )  # fmt: skip
        imported = json.loads(cli("leaders", "import-fills", str(data / FILE), "--portfolio", "1"))
        again = json.loads(cli("leaders", "import-fills", str(data / FILE), "--portfolio", "1"))
        cli("marks", "load", *(str(data / c) for c in CANDLES))
        built = runner.invoke(app, ["metrics", "build", "--as-of", LAST_DAY.isoformat()])
        assert built.exit_code == 0, built.output
        top = cli("leaders", "top", "--period", "all")
        cli("leaders", "report", "trader", "--output", str(home / "trader.png"))
        cli("leaders", "report", "1", "--output", str(home / "trader.html"))
        yield {
            "warehouse": home / "warehouse.duckdb",
            "imported": imported,
            "again": again,
            "build_output": " ".join(built.output.split()),
            "top": " ".join(top.split()),
            "png": (home / "trader.png").read_bytes(),
            "html": (home / "trader.html").read_text(),
        }
    get_settings.cache_clear()


def _metrics(user, period: str):
    return warehouse_frame(
        user["warehouse"],
        "select * from leader_metrics where portfolio_id = 1 "
        f"and period = '{period}' and metric_date = date '{LAST_DAY}'",
    ).iloc[0]


def _returns(user, days: int | None):
    frame = warehouse_frame(
        user["warehouse"],
        "select return_date, daily_return from fct_leader_daily_returns where portfolio_id = 1 "
        f"and return_date <= date '{LAST_DAY}' order by return_date",
    )
    if days is not None:
        frame = frame[frame["return_date"] > LAST_DAY - timedelta(days=days)]
    return frame.set_index("return_date")["daily_return"]


def test_import_is_counted_idempotent_and_dates_the_capital_R_IN_1(user):
    first, again = user["imported"], user["again"]
    assert (first["rows"], first["kept"], first["stored"], first["duplicates"]) == (
        1728,
        1465,
        1465,
        263,
    )
    assert (first["opening"], first["closing"]) == (1058, 407)
    assert first["capital_since"] == FIRST_DAY.isoformat()
    assert (again["stored"], again["already_stored"]) == (0, 1465)


def test_all_time_pnl_and_win_rate_are_the_files_published_figures_R_MET_2(user):
    row = _metrics(user, "all")
    assert row["pnl_usd"] == PUBLISHED_PNL  # 1,954.79 USDT
    assert row["realised_pnl_usd"] == PUBLISHED_PNL
    assert (row["winning_fills"], row["closing_fills"]) == (303, 407)
    assert row["win_rate"] == pytest.approx(303 / 407, rel=1e-15)
    assert row["equity_usd"] == Decimal(10_000) + PUBLISHED_PNL


def test_capital_counts_from_the_first_imported_day_R_MET_3(user):
    """The declared capital is effective from the history's first day, not from today."""
    row = _metrics(user, "all")
    assert row["history_days"] == (LAST_DAY - FIRST_DAY).days + 1 == 55
    assert row["time_weighted_capital_usd"] == Decimal(10_000)
    assert row["roi_pct"] == pytest.approx(float(100 * PUBLISHED_PNL / 10_000), rel=1e-12)
    first = warehouse_frame(
        user["warehouse"],
        "select * from fct_leader_daily_returns where portfolio_id = 1 order by return_date limit 1",
    ).iloc[0]
    assert first["return_date"] == FIRST_DAY and first["capital_base_usd"] == Decimal(10_000)


@pytest.mark.parametrize("period", PERIODS)
def test_sharpe_mdd_and_returns_equal_empyrical_R_MET_3(user, period):
    returns = _returns(user, PERIODS[period])
    row = _metrics(user, period)
    assert returns.notna().all() and len(returns) == row["return_days"]
    assert row["sharpe"] == pytest.approx(
        empyrical.sharpe_ratio(returns, annualization=365), rel=1e-9, abs=1e-12
    )
    assert row["mdd_pct"] / 100 == pytest.approx(
        -empyrical.max_drawdown(returns), rel=1e-9, abs=1e-12
    )
    assert row["annual_return_pct"] / 100 == pytest.approx(
        empyrical.annual_return(returns, annualization=365), rel=1e-9, abs=1e-12
    )
    assert row["twr_pct"] / 100 == pytest.approx(
        empyrical.cum_returns_final(returns), rel=1e-9, abs=1e-12
    )


def test_closes_of_positions_opened_before_the_file_are_no_phantom_shorts_R_MET_3(user):
    frame = warehouse_frame(
        user["warehouse"],
        "select min(position_quantity) as lowest, max(prehistory_quantity) as prehistory, "
        "count(distinct position_side) as sides from int_book_positions "
        "where book_type = 'leader' and book_id = 1",
    ).iloc[0]
    assert frame["lowest"] >= 0 and frame["prehistory"] > 0
    assert frame["sides"] == 1  # every fill of this trader is a long (Open/Close long)


def test_held_positions_are_marked_at_the_real_closes_and_the_rest_named_R_MET_3(user):
    marked = warehouse_frame(
        user["warehouse"],
        "select count(*) as days from int_book_unrealised_daily where book_type = 'leader' "
        "and open_positions > unmarked_positions",
    ).iloc[0]
    assert marked["days"] > 10  # PEPE/ONDO held overnight and re-marked at the daily close
    build = user["build_output"]
    assert "marks missing" in build
    assert "portfolio 1 SUIUSDT" in build and "portfolio 1 XRPUSDT" in build
    assert "portfolio 1 1000PEPEUSDT: 1 days without a mark (2025-01-26)" in build
    row = _metrics(user, "all")
    assert not row["marks_complete"] and row["unmarked_days"] > 0
    assert f"{row['unmarked_days']} d missing" in user["top"] and "RealTrader" in user["top"]


def test_report_draws_png_and_html_with_the_r_met_figures(user):
    """`copytrade leaders report`: equity, drawdown, monthly returns over 7/30/90/all + figures."""
    assert user["png"].startswith(b"\x89PNG\r\n\x1a\n") and len(user["png"]) > 20_000
    page = user["html"]
    assert "RealTrader (portfolio 1)" in page and "data:image/png;base64," in page
    assert "<td>PnL USD</td>" in page and "<td>1,954.79</td>" in page
    assert "<td>win rate</td>" in page and "74.4%" in page
    assert "<script" not in page  # self-contained, no network


def test_report_refuses_bad_output_and_unknown_leader(user):
    bad = runner.invoke(app, ["leaders", "report", "trader", "--output", "x.pdf"])
    assert bad.exit_code == 2 and "must end in .html or .png" in bad.output


def test_no_money_column_is_a_float_R_MET_3(user):
    """Every *_usd column of the books and marts is DECIMAL (capacity's estimates aside)."""
    columns = warehouse_frame(
        user["warehouse"],
        "select table_name, column_name, data_type from information_schema.columns "
        "where column_name like '%\\_usd' escape '\\' and table_name <> 'leader_capacity'",
    )
    assert len(columns) > 30
    floats = columns[~columns["data_type"].str.startswith("DECIMAL")]
    assert floats.empty, floats.to_string()


def test_no_negative_zero_in_the_metrics_R_MET_3(user):
    import math

    frame = warehouse_frame(
        user["warehouse"],
        "select mdd_pct, roi_pct, twr_pct, annual_return_pct, sharpe from leader_metrics",
    )
    for column in frame.columns:
        values = [v for v in frame[column] if v is not None and v == 0]
        assert all(math.copysign(1, v) > 0 for v in values), column
