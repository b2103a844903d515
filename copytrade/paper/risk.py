"""USDⓈ-M risk figures: leverage brackets, maintenance margin, liquidation and break-even prices.

Binance's formulas (https://www.binance.com/en/support/faq/how-to-calculate-liquidation-price-of-usdⓢ-m-futures-contracts-b3c689c1f50a44cabb3a84e663b81d93,
leverage brackets: ``GET /fapi/v1/leverageBracket``): the maintenance margin of a position is
``notional × maintMarginRatio − cum`` of the bracket its notional falls in, where ``cum`` makes the
margin continuous across brackets. Every symbol uses one bracket table here (Binance's published
BTCUSDT tiers): the shared data has no per-symbol brackets, and this keeps every figure traceable.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_UP, Decimal

from copytrade.domain.money import UNIT, ZERO


@dataclass(frozen=True, slots=True)
class Bracket:
    """One tier: notional in ``[floor, cap)``, leverage up to ``initial_leverage``."""

    bracket: int
    initial_leverage: int
    floor: Decimal
    cap: Decimal
    maint_margin_ratio: Decimal
    cum: Decimal


def _brackets(rows: list[tuple[int, str, str, str]]) -> tuple[Bracket, ...]:
    """Build the table with ``cum`` derived as Binance derives it (continuity at each floor)."""
    out: list[Bracket] = []
    cum, previous_ratio = ZERO, ZERO
    for n, (leverage, floor, cap, ratio) in enumerate(rows, start=1):
        r = Decimal(ratio)
        cum += Decimal(floor) * (r - previous_ratio)
        out.append(Bracket(n, leverage, Decimal(floor), Decimal(cap), r, cum))
        previous_ratio = r
    return tuple(out)


BRACKETS = _brackets(
    [
        (125, "0", "50000", "0.004"),
        (100, "50000", "600000", "0.005"),
        (75, "600000", "3000000", "0.0065"),
        (50, "3000000", "12000000", "0.01"),
        (25, "12000000", "70000000", "0.02"),
        (20, "70000000", "100000000", "0.025"),
        (10, "100000000", "230000000", "0.05"),
        (5, "230000000", "480000000", "0.1"),
        (4, "480000000", "600000000", "0.125"),
        (3, "600000000", "800000000", "0.15"),
        (2, "800000000", "1200000000", "0.25"),
        (1, "1200000000", "1800000000", "0.5"),
    ]
)
MAX_LEVERAGE = BRACKETS[0].initial_leverage


def bracket_for(notional: Decimal) -> Bracket:
    """Return the bracket a position of ``notional`` (absolute) falls in."""
    n = abs(notional)
    for b in BRACKETS:
        if n < b.cap:
            return b
    return BRACKETS[-1]


def maint_margin(notional: Decimal) -> Decimal:
    """Return ``|notional| × maintMarginRatio − cum`` (to 1e-8, up: never understate the need)."""
    if not notional:
        return ZERO
    b = bracket_for(notional)
    return (abs(notional) * b.maint_margin_ratio - b.cum).quantize(UNIT, rounding=ROUND_UP)


def max_notional(leverage: int) -> Decimal:
    """Return the largest position notional a leverage allows (the cap of its last bracket)."""
    allowed = [b for b in BRACKETS if b.initial_leverage >= leverage]
    return allowed[-1].cap if allowed else ZERO


def liquidation_price(
    qty: Decimal,
    entry: Decimal,
    wallet: Decimal,
    other_maint: Decimal,
    other_upnl: Decimal,
    mark: Decimal,
) -> Decimal:
    """Return the cross-margin liquidation price of a one-way position (0: none).

    ``LP = (WB − TMM₁ + UPNL₁ + cum − side × |q| × EP) / (|q| × MMR − side × |q|)`` with the
    bracket of the position's notional at the mark; a long whose wallet covers any fall has none.
    """
    if not qty:
        return ZERO
    side = 1 if qty > 0 else -1
    size = abs(qty)
    b = bracket_for(size * mark)
    numerator = wallet - other_maint + other_upnl + b.cum - side * size * entry
    denominator = size * b.maint_margin_ratio - side * size
    price = numerator / denominator
    return max(price, ZERO).quantize(UNIT, rounding=ROUND_DOWN)


def break_even_price(qty: Decimal, entry: Decimal, taker_fee: Decimal) -> Decimal:
    """Return the price at which closing pays back the fees of opening and closing (taker).

    Long: ``EP × (1 + f) / (1 − f)``; short: ``EP × (1 − f) / (1 + f)`` — the exit where the
    price move equals the opening fee on the entry notional plus the closing fee on the exit's.
    """
    if not qty:
        return ZERO
    if qty > 0:
        price = entry * (1 + taker_fee) / (1 - taker_fee)
    else:
        price = entry * (1 - taker_fee) / (1 + taker_fee)
    return price.quantize(UNIT)


@dataclass(frozen=True, slots=True)
class PositionFigures:
    """What the exchange reports about one position (positionRisk, account, ACCOUNT_UPDATE)."""

    symbol: str
    qty: Decimal
    entry_price: Decimal
    break_even_price: Decimal
    mark_price: Decimal
    unrealized_pnl: Decimal
    initial_margin: Decimal
    maint_margin: Decimal
    liquidation_price: Decimal
    leverage: int
    isolated: bool
    max_notional: Decimal
    updated_ms: int

    @property
    def notional(self) -> Decimal:
        return self.qty * self.mark_price


@dataclass(frozen=True, slots=True)
class FuturesFigures:
    """The USDT futures wallet with its positions' figures (account, balance endpoints)."""

    wallet: Decimal
    unrealized_pnl: Decimal
    position_margin: Decimal
    open_order_margin: Decimal
    maint_margin: Decimal
    available: Decimal
    positions: list[PositionFigures]
    updated_ms: int
