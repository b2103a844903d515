"""Recompute the ledger's hash chain from the stored postings, fast enough for every validation (R-X-4).

Same checks and messages as ``Ledger.verify_chain`` (which stays the reference), read differently:
transfers in seq order, a batch at a time, with their postings fetched by one id-range query per
batch and account addresses from one map, instead of an ``IN`` list per 900 transfers. The digest
and chained hash come from the ledger service's own functions.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from copytrade.ledger import ChainReport
from copytrade.ledger.service import chain_hash, transfer_digest
from copytrade.settlement.sqlutil import raw_units
from models.ledger import GENESIS_HASH, LedgerAccount, LedgerPosting, LedgerTransfer
from models.validation import LedgerChainVerification


def recompute_chain(session: Session, batch: int = 50_000) -> tuple[ChainReport, int, str]:
    """Recompute every transfer's digest and hash in order.

    Return the report, and the seq and hash of the last transfer that matched.
    """
    report = ChainReport()
    addresses = dict(session.execute(select(LedgerAccount.id, LedgerAccount.address)).all())
    prev, expected = GENESIS_HASH, 1
    t = LedgerTransfer
    while True:
        transfers = session.execute(
            select(
                t.id, t.seq, t.idempotency_key, t.code, t.created_at, t.digest, t.prev_hash, t.hash
            )
            .where(t.seq >= expected)
            .order_by(t.seq)
            .limit(batch)
        ).all()
        if not transfers:
            return report, expected - 1, prev
        ids = [row.id for row in transfers]
        wanted = set(ids)
        postings: dict[int, list[tuple[str, str, int]]] = defaultdict(list)
        rows = session.execute(
            select(
                LedgerPosting.transfer_id,
                LedgerPosting.account_id,
                LedgerPosting.asset,
                raw_units(LedgerPosting.amount),
            ).where(LedgerPosting.transfer_id >= min(ids), LedgerPosting.transfer_id <= max(ids))
        )
        for transfer_id, account_id, asset, units in rows:
            if transfer_id in wanted:
                postings[transfer_id].append((addresses.get(account_id, "?"), asset, units))
        for row in transfers:
            report.checked += 1
            digest = transfer_digest(row.idempotency_key, row.code, postings[row.id])
            problem = None
            if row.seq != expected:
                problem = f"sequence gap: expected {expected}, found {row.seq}"
            elif row.prev_hash != prev:
                problem = f"seq {row.seq}: prev_hash does not match the previous transfer's hash"
            elif digest != row.digest:
                problem = f"seq {row.seq}: content (postings, key or code) was edited"
            elif chain_hash(prev, row.seq, row.created_at, digest) != row.hash:
                problem = f"seq {row.seq}: hash does not match its content or time"
            if problem:
                report.first_broken_seq = row.seq
                report.problems.append(problem)
                return report, expected - 1, prev
            prev, expected = row.hash, row.seq + 1


def record_chain_verification(session: Session) -> LedgerChainVerification:
    """Recompute the chain and keep the result as an audit row (the checkpoint gates on it)."""
    started = datetime.now(UTC)
    report, through, last_hash = recompute_chain(session)
    row = LedgerChainVerification(
        checked=report.checked,
        through_seq=through,
        through_hash=last_hash,
        first_broken_seq=report.first_broken_seq,
        problem=report.problems[0] if report.problems else None,
        started_at=started,
        finished_at=datetime.now(UTC),
    )
    session.add(row)
    session.flush()
    return row
