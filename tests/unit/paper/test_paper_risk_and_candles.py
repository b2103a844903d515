"""The paper exchange's USDⓈ-M risk formulas and its market statistics of a replayed path."""

from __future__ import annotations

from decimal import Decimal

import pytest

from copytrade.paper import candles, risk
from copytrade.paper.errors import BinanceError
from copytrade.paper.prices import PricePath

D = Decimal


@pytest.mark.parametrize(
    ("notional", "expected"),
    [
        ("0", "0"),
        ("10000", "40"),  # 10,000 × 0.4 % − 0
        ("-10000", "40"),  # a short's notional counts by its size
        ("50000", "200"),  # second bracket from its floor: 50,000 × 0.5 % − 50
        ("700000", "3600"),  # 700,000 × 0.65 % − 950
    ],
)
def test_maintenance_margin_is_notional_times_rate_minus_cum(notional, expected):
    assert risk.maint_margin(D(notional)) == D(expected)


def test_bracket_cum_keeps_the_margin_continuous_at_every_floor():
    for low, high in zip(risk.BRACKETS, risk.BRACKETS[1:], strict=False):
        below = high.floor * low.maint_margin_ratio - low.cum
        above = high.floor * high.maint_margin_ratio - high.cum
        assert below == above


def test_max_notional_follows_the_leverage():
    assert risk.max_notional(125) == D(50000)
    assert risk.max_notional(20) == D(100000000)
    assert risk.max_notional(1) == D(1800000000)


def test_liquidation_price_of_a_lone_cross_long_and_short():
    # long 100 at 1.00 with 10 USDT: LP = (10 + 0 − 100) / (100 × 0.004 − 100)
    assert risk.liquidation_price(D(100), D(1), D(10), D(0), D(0), D(1)) == D("0.90361445")
    # short: LP = (10 + 100) / (0.4 + 100)
    assert risk.liquidation_price(D(-100), D(1), D(10), D(0), D(0), D(1)) == D("1.09561752")
    # a long the wallet fully covers cannot be liquidated: 0, as Binance shows
    assert risk.liquidation_price(D(100), D(1), D(1000), D(0), D(0), D(1)) == 0


def test_break_even_covers_opening_and_closing_taker_fees():
    long = risk.break_even_price(D(10), D(100), D("0.0004"))
    short = risk.break_even_price(D(-10), D(100), D("0.0004"))
    fee = D("0.0004")
    # closing at the break-even returns exactly both fees (to 1e-8)
    assert abs(10 * (long - 100) - (10 * 100 * fee + 10 * long * fee)) < D("0.000001")
    assert abs(10 * (100 - short) - (10 * 100 * fee + 10 * short * fee)) < D("0.000001")
    assert risk.break_even_price(D(0), D(100), fee) == 0


def _path() -> PricePath:
    # one 5-minute candle per 300 s as the candle reader builds it: 4 points, volume split
    times = [0, 75_000, 150_000, 225_000, 300_000, 375_000, 450_000, 525_000]
    prices = [D(p) for p in ("10", "9", "12", "11", "11", "13", "10", "12")]
    volumes = [D("2.5")] * 4 + [D("1")] * 4
    return PricePath(times, prices, 600_000, "test", volumes)


def test_window_figures_of_the_points_inside_it():
    w = candles.window(_path(), 0, 299_999)
    assert (w.open, w.high, w.low, w.close) == (D(10), D(12), D(9), D(11))
    assert w.volume == D(10) and w.count == 4
    assert w.quote_volume == D("2.5") * (10 + 9 + 12 + 11)
    assert w.weighted_average == D("10.5")
    assert w.first_id == candles.ID_BASE and w.last_id == candles.ID_BASE + 3


def test_klines_align_on_the_interval_and_stop_at_now():
    rows = candles.klines(_path(), 300_000, now=450_000, limit=10, start=0)
    assert [r.start for r in rows] == [0, 300_000]
    assert rows[1].end == 450_000 and rows[1].close == D(10)  # the candle in progress
    latest = candles.klines(_path(), 300_000, now=599_999, limit=1)
    assert [r.start for r in latest] == [300_000]


def test_points_as_aggregate_trades_from_an_id():
    rows = candles.points(_path(), now=599_999, limit=3, from_id=candles.ID_BASE + 2)
    assert [r[0] - candles.ID_BASE for r in rows] == [2, 3, 4]
    assert rows[0][2] == D(12) and rows[1][4] is True  # 12 → 11: a sell, the buyer made it


def test_unknown_interval_is_binance_1120():
    with pytest.raises(BinanceError) as caught:
        candles.interval_ms("7m")
    assert caught.value.code == -1120
