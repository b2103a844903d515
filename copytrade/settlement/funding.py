"""Futures funding payments of a copy: how they are posted, and how settlement reads them (R-SET-3).

The exchange charges or pays funding on open USDⓈ-M positions every funding interval. Each payment
of one copy is one ledger transfer, code ``funding``, keyed ``funding:<venue>:<copy>:<exchange id>``
(the exchange's income id, so a payment fetched twice is posted once):

- paid by the copy (``amount`` < 0): follower:<copy>:cash → exchange:<venue>;
- received (``amount`` > 0): exchange:<venue> → follower:<copy>:cash.

Settlement counts the sum of a copy's funding postings on its cash account up to the cycle's
instant in its realised profit (received adds, paid subtracts), so a leader's share is computed
on what the follower really made. The copy engine posts them (``funding_transfer``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal

from sqlalchemy.orm import Session

from copytrade.domain.errors import RuleViolation
from copytrade.domain.money import from_units
from copytrade.ledger import Leg, TransferSpec
from copytrade.ledger.accounts import exchange, follower_cash
from copytrade.ledger.rawsql import Raw

FUNDING_CODE = "funding"


def funding_transfer(
    *,
    copy_id: int,
    venue: str,
    exchange_id: str,
    asset: str,
    amount: Decimal,
    at: datetime | None = None,
    refs: dict | None = None,
) -> TransferSpec:
    """Return the ledger transfer of one funding payment (``amount`` signed from the copy's side)."""
    if amount == 0:
        raise RuleViolation("amount", amount, "R-LED-1", "a funding payment of zero posts nothing")
    cash, counterparty = follower_cash(copy_id), exchange(venue)
    return TransferSpec(
        key=f"{FUNDING_CODE}:{venue}:{copy_id}:{exchange_id}",
        code=FUNDING_CODE,
        legs=(Leg(counterparty, asset, -amount), Leg(cash, asset, amount)),
        memo=f"funding {'received' if amount > 0 else 'paid'} by copy {copy_id}",
        refs={"copy_id": copy_id, **(refs or {})},
        at=at,
    )


def funding_by_copy(
    session: Session, assets: Mapping[int, str], as_of: datetime
) -> dict[int, Decimal]:
    """Return each copy's net funding (received − paid) in its settlement asset up to ``as_of``.

    ``assets`` maps copy id → settlement asset. One set-based read over the copies' cash
    accounts; only ``funding`` transfers are summed.
    """
    if not assets:
        return {}
    raw = Raw(session)
    any_funding = session.connection().exec_driver_sql(
        f"SELECT 1 FROM ledger_transfers WHERE code = '{FUNDING_CODE}' LIMIT 1"
    )
    if any_funding.first() is None:  # spot-only ledgers: skip the join over every posting
        return {}
    by_address = {follower_cash(copy_id): copy_id for copy_id in assets}
    rows: Sequence[tuple] = raw.select_in(
        "SELECT a.address, a.asset, p.amount, t.created_at FROM ledger_postings p "
        "JOIN ledger_accounts a ON a.id = p.account_id "
        "JOIN ledger_transfers t ON t.id = p.transfer_id "
        f"WHERE t.code = '{FUNDING_CODE}' AND a.address IN ({{in_}})",
        sorted(by_address),
    )
    cutoff = raw.stamp(as_of)
    out: dict[int, int] = defaultdict(int)
    for address, asset, amount, created_at in rows:
        copy_id = by_address[address]
        if asset == assets[copy_id] and created_at <= cutoff:
            out[copy_id] += int(amount)
    return {copy_id: from_units(total) for copy_id, total in out.items()}
