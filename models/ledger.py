"""The double-entry ledger: accounts, transfers and postings (vocabulary of TigerBeetle/Formance).

Every transfer's postings sum to zero per asset (R-LED-1); an account's stored balance equals the
sum of its postings (R-LED-2); every transfer carries the hash of its content and of the previous
transfer of its stream, and the stream heads are anchored into a root chain (R-X-4). History is
immutable: corrections are new transfers.

Streams: each writer (an engine shard, settlement) posts into a stream of its own, so writers on
different streams lock different rows — the stream's head, the accounts they own, and their own
stripe of the shared counterparty accounts (``ledger_balance_stripes``) — and never wait for one
another. Stream 0 is the default and holds all history from before streams (migration 0005).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    event,
    insert,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import Base
from models.types import Amount, UtcDateTime, utcnow


class LedgerAccount(Base):
    """One balance of one asset at a segmented address (``follower:<copy_id>:cash``, ``platform:fees``).

    For a shared account (``exchange:``, ``external:``, ``platform:``; see ``STRIPED_KINDS``)
    ``balance`` is stream 0's part; every other stream keeps its part in a stripe, and the
    account's balance is the sum of both.
    """

    __tablename__ = "ledger_accounts"
    __table_args__ = (UniqueConstraint("address", "asset"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    address: Mapped[str] = mapped_column(String(128))
    asset: Mapped[str] = mapped_column(String(16))
    allow_negative: Mapped[bool] = mapped_column(Boolean, default=False)
    balance: Mapped[Decimal] = mapped_column(Amount, default=Decimal(0))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class LedgerBalanceStripe(Base):
    """One stream's part of a shared account's balance (the account row holds stream 0's part).

    Every fill moves money through ``exchange:<venue>`` and ``platform:fees``; one balance row
    for them would make every engine shard wait for the others' transactions on that row.
    """

    __tablename__ = "ledger_balance_stripes"

    account_id: Mapped[int] = mapped_column(ForeignKey("ledger_accounts.id"), primary_key=True)
    stream: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    balance: Mapped[Decimal] = mapped_column(Amount, default=Decimal(0))


class LedgerTransfer(Base):
    """A money movement: its idempotency key, why (``code``), and its place in its stream's chain.

    ``seq`` is the position in the stream (1, 2, … per stream); (stream, seq) is unique. The hash
    is not unique-indexed: a collision is impossible in practice and the index cost every insert.
    """

    __tablename__ = "ledger_transfers"
    __table_args__ = (UniqueConstraint("stream", "seq"), Index(None, "code", "created_at"))

    id: Mapped[int] = mapped_column(primary_key=True)
    stream: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    seq: Mapped[int] = mapped_column(BigInteger)
    idempotency_key: Mapped[str] = mapped_column(String(160), unique=True)
    code: Mapped[str] = mapped_column(
        String(32)
    )  # deposit | copy_fill | trading_fee | fee_rebate | profit_share …
    memo: Mapped[str] = mapped_column(Text, default="")
    refs: Mapped[dict | None] = mapped_column(JSON)  # e.g. {"copy_id": 3, "follower_fill_id": 9}
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    digest: Mapped[str] = mapped_column(String(64))  # sha256 of the content; conflict check
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))  # sha256(prev_hash, seq, created_at, digest)

    postings: Mapped[list[LedgerPosting]] = relationship(order_by="LedgerPosting.id")


class LedgerPosting(Base):
    """One entry of a transfer: a signed amount of one asset on one account."""

    __tablename__ = "ledger_postings"
    # Covering indexes: validation sums postings per transfer and asset (R-LED-1) and per account
    # (R-LED-2) over the whole ledger; reading the amounts from the index, not from every row,
    # makes those scans sequential (migration 0002).
    __table_args__ = (
        Index(None, "transfer_id", "asset", "amount"),
        Index(None, "account_id", "amount"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    transfer_id: Mapped[int] = mapped_column(ForeignKey("ledger_transfers.id"))
    account_id: Mapped[int] = mapped_column(ForeignKey("ledger_accounts.id"))
    asset: Mapped[str] = mapped_column(String(16))
    amount: Mapped[Decimal] = mapped_column(Amount)


class LedgerChainHead(Base):
    """One row per stream, locked by the stream's writer: its last sequence number and hash.

    The row of stream -1 is the root chain's head: the last anchor's seq and hash.
    """

    __tablename__ = "ledger_chain_heads"

    stream: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    last_hash: Mapped[str] = mapped_column(String(64))


class LedgerAnchor(Base):
    """A link of the root chain: the head (seq and hash) of every stream at one instant.

    Anchors are what catch a stream cut short: once anchored, a stream's transfers up to the
    anchored seq cannot be removed (nor the stream's head moved back) without breaking the root
    chain. ``heads`` is ``stream:seq:hash`` per stream, by stream, ``;``-separated.
    """

    __tablename__ = "ledger_anchors"

    id: Mapped[int] = mapped_column(primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    heads: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))  # sha256(prev_hash, seq, created_at, heads)


GENESIS_HASH = "0" * 64
IMMUTABLE_TABLES = ("ledger_transfers", "ledger_postings")  # since migration 0001
ANCHOR_TABLES = ("ledger_anchors",)  # since migration 0005


def immutability_ddl(dialect: str, tables: tuple[str, ...] = IMMUTABLE_TABLES) -> list[str]:
    """Return the statements that make ledger history append-only on ``dialect`` (R-X-4)."""
    statements = []
    for table in tables:
        if dialect == "postgresql":
            statements.append(
                "CREATE OR REPLACE FUNCTION ledger_history_is_immutable() RETURNS trigger AS $$ "
                "BEGIN RAISE EXCEPTION 'ledger history is immutable: % on %', TG_OP, TG_TABLE_NAME; "
                "END; $$ LANGUAGE plpgsql"
            )
            statements.append(
                f"CREATE TRIGGER trg_{table}__immutable BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION ledger_history_is_immutable()"
            )
        elif dialect == "sqlite":
            for op in ("UPDATE", "DELETE"):
                statements.append(
                    f"CREATE TRIGGER trg_{table}__no_{op.lower()} BEFORE {op} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, 'ledger history is immutable: {op} on {table}'); END"
                )
    return statements


def _after_create(table_name: str):
    def listener(target, connection, **_kw):
        for statement in immutability_ddl(
            connection.dialect.name, IMMUTABLE_TABLES + ANCHOR_TABLES
        ):
            if f" ON {table_name} " in statement or statement.startswith(
                "CREATE OR REPLACE FUNCTION"
            ):
                connection.execute(text(statement))

    return listener


event.listen(LedgerTransfer.__table__, "after_create", _after_create("ledger_transfers"))
event.listen(LedgerPosting.__table__, "after_create", _after_create("ledger_postings"))
event.listen(LedgerAnchor.__table__, "after_create", _after_create("ledger_anchors"))
event.listen(
    LedgerChainHead.__table__,
    "after_create",
    lambda target, connection, **_kw: connection.execute(
        insert(target).values(
            [
                {"stream": stream, "last_seq": 0, "last_hash": GENESIS_HASH}
                for stream in (-1, 0)  # the root chain, stream 0
            ]
        )
    ),
)
