"""Ledger validation runs: the recomputed hash chain, kept as an audit trail (R-X-4, R-LED-7)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base
from models.types import UtcDateTime, utcnow


class LedgerChainVerification(Base):
    """One recomputation of every transfer's digest and chained hash from the stored postings.

    The ``ledger_integrity`` checkpoint gates on the newest row (it must have found no break), so
    a content edit that only Python can detect (sha256) fails the checkpoint like any SQL rule.
    """

    __tablename__ = "ledger_chain_verifications"

    id: Mapped[int] = mapped_column(primary_key=True)
    checked: Mapped[int] = mapped_column(BigInteger)  # transfers recomputed
    # the anchor this recomputation appended to the root chain (0 and "" when it found a break;
    # before migration 0005: the last transfer seq that matched and its hash)
    through_seq: Mapped[int] = mapped_column(BigInteger)
    through_hash: Mapped[str] = mapped_column(String(64))
    first_broken_stream: Mapped[int | None] = mapped_column(Integer)
    first_broken_seq: Mapped[int | None] = mapped_column(BigInteger)
    problem: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    finished_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
