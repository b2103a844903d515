"""One vocabulary for why a copy stopped and which settlement that triggers (R-SET-5, R-COPY-3/5).

The engine and the platform write ``copies.stop_reason`` as ``<trigger>`` or ``<trigger>: <detail>``
(``"stop_loss: cumulative PnL -201.5 (threshold -200)"``); settlement reads the trigger back with
``trigger_of`` and names its event cycle after it (``event:stop_loss:copy:42``). Both sides use
these names, so a stop-loss settles as a stop-loss and a take-profit as a take-profit.
"""

from __future__ import annotations

from enum import StrEnum

from copytrade.domain.errors import RuleViolation


class Trigger(StrEnum):
    """An event that settles one copy (R-SET-5)."""

    STOP_COPY = "stop_copy"  # the follower stopped copying (R-COPY-5)
    STOP_LOSS = "stop_loss"  # the copy's stop-loss fired (R-COPY-3)
    TAKE_PROFIT = "take_profit"  # the copy's take-profit fired (R-COPY-3)
    PORTFOLIO_CLOSED = "portfolio_closed"  # the leader closed the portfolio (R-LEAD-10)
    WITHDRAW_PROFIT = "withdraw_profit"  # the follower withdrew profit; the copy runs on


# The triggers that end the copy: its settlement is final and hands the remaining cash back.
FINAL_TRIGGERS = frozenset(
    {Trigger.STOP_COPY, Trigger.STOP_LOSS, Trigger.TAKE_PROFIT, Trigger.PORTFOLIO_CLOSED}
)
# Stop reasons written before this vocabulary existed (kept readable for old ledgers).
_LEGACY_REASONS = {"stopped_by_follower": Trigger.STOP_COPY}


def parse_trigger(value: object, field: str = "trigger") -> Trigger:
    """Return ``value`` as a trigger; refuse anything else naming the field and R-SET-5."""
    try:
        return Trigger(str(value).strip())
    except ValueError:
        raise RuleViolation(
            field,
            value,
            "R-SET-5",
            f"a settlement trigger is one of {', '.join(t.value for t in Trigger)}",
        ) from None


def stop_reason(trigger: Trigger, detail: str | None = None) -> str:
    """Return the ``copies.stop_reason`` text of a stop for ``trigger`` (final triggers only)."""
    if trigger not in FINAL_TRIGGERS:
        raise RuleViolation(
            "trigger", trigger, "R-SET-5", f"{trigger} does not stop a copy; it settles a live one"
        )
    return f"{trigger.value}: {detail}" if detail else trigger.value


def trigger_of(reason: str | None) -> Trigger:
    """Return the trigger that settles a copy stopped for ``reason`` (``<trigger>[: detail]``).

    A reason that names no final trigger is a stop by the follower or an operator (stop_copy).
    """
    head = (reason or "").split(":", 1)[0].strip()
    if head in _LEGACY_REASONS:
        return _LEGACY_REASONS[head]
    try:
        trigger = Trigger(head)
    except ValueError:
        return Trigger.STOP_COPY
    return trigger if trigger in FINAL_TRIGGERS else Trigger.STOP_COPY
