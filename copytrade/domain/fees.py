"""Trading fees and the leader's rebate (R-FEE-1, R-FEE-2, R-SET-10): exact, rounded down to 1e-8."""

from __future__ import annotations

from decimal import Decimal

from copytrade.domain.errors import RuleViolation
from copytrade.domain.money import round_down, to_decimal

REBATE_RATE = Decimal("0.1")  # R-FEE-2: the leader receives 10 % of each copied trade's fee


def _exact(field: str, value: object, rule: str) -> Decimal:
    try:
        return to_decimal(value, field)
    except (TypeError, ValueError) as exc:
        raise RuleViolation(field, value, rule, str(exc)) from None


def leader_rebate(fee: Decimal) -> Decimal:
    """Return the leader's rebate on a follower's trading fee: 10 % rounded down to 0.00000001.

    Example (SPEC R-FEE-2): 100 USD traded at 0.1 % → fee 0.10 → rebate 0.01.
    """
    fee = _exact("fee", fee, "R-FEE-2")
    if fee < 0:
        raise RuleViolation("fee", fee, "R-FEE-2", f"trading fee {fee} cannot be negative")
    return round_down(fee * REBATE_RATE)


def trading_fee(notional: Decimal, rate: Decimal) -> Decimal:
    """Return the fee on a fill of ``notional`` at fee ``rate`` (0.001 = 0.1 %), rounded down to 1e-8.

    Rounded down because the follower pays it and the rebate is derived from it (R-SET-10: the
    platform never takes more than the formula gives).
    """
    notional = _exact("notional", notional, "R-FEE-1")
    rate = _exact("rate", rate, "R-FEE-1")
    if notional < 0:
        raise RuleViolation(
            "notional", notional, "R-FEE-1", f"notional {notional} cannot be negative"
        )
    if not Decimal(0) <= rate < 1:
        raise RuleViolation("rate", rate, "R-FEE-1", f"fee rate {rate} is outside 0 to 1")
    return round_down(notional * rate)
