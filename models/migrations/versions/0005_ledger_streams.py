"""ledger streams: one hash chain per stream, anchored into a root chain; balance stripes

- ``ledger_transfers`` gains ``stream`` (existing history: stream 0, whose genesis is the old
  chain's, so every stored hash stays valid); ``seq`` becomes the position in the stream, unique
  per (stream, seq); the unique index on ``hash`` goes (it cost every insert and guarded nothing
  that the chain does not).
- ``ledger_chain_head`` (one row, id 1) becomes ``ledger_chain_heads`` (one row per stream; the old
  head is stream 0's; the row of stream -1 is the root chain's head).
- ``ledger_anchors`` (the root chain, append-only) and ``ledger_balance_stripes`` (each stream's
  part of the shared accounts) are new; ``ledger_chain_verifications`` gains
  ``first_broken_stream``.

On SQLite the transfers table is rebuilt (a table constraint cannot be dropped there): its
append-only triggers are dropped and created again around it (``copytrade.migrate`` turns foreign
keys off for the step and checks them before it commits).

Revision ID: 0005
Revises: 0006
Create Date: 2026-12-07 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.ledger
import models.types

revision: str = "0005"
down_revision: str | None = "0006"  # written as "0002"; re-chained after main's 0004, 0006
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _transfer_triggers(sqlite: bool, create: bool) -> None:
    if create:
        for statement in models.ledger.immutability_ddl("sqlite" if sqlite else "postgresql"):
            if " ON ledger_transfers " in statement:
                op.execute(sa.text(statement))
    elif sqlite:
        for action in ("update", "delete"):
            op.execute(sa.text(f"DROP TRIGGER IF EXISTS trg_ledger_transfers__no_{action}"))


def upgrade() -> None:
    bind = op.get_bind()
    sqlite = bind.dialect.name == "sqlite"
    if sqlite:
        _transfer_triggers(sqlite, create=False)
    with op.batch_alter_table("ledger_transfers", recreate="auto") as batch_op:
        batch_op.add_column(sa.Column("stream", sa.Integer(), server_default="0", nullable=False))
        batch_op.drop_constraint("uq_ledger_transfers__seq", type_="unique")
        batch_op.drop_constraint("uq_ledger_transfers__hash", type_="unique")
        batch_op.create_unique_constraint("uq_ledger_transfers__stream_seq", ["stream", "seq"])
    if sqlite:
        _transfer_triggers(sqlite, create=True)

    op.create_table(
        "ledger_chain_heads",
        sa.Column("stream", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("last_hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("stream", name=op.f("pk_ledger_chain_heads")),
    )
    op.execute(
        sa.text(
            "INSERT INTO ledger_chain_heads (stream, last_seq, last_hash) "
            "SELECT 0, last_seq, last_hash FROM ledger_chain_head WHERE id = 1"
        )
    )
    op.execute(  # the root chain's head: no anchor yet
        sa.text(
            "INSERT INTO ledger_chain_heads (stream, last_seq, last_hash) VALUES (-1, 0, :h)"
        ).bindparams(h=models.ledger.GENESIS_HASH)
    )
    op.drop_table("ledger_chain_head")

    op.create_table(
        "ledger_anchors",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("created_at", models.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("heads", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_anchors")),
        sa.UniqueConstraint("seq", name=op.f("uq_ledger_anchors__seq")),
    )
    for statement in models.ledger.immutability_ddl(bind.dialect.name, models.ledger.ANCHOR_TABLES):
        op.execute(sa.text(statement))
    op.create_table(
        "ledger_balance_stripes",
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("stream", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("balance", models.types.Amount(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["ledger_accounts.id"],
            name=op.f("fk_ledger_balance_stripes__account_id__ledger_accounts"),
        ),
        sa.PrimaryKeyConstraint("account_id", "stream", name=op.f("pk_ledger_balance_stripes")),
    )
    with op.batch_alter_table("ledger_chain_verifications") as batch_op:
        batch_op.add_column(sa.Column("first_broken_stream", sa.Integer(), nullable=True))


def downgrade() -> None:
    """Back to one chain: only possible while every transfer is in stream 0."""
    bind = op.get_bind()
    sqlite = bind.dialect.name == "sqlite"
    others = bind.execute(
        sa.text(
            "SELECT (SELECT COUNT(*) FROM ledger_transfers WHERE stream <> 0) "
            "+ (SELECT COUNT(*) FROM ledger_balance_stripes)"
        )
    ).scalar()
    if others:
        raise RuntimeError(
            "ledger_transfers: transfers outside stream 0 (or balance stripes) exist; "
            "a single-chain ledger cannot hold them, so migration 0005 cannot be undone"
        )
    with op.batch_alter_table("ledger_chain_verifications") as batch_op:
        batch_op.drop_column("first_broken_stream")
    op.drop_table("ledger_balance_stripes")
    op.drop_table("ledger_anchors")  # and its append-only triggers
    op.create_table(
        "ledger_chain_head",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("last_hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_chain_head")),
    )
    op.execute(
        sa.text(
            "INSERT INTO ledger_chain_head (id, last_seq, last_hash) "
            "SELECT 1, last_seq, last_hash FROM ledger_chain_heads WHERE stream = 0"
        )
    )
    op.drop_table("ledger_chain_heads")
    if sqlite:
        _transfer_triggers(sqlite, create=False)
    with op.batch_alter_table("ledger_transfers", recreate="auto") as batch_op:
        batch_op.drop_constraint("uq_ledger_transfers__stream_seq", type_="unique")
        batch_op.create_unique_constraint("uq_ledger_transfers__hash", ["hash"])
        batch_op.create_unique_constraint("uq_ledger_transfers__seq", ["seq"])
        batch_op.drop_column("stream")
    if sqlite:
        _transfer_triggers(sqlite, create=True)
