"""Price paths replayed from the real candles and trades of ``market/``, and the simulated clock.

A candle becomes four points (open, the nearer extreme, the other extreme, close) spread over its
interval, so a limit order inside the candle's range is crossed as the path passes. A trades file
becomes one point per trade. A path is looked up by simulated time; outside its own dates it wraps
around (the path repeats), so every symbol always has a price whatever the clock says.
"""

from __future__ import annotations

import csv
import time
from bisect import bisect_right
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

from copytrade.domain.money import to_decimal

# Stated reference rates for markets the shared data has no USDT path for (docs/paper-exchange.md).
BTC_USDT_REFERENCE = Decimal("10000")
FLAT_REFERENCE_PRICES = {"BTCUSDT": BTC_USDT_REFERENCE, "DOGEUSDT": Decimal("0.0085")}


def parse_time_ms(text: str) -> int:
    """Parse the candle files' timestamps (ISO with ``Z`` or ``YYYY-MM-DD HH:MM:SS``, UTC) to ms."""
    text = text.strip()
    if text.endswith("Z"):
        text = text[:-1]
    dt = datetime.fromisoformat(text.replace(" ", "T"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


@dataclass(slots=True)
class PricePath:
    """Points (ms, price, base volume) in time order; ``span`` is the period after which the path
    repeats. A candle's volume is spread evenly over its four points (exact: a quarter of a
    decimal is a decimal), a trade's amount is its point's volume; a flat path trades nothing."""

    times: list[int]
    prices: list[Decimal]
    span: int
    source: str
    volumes: list[Decimal] | None = None

    def volume_at_index(self, virtual_index: int) -> Decimal:
        if self.volumes is None:
            return Decimal(0)
        return self.volumes[virtual_index % len(self.volumes)]

    @property
    def first(self) -> int:
        return self.times[0]

    def index(self, t_ms: int) -> int:
        """Return the virtual index of the point in force at ``t_ms`` (counts across repeats)."""
        cycle, local = divmod(t_ms - self.first, self.span)
        i = bisect_right(self.times, self.first + local) - 1
        return cycle * len(self.times) + max(i, 0)

    def at_index(self, virtual_index: int) -> Decimal:
        return self.prices[virtual_index % len(self.prices)]

    def time_of(self, virtual_index: int) -> int:
        cycle, i = divmod(virtual_index, len(self.times))
        return self.times[i] + cycle * self.span

    def price_at(self, t_ms: int) -> Decimal:
        return self.at_index(self.index(t_ms))

    def scaled(self, factor: Decimal, tick: Decimal, source: str) -> PricePath:
        """Return this path multiplied by ``factor`` and rounded to ``tick``."""
        # A multiple of the tick, not the tick's exponent: 0.01000000 has 8 decimals, and
        # quantize() would keep them (163.96880000 with a 0.01 tick).
        prices = [
            (p * factor / tick).to_integral_value(rounding=ROUND_HALF_EVEN) * tick
            for p in self.prices
        ]
        return PricePath(self.times, prices, self.span, source, self.volumes)

    @classmethod
    def flat(cls, price: Decimal, source: str) -> PricePath:
        return cls([0], [price], 3_600_000, source)


def candles_path(path: Path) -> PricePath:
    """Read a candle CSV (timestamp, open, high, low, close, volume) into a four-points-per-candle path."""
    times: list[int] = []
    prices: list[Decimal] = []
    volumes: list[Decimal] = []
    step = 0
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    starts = [parse_time_ms(r["timestamp"]) for r in rows]
    if len(starts) > 1:
        step = min(b - a for a, b in zip(starts, starts[1:], strict=False) if b > a)
    step = step or 300_000
    quarter = step // 4
    for start, row in zip(starts, rows, strict=True):
        # Decimal of the file's text is exact; to_decimal's checks cost more than the parse here.
        o, h, lo, c = (
            Decimal(row["open"]),
            Decimal(row["high"]),
            Decimal(row["low"]),
            Decimal(row["close"]),
        )
        first, second = (lo, h) if c >= o else (h, lo)  # a rising candle dips first, by convention
        times += (start, start + quarter, start + 2 * quarter, start + 3 * quarter)
        prices += (o, first, second, c)
        share = Decimal(row.get("volume") or 0) / 4  # mark-price candles have none
        volumes += (share, share, share, share)
    if any(not p.is_finite() or p <= 0 for p in prices):
        raise ValueError(f"{path.name}: a price is not a positive number")
    span = times[-1] - times[0] + quarter
    return PricePath(times, prices, span, f"candles {path.name}", volumes)


def trades_path(path: Path) -> PricePath:
    """Read a public-trades CSV (timestamp, id, side, price, amount, cost) into a path."""
    times: list[int] = []
    prices: list[Decimal] = []
    volumes: list[Decimal] = []
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            times.append(parse_time_ms(row["timestamp"]))
            prices.append(to_decimal(row["price"], "price"))
            volumes.append(to_decimal(row["amount"], "amount"))
    span = times[-1] - times[0] + 1_000
    return PricePath(times, prices, span, f"trades {path.name}", volumes)


@dataclass(slots=True)
class FundingSchedule:
    """Funding times and rates (repeating like a path)."""

    times: list[int]
    rates: list[Decimal]
    span: int

    def events_between(self, t0: int, t1: int, limit: int = 1000) -> list[tuple[int, Decimal]]:
        """Return the funding events with ``t0 < time <= t1`` (virtual times across repeats)."""
        out: list[tuple[int, Decimal]] = []
        if t1 <= t0:
            return out
        first = self.times[0]
        cycle0 = (t0 - first) // self.span
        cycle1 = (t1 - first) // self.span
        for cycle in range(cycle0, cycle1 + 1):
            base = cycle * self.span
            for t, rate in zip(self.times, self.rates, strict=True):
                vt = t + base
                if t0 < vt <= t1:
                    out.append((vt, rate))
                    if len(out) >= limit:
                        return out
        return out


def funding_schedule(path: Path) -> FundingSchedule:
    """Read a funding-rate CSV (the rate is in column ``open``)."""
    times: list[int] = []
    rates: list[Decimal] = []
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            # Funding is settled on the hour; the file's timestamps carry exchange jitter (ms).
            t = parse_time_ms(row["timestamp"])
            times.append(t - t % 1000)
            rates.append(to_decimal(row["open"], "funding rate"))
    span = times[-1] - times[0] + 8 * 3_600_000
    return FundingSchedule(times, rates, span)


class SimClock:
    """Simulated market time: ``start`` + elapsed wall time × ``speed``; can be set or advanced."""

    def __init__(self, start_ms: int, speed: float = 1.0) -> None:
        self._origin_sim = start_ms
        self._origin_wall = time.monotonic()
        self.speed = speed

    def now_ms(self) -> int:
        return self._origin_sim + int((time.monotonic() - self._origin_wall) * 1000 * self.speed)

    def set(self, sim_ms: int, speed: float | None = None) -> None:
        self._origin_sim = sim_ms
        self._origin_wall = time.monotonic()
        if speed is not None:
            self.speed = speed

    def advance(self, ms: int) -> None:
        self.set(self.now_ms() + ms)
