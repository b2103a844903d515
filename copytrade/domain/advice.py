"""Advice shown to a follower who starts a copy (R-COPY-9): shown, never enforced.

SPEC's advice: prefer leaders with at least 90 days of history; follow 3–5 complementary
leaders; keep any single leader at most 5 % of total capital; test small for about a month. The
first three depend on the follower's situation and are shown when they apply; the last always is.
"""

from __future__ import annotations

from decimal import ROUND_UP, Decimal

MIN_HISTORY_DAYS = 90
MAX_SHARE_OF_CAPITAL = Decimal("0.05")
MIN_LEADERS = 3


def copy_advice(
    *,
    history_days: int,
    allocation: Decimal,
    total_capital: Decimal,
    leaders_followed: int,
) -> list[str]:
    """Return the R-COPY-9 advice that applies to a copy just started.

    ``history_days``: the leader's days of trading history; ``total_capital``: the follower's
    spot wallet plus the principal of their active copies, this one included;
    ``leaders_followed``: distinct portfolios the follower copies now, this one included.
    """
    advice = []
    if history_days < MIN_HISTORY_DAYS:
        advice.append(
            f"this leader has {history_days} days of history; prefer leaders with at least "
            f"{MIN_HISTORY_DAYS} days (R-COPY-9)"
        )
    if total_capital > 0 and allocation > total_capital * MAX_SHARE_OF_CAPITAL:
        share = (allocation / total_capital * 100).quantize(Decimal("0.01"), ROUND_UP)
        advice.append(
            f"this copy is {share} % of your capital; keep any single leader at or below "
            f"{MAX_SHARE_OF_CAPITAL * 100:.0f} % (R-COPY-9)"
        )
    if leaders_followed < MIN_LEADERS:
        advice.append(
            f"you follow {leaders_followed} leader{'s' if leaders_followed != 1 else ''}; follow "
            f"{MIN_LEADERS}-5 complementary leaders (R-COPY-9)"
        )
    if advice:
        advice.append("test with a small amount for about a month first (R-COPY-9)")
    return advice
