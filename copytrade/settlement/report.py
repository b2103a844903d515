"""What a settlement run did: payouts per leader, paused and deferred shares with reasons."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from copytrade.domain.money import ZERO


@dataclass(frozen=True, slots=True)
class PayoutLine:
    """One payout decision worth listing (paid totals are summed, not listed)."""

    cycle_key: str
    copy_id: int
    portfolio_id: int
    leader_person_id: int
    kind: str
    asset: str
    status: str
    amount: Decimal
    reason: str | None = None


@dataclass(slots=True)
class LeaderTotals:
    shares: Decimal = ZERO
    rebates: Decimal = ZERO
    copies_paid: int = 0


@dataclass(slots=True)
class RunReport:
    """The outcome of one settlement run (one weekly cycle, or one or more event cycles)."""

    trigger: str
    as_of: datetime
    cycle_keys: list[str] = field(default_factory=list)
    status: str = "completed"  # completed | blocked | already_completed | nothing_to_do
    blocked_reason: str | None = None
    validation: object | None = None  # the gate's validation report, when one ran
    copies_settled: int = 0
    batches: int = 0
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    per_leader: dict[tuple[int, str], LeaderTotals] = field(
        default_factory=lambda: defaultdict(LeaderTotals)
    )
    paused: list[PayoutLine] = field(default_factory=list)
    deferred: list[PayoutLine] = field(default_factory=list)
    held: list[PayoutLine] = field(default_factory=list)  # cash or capital kept, with the reason
    cash_returned: dict[str, Decimal] = field(default_factory=dict)  # stopped copies → followers
    capital_returned: dict[str, Decimal] = field(
        default_factory=dict
    )  # closed portfolios → leaders

    @property
    def blocked(self) -> bool:
        return self.status == "blocked"

    @property
    def shares_paid(self) -> Decimal:
        return sum((t.shares for t in self.per_leader.values()), ZERO)

    @property
    def rebates_paid(self) -> Decimal:
        return sum((t.rebates for t in self.per_leader.values()), ZERO)

    def summary(self) -> dict:
        """Return the JSON-safe summary stored on the cycle and printed by the CLI."""
        return {
            "trigger": self.trigger,
            "as_of": self.as_of.isoformat(),
            "cycles": len(self.cycle_keys),
            "status": self.status,
            "copies_settled": self.copies_settled,
            "counts": dict(sorted(self.counts.items())),
            "shares_paid": str(self.shares_paid),
            "rebates_paid": str(self.rebates_paid),
            "paused": len(self.paused),
            "deferred": len(self.deferred),
            "held": len(self.held),
            "cash_returned": {a: str(v) for a, v in sorted(self.cash_returned.items())},
            "capital_returned": {a: str(v) for a, v in sorted(self.capital_returned.items())},
        }

    def leader_rows(self) -> list[dict]:
        """Return one row per leader and asset: shares and rebates paid in this run."""
        return [
            {
                "leader_person_id": leader,
                "asset": asset,
                "shares_paid": str(t.shares),
                "rebates_paid": str(t.rebates),
                "copies_paid": t.copies_paid,
            }
            for (leader, asset), t in sorted(self.per_leader.items())
        ]

    def withheld_rows(self) -> list[dict]:
        """Return the paused and deferred shares with their reasons."""
        return [
            {
                "cycle": line.cycle_key,
                "copy_id": line.copy_id,
                "portfolio_id": line.portfolio_id,
                "status": line.status,
                "amount": str(line.amount),
                "asset": line.asset,
                "reason": line.reason or "",
            }
            for line in [*self.deferred, *self.paused, *self.held]
        ]

    def to_markdown(self, limit: int = 200) -> str:
        """Render the report for a Prefect artifact or a terminal."""
        lines = [
            f"# Settlement {self.trigger} as of {self.as_of.isoformat()}",
            "",
            f"**Status:** {self.status}"
            + (f" — {self.blocked_reason}" if self.blocked_reason else ""),
            "",
            f"Cycles: {len(self.cycle_keys)} ({', '.join(self.cycle_keys[:5])}"
            + (" …" if len(self.cycle_keys) > 5 else "")
            + f"); copies settled: {self.copies_settled}; "
            f"shares paid: {self.shares_paid}; rebates paid: {self.rebates_paid}.",
            "",
            "## Payouts per leader",
            "",
            "| leader | asset | shares paid | rebates paid | copies paid |",
            "|---|---|---:|---:|---:|",
        ]
        for row in self.leader_rows()[:limit]:
            lines.append(
                f"| {row['leader_person_id']} | {row['asset']} | {row['shares_paid']} | "
                f"{row['rebates_paid']} | {row['copies_paid']} |"
            )
        withheld = self.withheld_rows()
        lines += ["", f"## Paused and deferred shares, held cash ({len(withheld)})", ""]
        if withheld:
            lines += ["| copy | status | amount | reason |", "|---|---|---:|---|"]
            for row in withheld[:limit]:
                lines.append(
                    f"| {row['copy_id']} | {row['status']} | {row['amount']} {row['asset']} | "
                    f"{row['reason']} |"
                )
            if len(withheld) > limit:
                lines.append(f"| … | | | {len(withheld) - limit} more |")
        else:
            lines.append("None.")
        return "\n".join(lines) + "\n"
