"""A synthetic order book around the replayed price, so that order size moves the fill price.

Levels sit at ``mid × (1 ± (spread/2 + i × step))`` (in basis points), rounded outwards to the
tick, each holding ``level_notional`` worth of base asset (rounded down to the lot step). Liquidity
is replenished at every request: the book models a deep market our orders do not deplete.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from copytrade.domain.markets import Market

BPS = Decimal("0.0001")


@dataclass(frozen=True, slots=True)
class BookConfig:
    """Shape of the synthetic book; ``level_notional`` is a multiple of the market's min notional."""

    levels: int = 20
    spread_bps: Decimal = Decimal(2)
    step_bps: Decimal = Decimal(2)
    level_notional_multiple: Decimal = Decimal(2000)  # 2,000 × 5 USDT = 10,000 USDT per level

    @classmethod
    def from_dict(cls, data: dict) -> BookConfig:
        """Build a shape from admin JSON (missing keys keep the defaults); a bad value names its
        field (ValueError)."""
        default = cls()  # slots: the class attributes are descriptors, not the defaults
        levels = data.get("levels", default.levels)
        if isinstance(levels, bool) or not isinstance(levels, int):
            raise ValueError(f"levels: {levels!r} must be an integer")
        return cls(
            levels=levels,
            spread_bps=_number(data, "spread_bps", default.spread_bps),
            step_bps=_number(data, "step_bps", default.step_bps),
            level_notional_multiple=_number(
                data, "level_notional_multiple", default.level_notional_multiple
            ),
        )

    def as_dict(self) -> dict:
        return {
            "levels": self.levels,
            "spread_bps": str(self.spread_bps),
            "step_bps": str(self.step_bps),
            "level_notional_multiple": str(self.level_notional_multiple),
        }


def _number(data: dict, name: str, default: Decimal) -> Decimal:
    value = data.get(name, default)
    if isinstance(value, bool | float) or not isinstance(value, int | str | Decimal):
        raise ValueError(f"{name}: {value!r} must be a number (string or integer)")
    try:
        result = Decimal(str(value))
    except ArithmeticError:
        raise ValueError(f"{name}: {value!r} is not a number") from None
    if not result.is_finite():
        raise ValueError(f"{name}: {value!r} is not a finite number")
    return result


def _round(value: Decimal, tick: Decimal, rounding: str) -> Decimal:
    if tick <= 0:
        return value
    return (value / tick).to_integral_value(rounding=rounding) * tick


def level_price(mid: Decimal, market: Market, config: BookConfig, side: str, level: int) -> Decimal:
    """Return the price of ask (``side='ask'``) or bid level ``level`` (0 = best)."""
    offset = (config.spread_bps / 2 + config.step_bps * level) * BPS
    if side == "ask":
        return _round(mid * (1 + offset), market.tick_size, ROUND_CEILING)
    price = _round(mid * (1 - offset), market.tick_size, ROUND_FLOOR)
    return max(price, market.tick_size)


def level_quantity(price: Decimal, market: Market, config: BookConfig) -> Decimal:
    """Return the base quantity resting on one level at ``price``."""
    notional = (market.min_notional or Decimal(5)) * config.level_notional_multiple
    qty = notional / price
    step = market.step_size
    if step > 0:
        qty = (qty // step) * step
    return max(qty, step if step > 0 else qty)


def depth(mid: Decimal, market: Market, config: BookConfig, limit: int) -> tuple[list, list]:
    """Return (bids, asks) as lists of (price, quantity), best first, ``limit`` levels each."""
    n = min(limit, config.levels)
    bids, asks = [], []
    for i in range(n):
        bp = level_price(mid, market, config, "bid", i)
        ap = level_price(mid, market, config, "ask", i)
        bids.append((bp, level_quantity(bp, market, config)))
        asks.append((ap, level_quantity(ap, market, config)))
    return bids, asks


def sweep(
    mid: Decimal,
    market: Market,
    config: BookConfig,
    side: str,
    quantity: Decimal,
    limit_price: Decimal | None = None,
) -> list[tuple[Decimal, Decimal]]:
    """Return the (price, quantity) fills of a taker order of ``quantity`` walking the book.

    A buy takes asks, a sell takes bids; a limit price stops the walk. Beyond the last level the
    remainder fills at the last level's price (the book is deep but not infinite in price).
    """
    book_side = "ask" if side == "buy" else "bid"
    fills: list[tuple[Decimal, Decimal]] = []
    remaining = quantity
    price = mid
    for i in range(config.levels):
        price = level_price(mid, market, config, book_side, i)
        if limit_price is not None and (
            (side == "buy" and price > limit_price) or (side == "sell" and price < limit_price)
        ):
            return fills
        take = min(remaining, level_quantity(price, market, config))
        fills.append((price, take))
        remaining -= take
        if remaining <= 0:
            return fills
    if limit_price is None:
        last_price, last_qty = fills[-1]
        fills[-1] = (last_price, last_qty + remaining)
    return fills
