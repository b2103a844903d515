"""What one copy is due in one cycle: pure decisions, no I/O (R-SET-1/2/3/6/7/8/10, R-FEE-3/4).

The profit basis of a copy is its cumulative profit since it started, *after trading fees and
funding*: the realised PnL of its fills minus the fees it paid (valued in the settlement asset; a
fee in the bought coin at its fill's price), plus the funding it received minus the funding it
paid, plus (futures only) the unrealised PnL of its open positions at the mark. The share due is the domain formula
``profit_share`` (basis × ratio − already paid, floored at 0, rounded down to 1e-8). A due share
is then paid, deferred (weekly cycle of a futures portfolio at or below −20,000 USD unrealised,
R-SET-6), or paused (the follower's balance is below it, R-SET-7); deferred and paused shares are
not recorded as paid, so the next cycle's formula carries them. Rebates are paid whatever happens
to the share (R-FEE-3).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from copytrade.domain.money import ZERO
from copytrade.domain.settlement import FUTURES, profit_share

R_SET_6_THRESHOLD = Decimal("-20000")


@dataclass(frozen=True, slots=True)
class CopyFacts:
    """Everything settlement knows about one copy at the cycle's instant."""

    copy_id: int
    portfolio_id: int
    leader_person_id: int
    mode: str  # spot | futures
    ratio: Decimal
    asset: str  # the settlement asset (the portfolio's capital asset)
    realised: Decimal = ZERO  # Σ realised PnL of the fills, settlement asset
    fees: Decimal = ZERO  # Σ trading fees, valued in the settlement asset (fee_in_settlement_asset)
    funding: Decimal = ZERO  # futures funding received − paid (settlement.funding)
    unrealised: Decimal = ZERO  # futures: open positions at the mark
    missing_marks: tuple[str, ...] = ()  # futures: open symbols without a mark
    share_paid: Decimal = ZERO  # "already paid" (R-SET-8)
    peak_profit: Decimal = ZERO
    balance: Decimal = ZERO  # the follower's available balance in the settlement asset
    rebates_due: Mapping[str, Decimal] = field(default_factory=dict)  # accrued − paid, per asset


@dataclass(frozen=True, slots=True)
class ShareDecision:
    """The profit-share outcome of one copy in one cycle."""

    status: str  # paid | paused | deferred | nothing_due
    amount: Decimal  # paid, or due when paused/deferred
    basis: Decimal | None  # None when it could not be computed (missing mark)
    realised: Decimal  # realised PnL − fees + funding
    unrealised: Decimal | None
    paid_before: Decimal
    peak_after: Decimal
    reason: str | None = None


def portfolio_deferral(
    mode: str, unrealised: Decimal | None, threshold: Decimal = R_SET_6_THRESHOLD
) -> str | None:
    """Return why a weekly cycle defers a futures portfolio's shares (R-SET-6), or None to settle."""
    if mode != FUTURES:
        return None
    if unrealised is None:
        return (
            "lead portfolio unrealised PnL unknown (no mark price for an open position) (R-SET-6)"
        )
    if unrealised <= threshold:
        return (
            f"lead portfolio unrealised PnL {unrealised} USD is not above {threshold} USD (R-SET-6)"
        )
    return None


def decide_share(facts: CopyFacts, deferral_reason: str | None = None) -> ShareDecision:
    """Return the profit share of ``facts`` for this cycle (``deferral_reason``: R-SET-6 applies)."""
    realised = facts.realised - facts.fees + facts.funding
    futures = facts.mode == FUTURES
    if futures and facts.missing_marks:
        return ShareDecision(
            status="deferred",
            amount=ZERO,
            basis=None,
            realised=realised,
            unrealised=None,
            paid_before=facts.share_paid,
            peak_after=facts.peak_profit,
            reason=f"no mark price for {', '.join(facts.missing_marks)} at the settlement time (R-SET-3)",
        )
    unrealised = facts.unrealised if futures else ZERO
    basis = realised + unrealised
    due = profit_share(facts.mode, realised, unrealised, facts.ratio, facts.share_paid)
    common = {
        "basis": basis,
        "realised": realised,
        "unrealised": unrealised if futures else None,
        "paid_before": facts.share_paid,
        "peak_after": max(facts.peak_profit, basis, ZERO),
    }
    if due <= 0:
        return ShareDecision(status="nothing_due", amount=ZERO, **common)
    if deferral_reason:
        return ShareDecision(status="deferred", amount=due, reason=deferral_reason, **common)
    if facts.balance < due:
        return ShareDecision(
            status="paused",
            amount=due,
            reason=f"follower balance {facts.balance} {facts.asset} is below the share due {due} (R-SET-7)",
            **common,
        )
    return ShareDecision(status="paid", amount=due, **common)


def cash_to_release(
    share: ShareDecision, open_positions: tuple[str, ...], cash: Mapping[str, Decimal]
) -> tuple[dict[str, Decimal], str | None]:
    """Return what a stopped copy hands back to its follower once settled, or why it waits.

    The copy's remaining cash (every asset, after the share) goes back to the follower's spot
    wallet when nothing is owed any more (the share is paid or nothing is due) and no futures
    position is still open (its margin is still at stake).
    """
    if share.status not in ("paid", "nothing_due"):
        return {}, f"the copy's cash stays while its share is {share.status} (R-SET-7)"
    if open_positions:
        return (
            {},
            f"the copy's cash stays until its open positions are closed: {', '.join(open_positions)}",
        )
    return {asset: amount for asset, amount in sorted(cash.items()) if amount > 0}, None


def rebates_to_pay(facts: CopyFacts) -> dict[str, Decimal]:
    """Return the rebates accrued since the last payout, per asset; never paused (R-FEE-3/4)."""
    return {asset: due for asset, due in sorted(facts.rebates_due.items()) if due > 0}
