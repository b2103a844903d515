"""Mark prices: one minute-grain table, its store, the candle loader and the klines fetch
(R-MET-3 marks positions at the daily close, R-X-5 sizes capacity from the day's volume)."""

from __future__ import annotations

import csv
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_DOWN, Decimal

import pytest
from sqlalchemy import func, select

from copytrade.marks.candles import (
    candle_files,
    daily_bars,
    interval_of,
    load_files,
    market_of,
    read_marks,
    symbol_of,
)
from copytrade.marks.fetch import Candle, fetch_marks
from copytrade.marks.store import (
    Mark,
    PrunePolicy,
    daily_closes,
    latest_at_or_before,
    prune,
    record,
)
from models.market import MarkPrice

D = Decimal
ONDO = "market/futures/ONDOUSDT-5m-2025.csv"
PEPE = "market/futures/1000PEPEUSDT-5m-2025.csv"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    "name,symbol,interval",
    [
        ("1000PEPEUSDT-5m-2025.csv", "1000PEPEUSDT", timedelta(minutes=5)),
        ("XRP_USDT_USDT-5m.csv", "XRPUSDT", timedelta(minutes=5)),
        ("ETH_BTC-5m.csv", "ETHBTC", timedelta(minutes=5)),
        ("XRP_ETH-1m.csv", "XRPETH", timedelta(minutes=1)),
    ],
)
def test_symbol_and_interval_of_candle_file(tmp_path, name, symbol, interval):
    assert symbol_of(tmp_path / name) == symbol
    assert interval_of(tmp_path / name) == interval


def test_market_of_candle_file(shared_data):
    assert market_of(shared_data / PEPE) == "usdm"
    assert market_of(shared_data / "market/spot/ETH_BTC-5m.csv") == "spot"
    assert market_of(shared_data.parent / "XRP_USDT_USDT-5m.csv") == "usdm"


def test_each_candle_is_a_mark_at_its_close_minute(shared_data):
    marks = read_marks(shared_data / PEPE)
    first = marks[0]
    # the 00:00 candle closes at 00:04:59.999 → the 00:04 minute, as Binance's closeTime
    assert first.marked_at == at("2025-01-27 00:04")
    assert (first.symbol, first.market, first.source) == (
        "1000PEPEUSDT",
        "usdm",
        "candles:1000PEPEUSDT-5m-2025.csv",
    )
    assert first.price == D("0.0138154")
    assert first.quote_volume == (D(3365246505) * D("0.0138154")).quantize(
        D("1e-8"), rounding=ROUND_DOWN
    )


def test_daily_close_is_the_last_candle_of_the_utc_day(shared_data):
    path = shared_data / PEPE
    bars = daily_bars(path)
    with path.open(newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["timestamp"].startswith("2025-02-03")]
    bar = next(b for b in bars if b.price_date == date(2025, 2, 3))
    assert bar.price == D(rows[-1]["close"])
    assert bar.candles == len(rows) == 288
    expected_volume = sum(
        (D(r["volume"]) * D(r["close"])).quantize(D("1e-8"), rounding=ROUND_DOWN) for r in rows
    )
    assert bar.quote_volume == expected_volume
    assert [b.price_date for b in bars] == sorted({b.price_date for b in bars})


def test_candle_files_exclude_trades_mark_and_funding(shared_data):
    names = {p.name for p in candle_files(shared_data)}
    assert "ONDOUSDT-5m-2025.csv" in names
    assert not {n for n in names if "trades" in n or "funding" in n or "mark" in n}


@pytest.mark.parametrize(
    "row,message",
    [
        ("2025-01-01 00:00:00,1,1,1,abc,5", r"line 2: close 'abc' is not a decimal number"),
        ("2025-01-01 00:00:00,1,1,1,NaN,5", r"line 2: close 'NaN' must be finite"),
        ("2025-01-01 00:00:00,1,1,1,-2,5", r"line 2: close -2 must be positive"),
        ("yesterday,1,1,1,2,5", r"line 2: timestamp 'yesterday' is not an ISO 8601 time"),
        ("2025-01-01 00:00:00,1,1,1,1e999,5", r"line 2: close: 1E\+999 is too large"),
        ("2025-01-01 00:00:00,1,1,1,2,1e999", r"line 2: quote volume 1E\+999 × 2 is too large"),
    ],
)
def test_bad_candle_row_names_file_line_field_and_value(tmp_path, row, message):
    path = tmp_path / "BAD_USDT_USDT-5m.csv"
    path.write_text(f"timestamp,open,high,low,close,volume\n{row}\n")
    with pytest.raises(ValueError, match=rf"BAD_USDT_USDT-5m.csv {message}"):
        read_marks(path)


def test_loading_twice_changes_nothing_and_a_bad_file_stores_nothing(
    session, shared_data, tmp_path
):
    bad = tmp_path / "BAD_USDT_USDT-5m.csv"
    bad.write_text("timestamp,open,high,low,close,volume\n2025-01-01 00:00:00,1,1,1,x,5\n")
    with pytest.raises(ValueError), session.begin():
        load_files(session, [shared_data / ONDO, bad])
    with session.begin():
        assert session.scalar(select(func.count()).select_from(MarkPrice)) == 0
    with session.begin():
        first = load_files(session, [shared_data / ONDO])
    with session.begin():
        second = load_files(session, [shared_data / ONDO])
    assert first["ONDOUSDT-5m-2025.csv"].inserted == 7500
    assert (second["ONDOUSDT-5m-2025.csv"].inserted, second["ONDOUSDT-5m-2025.csv"].unchanged) == (
        0,
        7500,
    )
    assert session.scalar(select(func.count()).select_from(MarkPrice)) == 7500


def test_record_truncates_to_the_minute_and_corrects_a_changed_minute(session):
    with session.begin():
        record(session, [Mark("BTCUSDT", "usdm", at("2025-01-01 10:00:42"), D("100"))])
        again = record(
            session, [Mark("BTCUSDT", "usdm", at("2025-01-01 10:00:05"), D("101"), D("5"))]
        )
        spot = record(session, [Mark("BTCUSDT", "spot", at("2025-01-01 10:00:05"), D("99"))])
    assert (again.inserted, again.updated) == (0, 1)
    assert spot.inserted == 1  # the same symbol in another market is another mark
    rows = session.execute(select(MarkPrice.market, MarkPrice.marked_at, MarkPrice.price)).all()
    assert sorted(rows) == [
        ("spot", at("2025-01-01 10:00"), D("99")),
        ("usdm", at("2025-01-01 10:00"), D("101")),
    ]


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"market": "coinm"}, "market 'coinm'"),
        ({"price": D("-1")}, "price"),
        ({"price": D("NaN")}, "price"),
        ({"marked_at": datetime(2025, 1, 1)}, "time zone"),
        ({"price": D("0.000000001")}, "8 decimals"),
    ],
)
def test_bad_marks_are_refused_with_the_field(kwargs, message):
    values = {
        "symbol": "BTCUSDT",
        "market": "usdm",
        "marked_at": at("2025-01-01 00:00"),
        "price": D(1),
    }
    with pytest.raises(ValueError, match=message):
        Mark(**{**values, **kwargs})


def test_latest_at_or_before_respects_max_age(session):
    with session.begin():
        record(
            session,
            [
                Mark("ONDOUSDT", "usdm", at("2025-03-01 12:00"), D("1.1")),
                Mark("ONDOUSDT", "usdm", at("2025-03-01 12:05"), D("1.2")),
            ],
        )
    found = latest_at_or_before(session, "ONDOUSDT", "usdm", at("2025-03-01 12:07"))
    assert found is not None and found.price == D("1.2")
    assert latest_at_or_before(session, "ONDOUSDT", "usdm", at("2025-03-01 12:04")).price == D(
        "1.1"
    )
    assert (
        latest_at_or_before(
            session, "ONDOUSDT", "usdm", at("2025-03-01 12:30"), max_age=timedelta(minutes=10)
        )
        is None
    )
    assert latest_at_or_before(session, "ONDOUSDT", "spot", at("2025-03-01 12:07")) is None


def test_daily_closes_and_prune_keep_each_days_close_and_volume(session, shared_data):
    with session.begin():
        load_files(session, [shared_data / ONDO])
        before = daily_closes(session, "ONDOUSDT", "usdm")
    assert before == sorted(before, key=lambda c: c.day)
    bars = {b.price_date: b for b in daily_bars(shared_data / ONDO)}
    assert all(
        c.price == bars[c.day].price and c.quote_volume == bars[c.day].quote_volume for c in before
    )
    with session.begin():
        removed = prune(session, PrunePolicy(keep_minutes_days=5), now=at("2025-03-20 12:00"))
    with session.begin():
        after = daily_closes(session, "ONDOUSDT", "usdm")
        kept = session.scalar(select(func.count()).select_from(MarkPrice))
        per_day: dict[date, int] = {}
        for marked_at in session.scalars(select(MarkPrice.marked_at)):
            per_day[marked_at.date()] = per_day.get(marked_at.date(), 0) + 1
    assert after == before  # closes and the days' volumes read the same after pruning
    assert removed > 0 and kept == 7500 - removed
    old_days = [c for c in after if c.day < date(2025, 3, 15)]
    assert old_days and all(per_day[c.day] == 1 for c in old_days)


class FakeKlines:
    """A KlineSource over the real ONDO candles, paging like Binance (at most ``limit`` rows)."""

    def __init__(self, marks: list[Mark]) -> None:
        self.candles = [
            Candle(
                m.marked_at + timedelta(minutes=1) - timedelta(minutes=5), m.price, m.quote_volume
            )
            for m in marks
        ]
        self.calls = 0

    async def klines(self, symbol, interval, start, end, limit):
        self.calls += 1
        rows = [c for c in self.candles if start <= c.opened_at < end]
        return rows[:limit]


async def test_fetch_through_klines_records_the_same_marks_as_the_file(session, shared_data):
    from copytrade.marks import fetch as fetch_module

    marks = read_marks(shared_data / ONDO)
    source = FakeKlines(marks)
    fetch_module.INTERVALS["5m"] = timedelta(minutes=5)  # the real files are 5-minute candles
    try:
        with session.begin():
            result = await fetch_marks(
                source,
                session,
                "ONDOUSDT",
                "usdm",
                at("2025-02-24 00:00"),
                at("2025-03-23 00:00"),
                interval="5m",
            )
    finally:
        del fetch_module.INTERVALS["5m"]
    assert result.inserted == len(marks) == 7500
    assert source.calls == 9  # 1,000 a page
    stored = session.execute(
        select(MarkPrice.marked_at, MarkPrice.price, MarkPrice.quote_volume).order_by(
            MarkPrice.marked_at
        )
    ).all()
    assert stored == [(m.marked_at, m.price, m.quote_volume) for m in marks]


class FakeBinance:
    """The raw klines endpoints of a ccxt Binance client, as Binance answers (decimal strings)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []

    def _rows(self, params):
        day = 86_400_000
        return [
            [params["startTime"] + i * day, "1.0", "1.2", "0.9", f"1.{i}5", "1000", 0, f"1{i}00.5"]
            for i in range(min(2, params["limit"]))
            if params["startTime"] + i * day <= params["endTime"]
        ]

    async def fapiPublicGetKlines(self, params):  # noqa: N802 - ccxt's implicit API name
        self.calls.append(("usdm", params))
        return self._rows(params)

    async def publicGetKlines(self, params):  # noqa: N802
        self.calls.append(("spot", params))
        return self._rows(params)


@pytest.mark.parametrize("market", ["usdm", "spot"])
async def test_binance_klines_reads_exact_strings_and_records_daily_closes(session, market):
    from copytrade.marks.fetch import BinanceKlines

    exchange = FakeBinance()
    with session.begin():
        result = await fetch_marks(
            BinanceKlines(exchange, market),
            session,
            "ONDOUSDT",
            market,
            at("2025-03-01 00:00"),
            at("2025-03-03 00:00"),
        )
    assert result.inserted == 2
    assert exchange.calls[0][0] == market and exchange.calls[0][1]["interval"] == "1d"
    with session.begin():
        closes = daily_closes(session, "ONDOUSDT", market)
    assert [(c.day, c.price, c.quote_volume, c.marked_at) for c in closes] == [
        (date(2025, 3, 1), D("1.05"), D("1000.5"), at("2025-03-01 23:59")),
        (date(2025, 3, 2), D("1.15"), D("1100.5"), at("2025-03-02 23:59")),
    ]


def test_stored_marks_serve_settlements_provider_protocol(session):
    from copytrade.marks.store import StoredMarks
    from copytrade.settlement.marks import MarkPrices

    with session.begin():
        record(session, [Mark("BTCUSDT", "usdm", at("2025-03-01 12:00"), D("61000.5"))])
        provider: MarkPrices = StoredMarks(session)
        assert provider.mark_price("BTCUSDT", at("2025-03-01 12:03")) == D("61000.5")
        assert provider.mark_price("BTCUSDT", at("2025-03-01 12:30")) is None  # stale
        assert provider.mark_price("ETHUSDT", at("2025-03-01 12:03")) is None


def test_daily_bars_stored_as_the_days_last_minute(session, shared_data):
    """The demo records the exchange's replayed daily bars this way (demo/story.py)."""
    from copytrade.marks.candles import store_daily_bars

    bars = daily_bars(shared_data / ONDO)
    with session.begin():
        first = store_daily_bars(session, bars, "usdm")
        again = store_daily_bars(session, bars, "usdm")
        closes = daily_closes(session, "ONDOUSDT", "usdm")
    assert first.inserted == len(bars) == 27 and again.unchanged == 27
    assert [(c.day, c.price, c.quote_volume) for c in closes] == [
        (b.price_date, b.price, b.quote_volume) for b in bars
    ]
    assert {c.marked_at.time().isoformat() for c in closes} == {"23:59:00"}
