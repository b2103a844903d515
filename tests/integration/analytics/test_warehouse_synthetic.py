"""The warehouse on a synthetic ledger: incremental builds equal a full build, the equity and
metrics equal the pandas reference, copy quality adds up, and PostgreSQL builds the same numbers."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest
from analytics_support import warehouse_frame
from sqlalchemy import text

import models
from copytrade.analytics.warehouse import Warehouse, build
from copytrade.db import make_engine
from tests.support import reference
from tests.support.synthetic import SyntheticConfig, generate

CONFIG = SyntheticConfig(
    leaders=16, days=24, fills=3_000, copy_share=0.4, copies_per_leader=2, seed=21
)
VARS = {"metric_dates_per_build": 3}
KEYS = {
    "int_book_fills_daily": "book_type, book_id, symbol, position_side, traded_on",
    "int_book_positions": "book_type, book_id, symbol, position_side, traded_on",
    "int_book_unrealised_daily": "book_type, book_id, unrealised_date",
    "fct_leader_daily_equity": "portfolio_id, equity_date",
    "fct_copy_daily_equity": "copy_id, equity_date",
    "fct_leader_daily_returns": "portfolio_id, return_date",
    "fct_copy_daily_returns": "copy_id, return_date",
    "leader_metrics": "portfolio_id, period, metric_date",
    "fct_copy_outcomes": "intent_id",
    "leaderboard": "leaderboard_id",
    "copy_quality": "copy_quality_id",
    "leader_capacity": "portfolio_id",
}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    ledger = generate(CONFIG)
    url = f"sqlite:///{root / 'ledger.db'}"
    engine = make_engine(url)
    models.Base.metadata.create_all(engine)
    stepwise = Warehouse.duckdb(root / "stepwise")
    for since, until in ((None, 20), (20, 22), (22, None)):
        ledger.write(engine, since=since, until=until)
        report = build(stepwise, url, dbt_vars=VARS)
        assert report.dbt.success, (report.dbt.error, report.dbt.failures)
    engine.dispose()
    full = Warehouse.duckdb(root / "full")
    report = build(full, url, dbt_vars=VARS)
    assert report.dbt.success, (report.dbt.error, report.dbt.failures)
    return {"ledger": ledger, "url": url, "stepwise": stepwise, "full": full}


def _frame(path, table):
    return (
        warehouse_frame(path, f"select * exclude (_batch_id) from {table} order by {KEYS[table]}")
        if "_batch" in _columns(path, table)
        else warehouse_frame(path, f"select * from {table} order by {KEYS[table]}")
    )


def _columns(path, table) -> str:
    return ",".join(warehouse_frame(path, f"select * from {table} limit 0").columns)


def _assert_same(a: pd.DataFrame, b: pd.DataFrame, table: str, rtol: float = 1e-9) -> None:
    assert list(a.columns) == list(b.columns), table
    assert len(a) == len(b), table
    for column in a.columns:
        x, y = a[column], b[column]
        if pd.api.types.is_float_dtype(x) or pd.api.types.is_float_dtype(y):
            np.testing.assert_allclose(
                x.astype(float), y.astype(float), rtol=rtol, atol=1e-9, err_msg=f"{table}.{column}"
            )
        else:
            assert [None if pd.isna(v) else v for v in x] == [
                None if pd.isna(v) else v for v in y
            ], f"{table}.{column}"


@pytest.mark.parametrize("table", list(KEYS))
def test_incremental_builds_equal_a_full_build(built, table):
    _assert_same(_frame(built["stepwise"].path, table), _frame(built["full"].path, table), table)


def test_equity_returns_and_metrics_equal_the_pandas_reference_R_MET_3(built):
    ledger = built["ledger"]
    as_of = (ledger.day_start(CONFIG.days) - timedelta(days=1)).date()
    marks = {s: g.set_index("price_date")["price"] / 1e8 for s, g in ledger.bars.groupby("symbol")}
    fills = ledger.leader_fills.copy()
    for column in ("price", "quantity", "fee", "realised_pnl"):
        fills[column] = fills[column] / 1e8
    metrics = warehouse_frame(
        built["full"].path, f"select * from leader_metrics where metric_date = date '{as_of}'"
    )
    equity = warehouse_frame(
        built["full"].path,
        "select portfolio_id, equity_date, equity_usd from fct_leader_daily_equity",
    )
    for pid in ledger.portfolios["portfolio_id"]:
        address = f"leader:{pid}:capital"
        flows = ledger.flows[
            (ledger.flows["address"] == address) | (ledger.flows["source"] == address)
        ].copy()
        flows["amount"] = (
            np.where(flows["source"] == address, -flows["amount"], flows["amount"]) / 1e8
        )
        first = ledger.portfolios.set_index("portfolio_id")["created_at"][pid].date()
        expected = reference.daily_returns(
            reference.daily_equity(fills[fills["portfolio_id"] == pid], flows, marks, first, as_of)
        )
        actual = equity[equity["portfolio_id"] == pid].sort_values("equity_date")
        np.testing.assert_allclose(
            actual["equity_usd"].astype(float), expected["equity"], rtol=1e-12, atol=1e-6
        )
        for period, days in reference.PERIODS.items():
            want = reference.period_metrics(expected, as_of, days)
            got = metrics[(metrics["portfolio_id"] == pid) & (metrics["period"] == period)].iloc[0]
            for key in (
                "pnl_usd",
                "roi_pct",
                "twr_pct",
                "annual_return_pct",
                "sharpe",
                "mdd_pct",
                "win_rate",
                "history_days",
            ):
                if want[key] is None or (isinstance(want[key], float) and np.isnan(want[key])):
                    assert pd.isna(got[key]), (pid, period, key)
                else:
                    assert float(got[key]) == pytest.approx(want[key], rel=1e-8, abs=1e-8), (
                        pid,
                        period,
                        key,
                    )


def test_copy_quality_counts_slippage_and_delay_R_X_1(built):
    ledger = built["ledger"]
    as_of = (ledger.day_start(CONFIG.days) - timedelta(days=1)).date()
    quality = warehouse_frame(built["full"].path, "select * from copy_quality where period = 'all'")
    intents = ledger.intents.merge(ledger.copies[["copy_id", "portfolio_id"]], on="copy_id")
    fills = ledger.follower_fills.set_index("order_id")
    for copy_id, group in intents.groupby("copy_id"):
        row = quality[(quality["scope"] == "copy") & (quality["subject_id"] == copy_id)].iloc[0]
        assert row["intents"] == len(group)
        assert row["copied"] == int((group["outcome"] == "filled").sum())
        skipped = group[group["outcome"] == "skipped"]
        assert row["skipped"] == len(skipped)
        if len(skipped):
            counts = skipped["reason"].value_counts()
            assert row["skipped_by_reason"] == ", ".join(
                f"{r}={counts[r]}" for r in sorted(counts.index)
            )
        copied = fills.loc[group.loc[group["outcome"] == "filled", "id"]]
        slippage = copied["slippage_bps"] / 1e8
        assert row["slippage_bps_mean"] == pytest.approx(slippage.mean(), rel=1e-9)
        assert row["slippage_bps_p95"] == pytest.approx(np.percentile(slippage, 95), rel=1e-9)
        assert row["delay_ms_p50"] == pytest.approx(np.percentile(copied["copy_delay_ms"], 50))
        assert row["delay_ms_p99"] == pytest.approx(np.percentile(copied["copy_delay_ms"], 99))
    leaders = quality[quality["scope"] == "leader"]
    assert set(leaders["subject_id"]) == set(intents["portfolio_id"])
    assert (quality["as_of_date"] == as_of).all()
    assert quality["tracking_error_annual"].notna().any()


def test_capacity_follows_the_square_root_impact_rule_R_X_5(built):
    capacity = warehouse_frame(built["full"].path, "select * from leader_capacity")
    assert len(capacity) > 0
    for row in capacity.itertuples():
        max_order = float(row.daily_volume_usd) * (0.01 / row.daily_volatility) ** 2
        assert row.max_order_usd == pytest.approx(max_order, rel=1e-12)
        expected = max(float(row.equity_usd) * (max_order / float(row.typical_trade_usd) - 1), 0)
        assert row.capacity_usd == pytest.approx(expected, rel=1e-9)
        assert row.headroom_usd == pytest.approx(
            max(expected - float(row.copy_equity_usd), 0), rel=1e-9, abs=1e-6
        )


@pytest.mark.postgres
def test_postgres_target_builds_the_same_metrics(built, pg_server_url):
    schema = f"m_{uuid.uuid4().hex[:12]}"
    warehouse = Warehouse(kind="postgres", pg_url=pg_server_url, schema=schema)
    admin = make_engine(pg_server_url)
    try:
        report = build(warehouse, built["url"], dbt_vars=VARS)
        assert report.dbt.success, (report.dbt.error, report.dbt.failures)
        with admin.connect() as conn:
            for table in (
                "leader_metrics",
                "fct_leader_daily_equity",
                "copy_quality",
                "leaderboard",
                "leader_capacity",
            ):
                pg = pd.read_sql(
                    text(f'select * from "{schema}".{table} order by {KEYS[table]}'), conn
                )
                duck = warehouse_frame(
                    built["full"].path, f"select * from {table} order by {KEYS[table]}"
                )
                pg = pg.drop(columns=[c for c in pg.columns if c == "_batch_id"])
                duck = duck.drop(columns=[c for c in duck.columns if c == "_batch_id"])
                assert len(pg) == len(duck), table
                for column in duck.columns:
                    x, y = duck[column], pg[column]
                    if (
                        x.dtype == object
                        and len(x.dropna())
                        and isinstance(x.dropna().iloc[0], Decimal)
                    ):
                        x, y = x.astype(float), y.astype(float)
                    if pd.api.types.is_numeric_dtype(x):
                        np.testing.assert_allclose(
                            x.astype(float),
                            y.astype(float),
                            rtol=1e-9,
                            atol=1e-9,
                            err_msg=f"{table}.{column}",
                        )
                    else:
                        assert [None if pd.isna(v) else str(v) for v in x] == [
                            None if pd.isna(v) else str(v) for v in y
                        ], f"{table}.{column}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'drop schema if exists "{schema}" cascade'))
        admin.dispose()
