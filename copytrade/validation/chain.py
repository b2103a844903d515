"""The hash chain recomputed for validation, on a reading connection, and kept as an audit row (R-X-4).

The recomputation itself is the ledger's own (``copytrade.ledger.chain.recompute_chain``, what
``Ledger.verify_chain`` runs).
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from copytrade.gcpause import paused_gc
from copytrade.ledger.chain import ChainReport, recompute_chain
from models.validation import LedgerChainVerification


def recompute_chain_at(url: str, batch: int = 50_000) -> tuple[ChainReport, int, str]:
    """Recompute the chain of the ledger at ``url`` on a plain reading connection.

    Not ``make_engine``'s connection: on SQLite it takes the write lock at BEGIN, and the copy
    engine must keep posting while the history is read.
    """
    engine = create_engine(url)
    try:
        with paused_gc(), engine.connect() as connection, Session(bind=connection) as session:
            return recompute_chain(session, batch)
    finally:
        engine.dispose()


def record_chain_verification(
    session: Session, recomputed: tuple[ChainReport, int, str] | None = None
) -> LedgerChainVerification:
    """Keep a recomputation (done now unless given) as an audit row (the checkpoint gates on it)."""
    started = datetime.now(UTC)
    report, through, last_hash = recomputed or recompute_chain(session)
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
