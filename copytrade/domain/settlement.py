"""Profit-share formulas of settlement (R-SET-2, R-SET-3, R-SET-8, R-SET-10): pure, exact, never negative.

The basis is the copy's *cumulative* profit since it started: realised profit for spot, realised
plus unrealised (marked at the settlement time's mark price) for futures. The share due now is the
basis times the ratio minus what was already paid, floored at zero: a share once paid is never
refunded (R-SET-8), and after a loss nothing is due again until the profit climbs back above the
level already paid for. Rounding is down to 0.00000001, so the platform never takes more than the
formula gives (R-SET-10).
"""

from __future__ import annotations

from decimal import Decimal

from copytrade.domain.errors import RuleViolation
from copytrade.domain.leaders import MAX_PRIVATE_RATIO
from copytrade.domain.money import ZERO, round_down, round_up, to_decimal

SPOT, FUTURES = "spot", "futures"
MAX_RATIO = MAX_PRIVATE_RATIO  # R-LEAD-5: the highest ratio any portfolio may carry


def _exact(field: str, value: object, rule: str) -> Decimal:
    try:
        return to_decimal(value, field)
    except (TypeError, ValueError) as exc:
        raise RuleViolation(field, value, rule, str(exc)) from None


def profit_share(
    mode: str,
    realised_pnl: Decimal,
    unrealised_pnl: Decimal,
    ratio: Decimal,
    already_paid: Decimal,
) -> Decimal:
    """Return the profit share due now for one copy (R-SET-2 spot, R-SET-3 futures).

    ``share = max(basis × ratio − already_paid, 0)`` rounded down to 0.00000001, where ``basis`` is
    the cumulative realised PnL (spot; unrealised is ignored) or realised + unrealised PnL
    (futures). ``ratio`` is a fraction (0.1 = 10 %) within 0..0.3; ``already_paid`` is the sum of
    the shares this copy has paid so far (≥ 0).
    """
    if mode not in (SPOT, FUTURES):
        raise RuleViolation(
            "mode", mode, "R-SET-2", f"mode {mode!r} is not one of 'spot' or 'futures'"
        )
    rule = "R-SET-2" if mode == SPOT else "R-SET-3"
    realised = _exact("realised_pnl", realised_pnl, rule)
    unrealised = _exact("unrealised_pnl", unrealised_pnl, rule)
    ratio = _exact("ratio", ratio, "R-LEAD-5")
    paid = _exact("already_paid", already_paid, "R-SET-8")
    if not ZERO <= ratio <= MAX_RATIO:
        raise RuleViolation(
            "ratio", ratio, "R-LEAD-5", f"profit-share ratio {ratio} is outside 0 to {MAX_RATIO}"
        )
    if paid < 0:
        raise RuleViolation(
            "already_paid", paid, "R-SET-8", f"shares already paid {paid} cannot be negative"
        )
    basis = realised if mode == SPOT else realised + unrealised
    due = basis * ratio - paid
    return round_down(due) if due > 0 else round_down(ZERO)


def fee_in_settlement_asset(
    fee: Decimal, fee_asset: str, symbol: str, price: Decimal, asset: str
) -> Decimal | None:
    """Return a fill's fee valued in the settlement ``asset``, or None when it cannot be valued.

    A fee in the settlement asset counts as it is. A fee in the fill's base coin (a spot buy of
    BTCUSDT pays its fee in BTC) is worth ``fee × fill price``, rounded *up* to 1e-8 so the
    profit basis is never overstated and settlement never overpays (R-SET-2, R-SET-10). A fee in
    any other asset (BNB) has no price at the fill and is not valued.
    """
    if fee_asset == asset:
        return fee
    if symbol == f"{fee_asset}{asset}":
        return round_up(fee * price)
    return None
