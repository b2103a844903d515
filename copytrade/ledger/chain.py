"""The hash chain (R-X-4): how a transfer is digested and chained, and the check of the whole chain.

``recompute_chain`` reads transfers in seq order a batch at a time straight from the DB-API, their
postings by one id-range query per batch and addresses from one map — at millions of rows
SQLAlchemy's per-row fetch costs more than the hashing. On SQLite the stored timestamp text *is*
the instant the chain hashed (SQLAlchemy writes UTC with six microsecond digits), so the hash is
computed from it without a datetime round trip (``hash_from_stamp``, tested equal to
``chain_hash``); on PostgreSQL the driver's datetime goes through ``chain_hash``.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from hashlib import sha256

from sqlalchemy.orm import Session

from models.ledger import GENESIS_HASH


@dataclass(slots=True)
class ChainReport:
    """Outcome of recomputing the chain: ``ok`` or the first transfer whose hash does not match."""

    checked: int = 0
    first_broken_seq: int | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.first_broken_seq is None


def transfer_digest(key: str, code: str, postings: Iterable[tuple[str, str, int]]) -> str:
    """Return the sha256 of a transfer's content (key, code, sorted postings): what idempotency compares."""
    body = "\n".join(f"{a}|{s}|{u}" for a, s, u in sorted(postings))
    return hashlib.sha256(f"{key}\n{code}\n{body}".encode()).hexdigest()


def chain_stamp(at: datetime) -> str:
    """Return the instant as the chain hashes it: UTC, microseconds, ``%Y-%m-%dT%H:%M:%S.%fZ``."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def hash_from_stamp(prev_hash: str, seq: int, stamp: str, digest: str) -> str:
    """Return ``chain_hash`` for an instant already formatted by ``chain_stamp``."""
    return hashlib.sha256(f"{prev_hash}|{seq}|{stamp}|{digest}".encode()).hexdigest()


def chain_hash(prev_hash: str, seq: int, at: datetime, digest: str) -> str:
    """Return the chained hash of transfer ``seq``: previous hash, position, time and content (R-X-4)."""
    return hash_from_stamp(prev_hash, seq, chain_stamp(at), digest)


def _hasher(postgres: bool):
    if postgres:
        return lambda prev, seq, at, digest: chain_hash(prev, seq, at, digest)

    def from_text(prev: str, seq: int, at, digest: str) -> str:
        if isinstance(at, str) and len(at) == 26:
            return hash_from_stamp(prev, seq, at.replace(" ", "T") + "Z", digest)
        parsed = at if isinstance(at, datetime) else datetime.fromisoformat(at)
        return chain_hash(prev, seq, parsed.replace(tzinfo=parsed.tzinfo or UTC), digest)

    return from_text


def _problem(seq: int, expected: int, relinked: bool, edited: bool) -> str:
    """Return ``Ledger.verify_chain``'s message for the first check transfer ``seq`` fails."""
    if seq != expected:
        return f"sequence gap: expected {expected}, found {seq}"
    if relinked:
        return f"seq {seq}: prev_hash does not match the previous transfer's hash"
    if edited:
        return f"seq {seq}: content (postings, key or code) was edited"
    return f"seq {seq}: hash does not match its content or time"


def recompute_chain(session: Session, batch: int = 50_000) -> tuple[ChainReport, int, str]:
    """Recompute every transfer's digest and hash in order.

    Return the report, and the seq and hash of the last transfer that matched.
    """
    connection = session.connection()
    postgres = connection.dialect.name == "postgresql"
    mark = "%s" if postgres else "?"
    hasher = _hasher(postgres)
    # The driver's own cursor: at millions of rows SQLAlchemy's per-row fetch costs more than the
    # hashing. It runs inside the session's transaction, so it sees one consistent ledger.
    cursor = connection.connection.driver_connection.cursor()
    report = ChainReport()
    cursor.execute("SELECT id, address FROM ledger_accounts")
    addresses = dict(cursor.fetchall())
    prev, expected = GENESIS_HASH, 1
    try:
        while True:
            cursor.execute(
                "SELECT id, seq, idempotency_key, code, created_at, digest, prev_hash, hash "
                f"FROM ledger_transfers WHERE seq >= {mark} ORDER BY seq LIMIT {mark}",
                (expected, batch),
            )
            transfers = cursor.fetchall()
            if not transfers:
                return report, expected - 1, prev
            postings: dict[int, list[tuple[str, str, int]]] = defaultdict(list)
            cursor.execute(
                "SELECT transfer_id, account_id, asset, amount FROM ledger_postings "
                f"WHERE transfer_id >= {mark} AND transfer_id <= {mark}",
                (min(t[0] for t in transfers), max(t[0] for t in transfers)),
            )
            for transfer_id, account_id, asset, units in cursor.fetchall():
                postings[transfer_id].append((addresses.get(account_id, "?"), asset, int(units)))
            no_postings: list[tuple[str, str, int]] = []
            for (
                transfer_id,
                seq,
                key,
                code,
                created_at,
                stored,
                prev_hash,
                stored_hash,
            ) in transfers:
                # transfer_digest, inlined: this loop runs once per transfer of the ledger
                body = "\n".join(
                    [f"{a}|{s}|{u}" for a, s, u in sorted(postings.get(transfer_id, no_postings))]
                )
                digest = sha256(f"{key}\n{code}\n{body}".encode()).hexdigest()
                if (
                    seq != expected
                    or prev_hash != prev
                    or digest != stored
                    or hasher(prev, seq, created_at, digest) != stored_hash
                ):
                    report.checked = expected  # this transfer included
                    report.first_broken_seq = seq
                    report.problems.append(
                        _problem(seq, expected, prev_hash != prev, digest != stored)
                    )
                    return report, expected - 1, prev
                prev, expected = stored_hash, seq + 1
            report.checked = expected - 1
    finally:
        cursor.close()
