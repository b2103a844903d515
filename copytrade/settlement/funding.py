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
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from copytrade.domain.errors import RuleViolation
from copytrade.domain.money import from_units
from copytrade.ledger import Leg, TransferSpec
from copytrade.ledger.accounts import exchange, follower_cash
from copytrade.settlement.sqlutil import chunks, raw_units
from models.ledger import LedgerAccount, LedgerPosting, LedgerTransfer

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


def funding_poster(sessions):
    """Return the copy engine's ``on_funding`` hook: each payment posted with ``funding_transfer``
    (idempotent by the exchange's income id) in one transaction per copy."""
    from copytrade.ledger import Ledger

    def on_funding(copy_id: int, payments, venue: str) -> None:
        specs = [
            funding_transfer(
                copy_id=copy_id,
                venue=venue,
                exchange_id=p.exchange_id,
                asset=p.asset,
                amount=p.amount,
                at=p.at,
                refs={"symbol": p.symbol},
            )
            for p in payments
            if p.amount
        ]
        if specs:
            with sessions() as session, session.begin():
                Ledger(session).post_many(specs)

    return on_funding


def funding_by_copy(
    session: Session, assets: Mapping[int, str], as_of: datetime
) -> dict[int, Decimal]:
    """Return each copy's net funding (received − paid) in its settlement asset up to ``as_of``.

    ``assets`` maps copy id → settlement asset. One set-based read over the copies' cash
    accounts; only ``funding`` transfers are summed.
    """
    if not assets:
        return {}
    connection = session.connection()
    transfers, postings, accounts = (
        LedgerTransfer.__table__,
        LedgerPosting.__table__,
        LedgerAccount.__table__,
    )
    any_funding = connection.execute(
        select(transfers.c.id).where(transfers.c.code == FUNDING_CODE).limit(1)
    ).first()
    if any_funding is None:  # spot-only ledgers: skip the join over the copies' postings
        return {}
    by_address = {follower_cash(copy_id): copy_id for copy_id in assets}
    out: dict[int, int] = defaultdict(int)
    for chunk in chunks(sorted(by_address)):
        rows = connection.execute(
            select(accounts.c.address, accounts.c.asset, raw_units(postings.c.amount))
            .select_from(postings)
            .join(accounts, accounts.c.id == postings.c.account_id)
            .join(transfers, transfers.c.id == postings.c.transfer_id)
            .where(
                transfers.c.code == FUNDING_CODE,
                transfers.c.created_at <= as_of,
                accounts.c.address.in_(chunk),
            )
        )
        for address, asset, amount in rows:
            copy_id = by_address[address]
            if asset == assets[copy_id]:
                out[copy_id] += int(amount)
    return {copy_id: from_units(total) for copy_id, total in out.items()}
