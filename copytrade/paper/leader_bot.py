"""A leader who really trades on the paper exchange, for the demo and the benchmarks.

Two ways:

* ``replay``: the real Binance lead trader's published fills (``leaders/``), on the symbols the
  shared data has real candles for (1000PEPEUSDT, ONDOUSDT). The file's quirks are handled here:
  BOM, CRLF, exact duplicate rows (scraped page by page), newest-first order, times in UTC+3,
  ``Perp`` suffixes, quantities with thousands separators and units. The exchange's simulated
  clock is brought to each fill's UTC time before the order is sent, so the fill happens on the
  real candle of that moment.
* ``ma-cross``: a moving-average cross on any candle file: when the fast simple moving average of
  closes crosses above the slow one, buy (spot: ``notional`` worth; futures: go long); when it
  crosses below, sell what was bought (futures: close). One decision per closed candle, as the
  exchange's simulated clock passes the candle's close.
"""

from __future__ import annotations

import asyncio
import csv
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from copytrade.exchange.factory import GatewayFactory
from copytrade.exchange.protocol import GatewayError, OrderRequest, Rejected
from copytrade.paper.client import AsyncAdminClient, PaperAccount
from copytrade.paper.prices import parse_time_ms

log = logging.getLogger("copytrade.paper.leader_bot")
LEADER_FILE = "leaders/binance-lead-trader-fills-2025-01-27_2025-03-21.csv"
LEADER_UTC_OFFSET = timedelta(hours=3)
REPLAYABLE = ("1000PEPEUSDT", "ONDOUSDT")  # real candles exist for these only
PACE_POLL = 0.25  # seconds between looks at a shared clock (another bot may move it)


@dataclass(frozen=True, slots=True)
class LeaderFill:
    """One fill of the real lead trader, cleaned: UTC time, exchange symbol, side, exact amounts."""

    time: datetime
    symbol: str
    action: str  # Open long | Close long | Open short | Close short
    price: Decimal
    quantity: Decimal
    realised_pnl: Decimal

    @property
    def side(self) -> str:
        opening = self.action.startswith("Open")
        long = self.action.endswith("long")
        return "buy" if opening == long else "sell"

    @property
    def reduce_only(self) -> bool:
        return self.action.startswith("Close")


def _amount(text: str) -> Decimal:
    """Parse ``"97,649 1000PEPE"`` / ``"-6.10198149 USDT"`` / ``"+1.87 USDT"`` exactly."""
    number = text.strip().split(" ")[0].replace(",", "").lstrip("+")
    return Decimal(number)


def load_leader_fills(path: Path, symbols: tuple[str, ...] | None = REPLAYABLE) -> list[LeaderFill]:
    """Read the published fills: drop exact duplicates, convert UTC+3 to UTC, oldest first."""
    with path.open(encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.reader(fh))
    header, body = rows[0], rows[1:]
    if header[:1] != ["Column1"] or any(len(r) != 7 for r in body):
        raise ValueError(f"{path.name}: not the lead trader file layout (Column1…Column7)")
    seen: set[tuple[str, ...]] = set()
    fills: list[LeaderFill] = []
    for row in body:
        key = tuple(row)
        if key in seen:
            continue
        seen.add(key)
        symbol = row[1].removesuffix("Perp")
        if symbols is not None and symbol not in symbols:
            continue
        local = datetime.strptime(row[0], "%Y-%m-%d %H:%M:%S")
        fills.append(
            LeaderFill(
                time=(local - LEADER_UTC_OFFSET).replace(tzinfo=UTC),
                symbol=symbol,
                action=row[3],
                price=Decimal(row[4]),
                quantity=_amount(row[5]),
                realised_pnl=_amount(row[6]),
            )
        )
    # Newest first in the file; stable sort keeps same-second fills in file order reversed.
    fills.reverse()
    fills.sort(key=lambda f: f.time)
    return fills


class MovingAverageCross:
    """Fast/slow simple moving averages of closes; ``update`` returns "buy", "sell" or None."""

    def __init__(self, fast: int, slow: int) -> None:
        if not 0 < fast < slow:
            raise ValueError(f"fast/slow: {fast}/{slow} must satisfy 0 < fast < slow")
        self.fast, self.slow = fast, slow
        self._closes: deque[Decimal] = deque(maxlen=slow)
        self._above: bool | None = None

    def update(self, close: Decimal) -> str | None:
        self._closes.append(close)
        if len(self._closes) < self.slow:
            return None
        closes = list(self._closes)
        fast = sum(closes[-self.fast :]) / self.fast
        slow = sum(closes) / self.slow
        above = fast > slow
        previous, self._above = self._above, above
        if previous is None or previous == above:
            return None
        return "buy" if above else "sell"


def read_candle_closes(path: Path) -> list[tuple[int, Decimal]]:
    """Return (close time in ms, close) of every candle of a candle CSV."""
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    opens = [parse_time_ms(r["timestamp"]) for r in rows]
    step = min((b - a for a, b in zip(opens, opens[1:], strict=False) if b > a), default=300_000)
    return [(t + step, Decimal(r["close"])) for t, r in zip(opens, rows, strict=True)]


@dataclass
class BotReport:
    sent: int = 0
    filled: int = 0
    skipped: int = 0
    refused: int = 0


async def _leader_account(
    admin: AsyncAdminClient, credentials: PaperAccount | None, kind: str, deposit: Decimal
) -> PaperAccount:
    if credentials is not None:
        return credentials
    wallet = {"spot": {"USDT": deposit}} if kind == "spot" else {"futures": {"USDT": deposit}}
    return await admin.create_account(name="leader-bot", **wallet)


async def _wait_until(
    admin: AsyncAdminClient, target_ms: int, max_wait: float, pace: float | None = None
) -> None:
    """Wait for the exchange's simulated clock to reach ``target_ms``; jump it if that takes too long.

    With ``pace`` the bot shares the clock: it waits up to ``pace`` seconds for the clock (which
    another bot may move meanwhile) and then moves it to ``target_ms``, never back in time.
    """
    if pace is not None:
        await _pace_until(admin, target_ms, pace)
        return
    clock = await admin.clock()
    gap_ms = target_ms - clock["sim_time_ms"]
    if gap_ms <= 0:
        return
    speed = clock["speed"] or 0
    wall = gap_ms / 1000 / speed if speed else float("inf")
    if wall > max_wait:
        await admin.set_clock(time=_iso(target_ms))
        return
    await asyncio.sleep(wall)


async def _pace_until(admin: AsyncAdminClient, target_ms: int, pace: float) -> None:
    deadline = time.monotonic() + pace
    while True:
        clock = await admin.clock()
        gap_ms = target_ms - clock["sim_time_ms"]
        if gap_ms <= 0:
            return
        left = deadline - time.monotonic()
        if left <= 0:
            await admin.set_clock(time=_iso(target_ms), forward_only=True)
            return
        speed = clock["speed"] or 0
        await asyncio.sleep(min(left, PACE_POLL, gap_ms / 1000 / speed if speed else left))


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


async def replay_leader(
    base_url: str,
    admin_token: str,
    data_dir: Path,
    *,
    credentials: PaperAccount | None = None,
    deposit: Decimal = Decimal(20000),
    leverage: int = 10,
    scale: Decimal = Decimal(1),
    limit: int | None = None,
    max_wait: float = 2.0,
    pace: float | None = None,
    on_fill: Callable[[LeaderFill, str], None] | None = None,
) -> BotReport:
    """Replay the real leader's fills on the paper exchange (USDⓈ-M), in time order.

    ``pace``: at most that many seconds per fill, sharing the clock (``_wait_until``).
    """
    fills = load_leader_fills(data_dir / LEADER_FILE)[:limit]
    admin = AsyncAdminClient(base_url, admin_token)
    report = BotReport()
    try:
        account = await _leader_account(admin, credentials, "futures", deposit)
        if fills:
            first = int(fills[0].time.timestamp() * 1000)
            clock = await admin.clock()
            if clock["sim_time_ms"] > first or first - clock["sim_time_ms"] > 3_600_000:
                await admin.set_clock(time=_iso(first - 60_000))
        async with GatewayFactory("futures", base_url) as factory:
            gateway = factory.gateway(account.api_key, account.api_secret, "leader-bot")
            for symbol in {f.symbol for f in fills}:
                await gateway.set_leverage(symbol, leverage)
            for n, fill in enumerate(fills):
                await _wait_until(admin, int(fill.time.timestamp() * 1000), max_wait, pace)
                market = gateway.market(fill.symbol)
                quantity = market.round_amount(fill.quantity * scale)
                if quantity <= 0:
                    report.skipped += 1
                    continue
                request = OrderRequest(
                    fill.symbol,
                    fill.side,
                    quantity,
                    f"lb-{fill.symbol[:8]}-{int(fill.time.timestamp())}-{n}",
                    reduce_only=fill.reduce_only,
                )
                report.sent += 1
                try:
                    state = await gateway.place_order(request)
                except Rejected as exc:
                    report.refused += 1
                    log.info("leader fill %s %s refused: %s", fill.time, fill.symbol, exc)
                    continue
                except GatewayError as exc:
                    report.refused += 1
                    log.warning("leader fill %s %s failed: %s", fill.time, fill.symbol, exc)
                    continue
                if state.filled_quantity:
                    report.filled += 1
                if on_fill is not None:
                    on_fill(fill, state.status)
    finally:
        await admin.close()
    return report


async def run_ma_cross(
    base_url: str,
    admin_token: str,
    candles: Path,
    symbol: str,
    *,
    kind: str = "spot",
    fast: int = 12,
    slow: int = 48,
    notional: Decimal = Decimal(500),
    credentials: PaperAccount | None = None,
    deposit: Decimal = Decimal(20000),
    max_trades: int | None = None,
    max_wait: float = 2.0,
    pace: float | None = None,
    on_trade: Callable[[str, str], None] | None = None,
    after_trade: Callable[[], Awaitable[None]] | None = None,
) -> BotReport:
    """Trade a moving-average cross of ``candles`` on ``symbol`` until ``max_trades`` orders.

    ``after_trade`` is awaited after each order, before the clock moves on (the demo waits there
    until the engine has copied the fill, so copies trade at the leader's simulated moment).
    """
    strategy = MovingAverageCross(fast, slow)
    closes = read_candle_closes(candles)
    span = (
        closes[-1][0] - closes[0][0] + (closes[1][0] - closes[0][0] if len(closes) > 1 else 300_000)
    )
    admin = AsyncAdminClient(base_url, admin_token)
    report = BotReport()
    held = Decimal(0)
    try:
        account = await _leader_account(admin, credentials, kind, deposit)
        async with GatewayFactory(kind, base_url) as factory:
            gateway = factory.gateway(account.api_key, account.api_secret, "ma-cross-bot")
            market = gateway.market(symbol)

            def candle_after(now: int) -> tuple[int, int]:
                # Candle i closes at its own time shifted by whole repeats of the file (like the
                # path).
                cycle, _ = divmod(now - closes[0][0], span)
                i = next((k for k, (t, _) in enumerate(closes) if t + cycle * span > now), 0)
                return i, cycle

            i, cycle = candle_after((await admin.clock())["sim_time_ms"])
            sequence = 0
            while max_trades is None or report.sent < max_trades:
                if pace is not None:  # a shared clock another bot may have set back: follow it
                    now = (await admin.clock())["sim_time_ms"]
                    previous = closes[i - 1][0] + cycle * span if i else None
                    if previous is not None and now < previous:
                        i, cycle = candle_after(now)
                close_time, close = closes[i]
                await _wait_until(admin, close_time + cycle * span, max_wait, pace)
                signal = strategy.update(close)
                i += 1
                if i == len(closes):
                    i, cycle = 0, cycle + 1
                if signal is None or (signal == "sell" and held <= 0):
                    continue
                price = await gateway.last_price(symbol)
                quantity = market.round_amount(notional / price) if signal == "buy" else held
                if quantity < market.min_order_quantity(price):
                    report.skipped += 1
                    continue
                sequence += 1
                request = OrderRequest(
                    symbol,
                    signal,
                    quantity,
                    f"ma-{symbol[:10]}-{sequence}",
                    reduce_only=kind == "futures" and signal == "sell",
                )
                report.sent += 1
                try:
                    state = await gateway.place_order(request)
                except GatewayError as exc:
                    report.refused += 1
                    log.info("ma-cross %s %s refused: %s", signal, symbol, exc)
                    continue
                filled = state.filled_quantity
                if kind == "spot" and signal == "buy":
                    filled -= sum(
                        (t.fee for t in state.trades if t.fee_asset == market.base), Decimal(0)
                    )
                held = held + filled if signal == "buy" else held - state.filled_quantity
                held = market.round_amount(held) if held > 0 else Decimal(0)
                report.filled += 1 if state.filled_quantity else 0
                if on_trade is not None:
                    on_trade(signal, state.status)
                if after_trade is not None:
                    await after_trade()
    finally:
        await admin.close()
    return report
