"""Market statistics of a replayed price path: klines, aggregate trades, rolling-window figures.

Each point of a path is one market trade (price, base volume) at its simulated time, so klines,
``aggTrades`` and the 24 h ticker are computed from the same points the orders fill against.
Times are simulated market time (the path's own clock), in epoch ms.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from copytrade.domain.money import ZERO
from copytrade.paper.errors import BinanceError
from copytrade.paper.prices import PricePath

INTERVALS = {
    "1s": 1_000,
    "1m": 60_000,
    "3m": 180_000,
    "5m": 300_000,
    "15m": 900_000,
    "30m": 1_800_000,
    "1h": 3_600_000,
    "2h": 7_200_000,
    "4h": 14_400_000,
    "6h": 21_600_000,
    "8h": 28_800_000,
    "12h": 43_200_000,
    "1d": 86_400_000,
    "3d": 259_200_000,
    "1w": 604_800_000,
}
# A path's points are numbered across its repeats, negative before its first date; ids served as
# trade ids (aggTrades, firstId/lastId) are offset to stay positive, as Binance's are.
ID_BASE = 1_000_000_000
WEEK_OFFSET = 3 * 86_400_000  # epoch day 0 was a Thursday; Binance's weeks open on Monday


@dataclass(frozen=True, slots=True)
class Window:
    """OHLCV of the points in ``[start, end]`` (the open is the price in force at ``start``)."""

    start: int
    end: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    quote_volume: Decimal
    first_id: int  # virtual index of the first point inside the window (-1: none)
    last_id: int
    count: int
    prev_close: Decimal
    last_qty: Decimal

    @property
    def weighted_average(self) -> Decimal:
        return self.quote_volume / self.volume if self.volume else self.close


def interval_ms(name: str | None) -> int:
    """Return an interval's length; Binance's answer -1120 for an unknown one."""
    if not name:
        raise BinanceError(
            -1102, "Mandatory parameter 'interval' was not sent, was empty/null, or malformed."
        )
    if name not in INTERVALS:  # also "1M": months are not served (docs/paper-exchange.md)
        raise BinanceError(-1120, "Invalid interval.")
    return INTERVALS[name]


def window(path: PricePath, start: int, end: int) -> Window:
    """Return the figures of ``[start, end]`` (inclusive, ms of simulated time)."""
    i0 = path.index(start)
    i1 = path.index(end)
    first = i0 if path.time_of(i0) >= start else i0 + 1
    open_ = path.at_index(i0)
    high = low = open_
    volume = quote = ZERO
    for i in range(i0, i1 + 1):
        price = path.at_index(i)
        high, low = max(high, price), min(low, price)
        if i >= first:
            v = path.volume_at_index(i)
            volume += v
            quote += v * price
    count = max(0, i1 - first + 1)
    return Window(
        start=start,
        end=end,
        open=open_,
        high=high,
        low=low,
        close=path.at_index(i1),
        volume=volume,
        quote_volume=quote,
        first_id=first + ID_BASE if count else -1,
        last_id=i1 + ID_BASE if count else -1,
        count=count,
        prev_close=path.at_index(first - 1),
        last_qty=path.volume_at_index(i1) if count else ZERO,
    )


def klines(
    path: PricePath,
    interval: int,
    now: int,
    limit: int,
    start: int | None = None,
    end: int | None = None,
) -> list[Window]:
    """Return up to ``limit`` candles of ``interval`` ms, never later than ``now``.

    Without ``start`` the last ``limit`` candles up to the one in progress; with it, the candles
    opening at or after ``start``. Open times are aligned as Binance aligns them (UTC; weeks on
    Monday).
    """
    offset = WEEK_OFFSET if interval == INTERVALS["1w"] else 0
    end = min(end if end is not None else now, now)

    def align(t: int) -> int:
        return (t - offset) // interval * interval + offset

    if start is None:
        first_open = align(end) - (limit - 1) * interval
    else:
        first_open = align(start) if align(start) == start else align(start) + interval
    candles = []
    t = first_open
    while t <= end and len(candles) < limit:
        candles.append(window(path, t, min(t + interval - 1, now)))
        t += interval
    return candles


def points(
    path: PricePath,
    now: int,
    limit: int,
    *,
    from_id: int | None = None,
    start: int | None = None,
    end: int | None = None,
) -> list[tuple[int, int, Decimal, Decimal, bool]]:
    """Return path points as trades ``(id, time, price, qty, buyer_is_maker)``, oldest first.

    ``buyer_is_maker`` is read from the move: a point below the previous one was a sell hitting
    the bid (the buyer was the maker).
    """
    last = path.index(now)
    if from_id is not None:
        first = from_id - ID_BASE
    elif start is not None:
        first = path.index(start)
        if path.time_of(first) < start:
            first += 1
        if end is not None:
            last = min(last, path.index(end))
    else:
        first = last - limit + 1
    rows = []
    for i in range(first, min(last, first + limit - 1) + 1):
        price = path.at_index(i)
        moved_down = price < path.at_index(i - 1)
        rows.append((i + ID_BASE, path.time_of(i), price, path.volume_at_index(i), moved_down))
    return rows
