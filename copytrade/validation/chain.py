"""The hash chains recomputed for validation, on a reading connection, kept as an audit row and
anchored (R-X-4).

The recomputation itself is the ledger's own (``copytrade.ledger.chain.recompute_chain``, what
``Ledger.verify_chain`` runs). After a clean one, every stream head is anchored into the root
chain, so cutting any stream short of what was verified is detected by every later validation.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from copytrade.gcpause import paused_gc
from copytrade.ledger import Ledger
from copytrade.ledger.chain import ChainReport, recompute_chain
from models.validation import LedgerChainVerification


def recompute_chain_at(url: str, batch: int = 50_000) -> ChainReport:
    """Recompute the chains of the ledger at ``url`` on a plain reading connection.

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
    session: Session, report: ChainReport | None = None
) -> LedgerChainVerification:
    """Keep a recomputation (done now unless given) as an audit row (the checkpoint gates on it);
    when it found no break, anchor every stream head into the root chain."""
    started = datetime.now(UTC)
    report = report or recompute_chain(session)
    through_seq, through_hash = (0, "")
    if report.ok:
        through_seq, through_hash = Ledger(session).anchor()
    row = LedgerChainVerification(
        checked=report.checked,
        through_seq=through_seq,
        through_hash=through_hash,
        first_broken_stream=report.first_broken_stream,
        first_broken_seq=report.first_broken_seq,
        problem=report.problems[0] if report.problems else None,
        started_at=started,
        finished_at=datetime.now(UTC),
    )
    session.add(row)
    session.flush()
    return row
