"""The leader bot's inputs: the real lead trader's file with its quirks, and the MA-cross rule."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal as D

import pytest

from copytrade.config import get_settings
from copytrade.paper.leader_bot import LEADER_FILE, MovingAverageCross, load_leader_fills

FILE = get_settings().data_dir / LEADER_FILE


def test_duplicates_dropped_times_in_utc_oldest_first():
    fills = load_leader_fills(FILE, symbols=None)
    assert len(fills) == 1465  # 1,728 rows, 263 exact duplicates (data README)
    assert sum(f.action.startswith("Open") for f in fills) == 1058
    assert round(sum(f.realised_pnl for f in fills), 2) == D("1954.79")
    assert [f.time for f in fills] == sorted(f.time for f in fills)
    last = fills[-1]  # file's first row: 2025-03-21 20:43:25 (UTC+3) SUIUSDTPerp Close long 311.2
    assert (last.time, last.symbol, last.quantity) == (
        datetime(2025, 3, 21, 17, 43, 25, tzinfo=UTC),
        "SUIUSDT",
        D("311.2"),
    )
    assert last.side == "sell" and last.reduce_only


def test_replayable_symbols_and_thousands_separators():
    fills = load_leader_fills(FILE)
    assert {f.symbol for f in fills} == {"1000PEPEUSDT", "ONDOUSDT"}
    pepe = next(
        f for f in reversed(fills) if f.symbol == "1000PEPEUSDT" and f.action == "Close long"
    )
    assert pepe.quantity == D(97649) and pepe.realised_pnl == D("-6.10198149")
    opening = next(f for f in fills if f.action == "Open long")
    assert opening.side == "buy" and not opening.reduce_only


def test_leader_fill_prices_lie_inside_their_utc_candles():
    """The README's check: after the UTC+3 correction every 1000PEPE fill is inside its candle."""
    from copytrade.paper.prices import candles_path

    path = candles_path(get_settings().data_dir / "market" / "futures" / "1000PEPEUSDT-5m-2025.csv")
    inside = 0
    for f in load_leader_fills(FILE, symbols=("1000PEPEUSDT",)):
        t = int(f.time.timestamp() * 1000)
        if not path.first <= t < path.first + path.span:
            continue
        start = path.index(t) // 4 * 4
        candle = [path.at_index(i) for i in range(start, start + 4)]
        assert min(candle) <= f.price <= max(candle)
        inside += 1
    assert inside >= 250


def test_moving_average_cross_signals_once_per_cross():
    rule = MovingAverageCross(2, 4)
    closes = [10, 10, 10, 10, 12, 13, 14, 9, 8, 7]
    signals = [rule.update(D(c)) for c in closes]
    assert signals[:4] == [None] * 4
    assert signals.count("buy") == 1 and signals.count("sell") == 1
    assert signals.index("buy") < signals.index("sell")
    with pytest.raises(ValueError, match="fast/slow"):
        MovingAverageCross(5, 5)


def test_paced_bots_share_the_clock_and_never_send_it_back():
    """Two bots pace one simulated clock (`--pace`): a bot waits at most its pace for the clock
    to reach its next moment, then moves it there; a clock another bot moved further is never
    set back (``forward_only``)."""
    import asyncio
    import time

    from copytrade.paper.client import AsyncAdminClient
    from copytrade.paper.leader_bot import _iso, _pace_until
    from tests.support.paper_exchange import TEST_ADMIN_TOKEN, run_paper_exchange

    async def scenario(base_url: str) -> tuple[int, int, float]:
        admin = AsyncAdminClient(base_url, TEST_ADMIN_TOKEN)
        try:
            now = (await admin.clock())["sim_time_ms"]
            ahead = now + 3_600_000
            started = time.monotonic()
            await _pace_until(admin, ahead, 0.3)  # a frozen clock: moved there after 0.3 s
            waited = time.monotonic() - started
            moved = (await admin.clock())["sim_time_ms"]
            await admin.set_clock(time=_iso(now), forward_only=True)  # back in time: refused
            kept = (await admin.clock())["sim_time_ms"]
            return moved - ahead, kept - ahead, waited
        finally:
            await admin.close()

    with run_paper_exchange(speed=0) as paper:
        moved, kept, waited = asyncio.run(scenario(paper.base_url))
    assert moved == 0 and kept == 0
    assert 0.25 <= waited < 5
