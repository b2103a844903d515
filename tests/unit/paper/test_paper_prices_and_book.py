"""Price paths from the real candle files, repeat-around, funding times, and the synthetic book."""

from __future__ import annotations

import csv
from decimal import Decimal as D

from copytrade.config import get_settings
from copytrade.paper.book import BookConfig, depth, level_quantity, sweep
from copytrade.paper.catalog import load_catalog
from copytrade.paper.prices import candles_path, funding_schedule, parse_time_ms

MARKET_DIR = get_settings().data_dir / "market"


def test_time_formats_of_both_candle_sources():
    assert parse_time_ms("2021-11-15T00:00:00.000Z") == 1636934400000
    assert parse_time_ms("2025-01-27 00:00:00") == 1737936000000


def test_candle_path_has_four_points_per_candle_inside_its_range():
    file = MARKET_DIR / "futures" / "ONDOUSDT-5m-2025.csv"
    path = candles_path(file)
    with file.open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(path.prices) == 4 * len(rows)
    first = rows[0]
    assert path.prices[0] == D(first["open"]) and path.prices[3] == D(first["close"])
    assert {path.prices[1], path.prices[2]} == {D(first["high"]), D(first["low"])}
    assert path.times[:4] == [path.first + k * 75_000 for k in range(4)]


def test_path_repeats_outside_its_dates():
    path = candles_path(MARKET_DIR / "futures" / "XRP_USDT_USDT-5m.csv")
    t = path.first + 12_345_678
    assert path.price_at(t + path.span) == path.price_at(t) == path.price_at(t - 3 * path.span)
    assert path.index(t + path.span) == path.index(t) + len(path.times)


def test_funding_events_between_times():
    schedule = funding_schedule(MARKET_DIR / "futures" / "XRP_USDT_USDT-8h-funding_rate.csv")
    start = parse_time_ms("2021-11-17T23:00:00Z")
    events = schedule.events_between(start, start + 17 * 3_600_000)
    assert [t for t, _ in events] == [
        parse_time_ms("2021-11-18T00:00:00Z"),
        parse_time_ms("2021-11-18T08:00:00Z"),
        parse_time_ms("2021-11-18T16:00:00Z"),
    ]
    assert all(rate == D("0.0001") for _, rate in events)


def test_book_levels_on_the_tick_and_sweeps_walk_them():
    btc = load_catalog(get_settings().data_dir).spot["BTCUSDT"].market
    config = BookConfig()
    bids, asks = depth(D(10000), btc, config, 5)
    assert bids[0][0] < D(10000) < asks[0][0]
    assert all(p % btc.tick_size == 0 and q % btc.step_size == 0 for p, q in bids + asks)
    assert [p for p, _ in asks] == sorted(p for p, _ in asks)
    three_levels = sum(q for _, q in asks[:3])
    assert asks[0][1] == level_quantity(asks[0][0], btc, config)
    fills = sweep(D(10000), btc, config, "buy", three_levels)
    assert fills == asks[:3]
    limited = sweep(D(10000), btc, config, "buy", three_levels, limit_price=asks[1][0])
    assert len(limited) == 2
    huge = sweep(D(10000), btc, config, "sell", D(1000))
    assert sum(q for _, q in huge) == D(1000) and len(huge) == config.levels
