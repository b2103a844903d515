"""Profit-share formula of settlement (R-SET-2, R-SET-3, R-SET-8, R-SET-10): pure, exact, never negative."""

from __future__ import annotations

from decimal import Decimal

from copytrade.domain.errors import RuleViolation
from copytrade.domain.money import ZERO, round_down

SPOT, FUTURES = "spot", "futures"


def profit_share(
    mode: str,
    realised_pnl: Decimal,
    unrealised_pnl: Decimal,
    ratio: Decimal,
    already_paid: Decimal,
) -> Decimal:
    """Return the share due now: ``max(basis × ratio − already_paid, 0)`` rounded down to 1e-8.

    The basis is the realised PnL for spot (unrealised is ignored, R-SET-2) and realised plus
    unrealised PnL for futures (R-SET-3).
    """
    if mode not in (SPOT, FUTURES):
        raise RuleViolation("mode", mode, "R-SET-2", f"mode {mode!r} is not 'spot' or 'futures'")
    basis = realised_pnl if mode == SPOT else realised_pnl + unrealised_pnl
    due = basis * ratio - already_paid
    return round_down(due) if due > 0 else round_down(ZERO)
