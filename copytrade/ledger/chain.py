"""The hash chains (R-X-4): one chain per stream, their heads anchored into a root chain.

A transfer's hash covers the previous hash *of its stream*, its position in the stream, its time
and its content digest; each stream starts from its own genesis (stream 0's is the all-zero hash
that every ledger from before streams started from, so its history verifies unchanged). Writers
on different streams therefore never touch the same chain head. Every so often a writer — and
every validation — appends an *anchor* to the root chain: the (seq, hash) of every stream's head.
An edit, a deletion or a reordering inside a stream breaks that stream's links; cutting a stream
short (deleting its last transfers and moving its head back) breaks the anchors that recorded the
removed positions.

``recompute_chain`` reads transfers in id order a batch at a time straight from the DB-API (within
a stream ids grow with seq: both are allocated under the stream's head lock), their postings by one
id-range query per batch and addresses from one map — at millions of rows SQLAlchemy's per-row
fetch costs more than the hashing. The hash is computed from the instant's text without a datetime
round trip (``hash_from_stamp``): on SQLite the stored text *is* the instant the chain hashed
(SQLAlchemy writes UTC with six microsecond digits; tested equal to ``chain_hash``), and
PostgreSQL formats it the same way (``PG_STAMP``).
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from hashlib import sha256

from sqlalchemy.orm import Session

from models.ledger import GENESIS_HASH

DEFAULT_STREAM = 0
# The root chain's head row in ``ledger_chain_heads``: the last anchor's seq and hash. Writers
# append anchors under its row lock; streams are non-negative.
ROOT_STREAM = -1
# A writer whose stream passes a multiple of this many transfers anchors every stream head (if no
# other writer is anchoring at that moment): a stream cut short loses at most this many
# transfers unnoticed until the next validation anchors it.
ANCHOR_EVERY = 1000


@dataclass(slots=True)
class ChainReport:
    """Outcome of recomputing the chains: ``ok``, or the first transfer (or anchor) that is wrong.

    ``heads`` holds, per stream, the seq and hash of the last transfer that matched.
    """

    checked: int = 0
    anchors: int = 0
    first_broken_stream: int | None = None
    first_broken_seq: int | None = None
    problems: list[str] = field(default_factory=list)
    heads: dict[int, tuple[int, str]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def _break(self, stream: int | None, seq: int | None, problem: str) -> None:
        if not self.problems:
            self.first_broken_stream, self.first_broken_seq = stream, seq
        self.problems.append(problem)


@lru_cache(maxsize=1024)
def stream_genesis(stream: int) -> str:
    """Return the hash a stream's first transfer links to (stream 0: the all-zero hash)."""
    if stream == DEFAULT_STREAM:
        return GENESIS_HASH
    return sha256(f"copytrade ledger stream {stream}".encode()).hexdigest()


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


def anchor_heads_text(heads: dict[int, tuple[int, str]]) -> str:
    """Return the canonical text of an anchor's heads: ``stream:seq:hash`` by stream, ``;``-joined."""
    return ";".join(f"{s}:{seq}:{h}" for s, (seq, h) in sorted(heads.items()))


def parse_heads(text: str) -> dict[int, tuple[int, str]]:
    heads = {}
    for part in filter(None, text.split(";")):
        stream, seq, digest = part.split(":")
        heads[int(stream)] = (int(seq), digest)
    return heads


# PostgreSQL formats the instant as ``chain_stamp`` does: parsing millions of timestamps into
# datetimes and formatting them again cost more client CPU than the hashing.
PG_STAMP = "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"


def _stamp_column(postgres: bool) -> str:
    return PG_STAMP if postgres else "created_at"


def _hasher(postgres: bool):
    if postgres:
        return hash_from_stamp

    def from_text(prev: str, seq: int, at, digest: str) -> str:
        if isinstance(at, str) and len(at) == 26:
            return hash_from_stamp(prev, seq, at.replace(" ", "T") + "Z", digest)
        parsed = at if isinstance(at, datetime) else datetime.fromisoformat(at)
        return chain_hash(prev, seq, parsed.replace(tzinfo=parsed.tzinfo or UTC), digest)

    return from_text


def _problem(stream: int, seq: int, expected: int, relinked: bool, edited: bool) -> str:
    """Return ``Ledger.verify_chain``'s message for the first check transfer ``seq`` fails."""
    where = f"stream {stream} seq {seq}"
    if seq != expected:
        return f"stream {stream}: sequence gap: expected {expected}, found {seq}"
    if relinked:
        return f"{where}: prev_hash does not match the previous transfer's hash"
    if edited:
        return f"{where}: content (postings, key or code) was edited"
    return f"{where}: hash does not match its content or time"


# (stream, seq) -> (hash, what recorded it): positions a stream must reach with that hash
Expected = dict[tuple[int, int], tuple[str, str]]


def _read_anchors(
    cursor, stamp, hasher, report: ChainReport, expected: Expected, root: tuple[int, str]
) -> None:
    """Recompute the root chain, check it reaches its head row, and collect the stream
    positions its anchors record."""
    cursor.execute(f"SELECT seq, {stamp}, heads, prev_hash, hash FROM ledger_anchors ORDER BY seq")
    prev, want = GENESIS_HASH, 1
    for seq, created_at, heads, prev_hash, stored in cursor.fetchall():
        if seq != want or prev_hash != prev or hasher(prev, seq, created_at, heads) != stored:
            report._break(None, None, f"anchor {seq}: the root chain is broken (expected {want})")
            return
        if seq == root[0] and stored != root[1]:
            report._break(None, None, f"anchor {seq}: the root head records another hash")
            return
        for stream, position in parse_heads(heads).items():
            expected.setdefault((stream, position[0]), (position[1], f"anchor {seq}"))
        report.anchors = seq
        prev, want = stored, seq + 1
    if report.anchors < root[0]:
        report._break(
            None,
            None,
            f"root chain: ends at anchor {report.anchors}, but its head records anchor "
            f"{root[0]} (anchors were removed)",
        )


def recompute_chain(session: Session, batch: int = 50_000) -> ChainReport:
    """Recompute every transfer's digest and hash, stream by stream, and check the anchors.

    Also checks that every stream reaches the head its ``ledger_chain_heads`` row names (read
    first, so transfers committed meanwhile are simply checked too).
    """
    connection = session.connection()
    postgres = connection.dialect.name == "postgresql"
    mark = "%s" if postgres else "?"
    hasher = _hasher(postgres)
    stamp = _stamp_column(postgres)
    # The driver's own cursor: at millions of rows SQLAlchemy's per-row fetch costs more than the
    # hashing. It runs inside the session's transaction, so it sees one consistent ledger.
    cursor = connection.connection.driver_connection.cursor()
    report = ChainReport()
    expected: Expected = {}
    try:
        cursor.execute("SELECT stream, last_seq, last_hash FROM ledger_chain_heads")
        root = (0, GENESIS_HASH)
        for stream, last_seq, last_hash in cursor.fetchall():
            if stream == ROOT_STREAM:
                root = (last_seq, last_hash)
            elif last_seq == 0 and last_hash != stream_genesis(stream):
                report._break(stream, 0, f"stream {stream}: empty, but its head is not genesis")
            elif last_seq:
                expected[(stream, last_seq)] = (last_hash, "its head")
        _read_anchors(cursor, stamp, hasher, report, expected, root)
        if report.problems:
            return report
        cursor.execute("SELECT id, address FROM ledger_accounts")
        addresses = dict(cursor.fetchall())
        _recompute_streams(cursor, mark, stamp, batch, hasher, addresses, expected, report)
        if report.problems:
            return report
        for (stream, seq), (_, source) in sorted(expected.items()):
            reached = report.heads.get(stream, (0, ""))[0]
            if seq > reached:  # positions reached were checked on the way
                report._break(
                    stream,
                    reached + 1,
                    f"stream {stream}: ends at seq {reached}, but {source} records seq {seq} "
                    "(transfers were removed)",
                )
                return report
        return report
    finally:
        cursor.close()


def _recompute_streams(
    cursor, mark, stamp, batch, hasher, addresses, expected: Expected, report: ChainReport
) -> None:
    heads = report.heads  # stream -> (seq, hash) of its last matched transfer
    last_id = 0
    while True:
        cursor.execute(
            f"SELECT id, stream, seq, idempotency_key, code, {stamp}, digest, prev_hash, hash "
            f"FROM ledger_transfers WHERE id > {mark} ORDER BY id LIMIT {mark}",
            (last_id, batch),
        )
        transfers = cursor.fetchall()
        if not transfers:
            return
        postings: dict[int, list[tuple[str, str, int]]] = defaultdict(list)
        cursor.execute(
            "SELECT transfer_id, account_id, asset, amount FROM ledger_postings "
            f"WHERE transfer_id > {mark} AND transfer_id <= {mark}",
            (last_id, transfers[-1][0]),
        )
        for transfer_id, account_id, asset, units in cursor.fetchall():
            postings[transfer_id].append((addresses.get(account_id, "?"), asset, int(units)))
        no_postings: list[tuple[str, str, int]] = []
        for (
            transfer_id,
            stream,
            seq,
            key,
            code,
            created_at,
            stored,
            prev_hash,
            stored_hash,
        ) in transfers:
            head = heads.get(stream)
            at, prev = head if head else (0, stream_genesis(stream))
            # transfer_digest, inlined: this loop runs once per transfer of the ledger
            body = "\n".join(
                [f"{a}|{s}|{u}" for a, s, u in sorted(postings.get(transfer_id, no_postings))]
            )
            digest = sha256(f"{key}\n{code}\n{body}".encode()).hexdigest()
            report.checked += 1
            if (
                seq != at + 1
                or prev_hash != prev
                or digest != stored
                or hasher(prev, seq, created_at, digest) != stored_hash
            ):
                report._break(
                    stream, seq, _problem(stream, seq, at + 1, prev_hash != prev, digest != stored)
                )
                return
            recorded = expected.get((stream, seq))
            if recorded is not None and recorded[0] != stored_hash:
                report._break(
                    stream, seq, f"stream {stream} seq {seq}: {recorded[1]} records another hash"
                )
                return
            heads[stream] = (seq, stored_hash)
        last_id = transfers[-1][0]
