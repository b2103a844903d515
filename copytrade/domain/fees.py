"""The leader's fee rebate (R-FEE-2, R-SET-10): 10 % of the follower's fee, rounded down to 1e-8."""

from __future__ import annotations

from decimal import Decimal

from copytrade.domain.errors import RuleViolation
from copytrade.domain.money import round_down

REBATE_RATE = Decimal("0.1")


def leader_rebate(fee: Decimal) -> Decimal:
    """Return the leader's rebate on a trading fee: 10 % rounded down to 0.00000001."""
    if fee < 0:
        raise RuleViolation("fee", fee, "R-FEE-2", f"trading fee {fee} cannot be negative")
    return round_down(fee * REBATE_RATE)
