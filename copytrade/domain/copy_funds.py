"""A running copy's money: adding funds, what profit may be withdrawn, and its result for stops.

Pure rules (no I/O). Amounts are in the portfolio's settlement asset (USDT, valued 1:1 with USD).

- **Principal** is what the follower put into the copy: the allocation plus every ``add-funds``.
  Withdrawals take profit only, so they never lower it.
- **Withdrawable profit** (as Binance's copy trading: only profit above the principal leaves a
  running copy, after the leader's share): ``min(cash − margin in use − share outstanding,
  equity − principal − share outstanding)`` floored at zero and rounded down to 1e-8, where
  ``equity`` is cash plus open positions at the mark (spot coins, futures unrealised PnL). The
  first term keeps what open positions and a paused share (R-SET-7) need; the second never lets
  a withdrawal take the copy below its principal, unrealised losses included.
- **The copy's result for stop-loss and take-profit** (R-COPY-3) is its cumulative PnL *after
  fees and shares*: realised − fees + funding + unrealised − shares already paid.
"""

from __future__ import annotations

from decimal import Decimal

from copytrade.domain.errors import RuleViolation
from copytrade.domain.inputs import decimal_field
from copytrade.domain.money import ZERO, round_down
from copytrade.domain.triggers import Trigger

MIN_ADD_FUNDS = Decimal(1)  # product decision: smaller top-ups are noise, not money to trade


def check_add_funds(amount: object, spot_balance: Decimal, status: str) -> Decimal:
    """Return the amount to move from the spot wallet into an active copy (R-COPY-2's funding rule)."""
    if status != "active":
        raise RuleViolation(
            "copy_id", status, "R-COPY-5", f"the copy is {status}; funds go only to an active copy"
        )
    value = decimal_field("amount", amount, "R-COPY-2")
    if value < MIN_ADD_FUNDS:
        raise RuleViolation(
            "amount",
            amount,
            "R-COPY-2",
            f"amount {value} USDT is below the minimum of {MIN_ADD_FUNDS} USDT",
        )
    if value > spot_balance:
        raise RuleViolation(
            "amount",
            amount,
            "R-COPY-2",
            f"amount {value} USDT is more than the spot balance of {spot_balance} USDT",
        )
    return value


def withdrawable_profit(
    *,
    cash: Decimal,
    principal: Decimal,
    equity: Decimal,
    margin_in_use: Decimal = ZERO,
    share_outstanding: Decimal = ZERO,
) -> Decimal:
    """Return the profit a running copy may hand to its follower now (see the module docstring)."""
    available = cash - margin_in_use - share_outstanding
    above_principal = equity - principal - share_outstanding
    value = min(available, above_principal)
    return round_down(value) if value > 0 else round_down(ZERO)


def check_withdrawal(requested: object | None, withdrawable: Decimal) -> Decimal:
    """Return the amount to withdraw: ``requested`` (default: all withdrawable), within the limit."""
    if requested is None or (isinstance(requested, str) and not requested.strip()):
        amount = withdrawable
    else:
        amount = decimal_field("amount", requested, "R-SET-5")
        if amount <= 0:
            raise RuleViolation(
                "amount", requested, "R-SET-5", f"amount {amount} must be above zero"
            )
    if amount <= 0 or amount > withdrawable:
        raise RuleViolation(
            "amount",
            requested if requested is not None else amount,
            "R-SET-5",
            f"withdrawable profit is {withdrawable} USDT (profit above the principal, after the "
            "leader's share, cash not held by open positions)",
        )
    return amount


def result_after_fees_and_shares(
    *,
    realised: Decimal,
    fees: Decimal,
    unrealised: Decimal,
    shares_paid: Decimal,
    funding: Decimal = ZERO,
) -> Decimal:
    """Return the copy's cumulative PnL after fees and shares paid, for stop-loss/take-profit (R-COPY-3).

    ``fees`` are every trading fee valued in the settlement asset; ``funding`` is signed
    (received +, paid −); ``shares_paid`` the profit shares the leader already received.
    """
    return realised - fees + funding + unrealised - shares_paid


def copy_stop_hit(
    result: Decimal,
    principal: Decimal,
    stop_loss_pct: Decimal | None,
    take_profit_pct: Decimal | None,
) -> tuple[Trigger, Decimal] | None:
    """Return ``(trigger, threshold)`` when ``result`` reaches the copy's stop-loss or take-profit.

    Thresholds are percentages of the principal (R-COPY-3): a stop-loss of 20 on 1,000 USDT fires
    at a result of −200 or below; a take-profit of 50 at +500 or above.
    """
    if stop_loss_pct is not None:
        threshold = -(principal * stop_loss_pct / 100)
        if result <= threshold:
            return Trigger.STOP_LOSS, threshold
    if take_profit_pct is not None:
        threshold = principal * take_profit_pct / 100
        if result >= threshold:
            return Trigger.TAKE_PROFIT, threshold
    return None
