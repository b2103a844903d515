"""ledger postings: covering indexes for validation

The single-column indexes on ``ledger_postings.transfer_id`` and ``account_id`` become covering
indexes ``(transfer_id, asset, amount)`` and ``(account_id, amount)``: the ledger_integrity
checks that sum postings per transfer and asset (R-LED-1) or per account (R-LED-2) then read the
index alone. Each index still has one entry per posting, so posting costs about the same.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 14:40:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_ledger_postings__transfer_id_asset_amount",
        "ledger_postings",
        ["transfer_id", "asset", "amount"],
    )
    op.create_index(
        "ix_ledger_postings__account_id_amount", "ledger_postings", ["account_id", "amount"]
    )
    op.drop_index("ix_ledger_postings__transfer_id", table_name="ledger_postings")
    op.drop_index("ix_ledger_postings__account_id", table_name="ledger_postings")


def downgrade() -> None:
    op.create_index("ix_ledger_postings__account_id", "ledger_postings", ["account_id"])
    op.create_index("ix_ledger_postings__transfer_id", "ledger_postings", ["transfer_id"])
    op.drop_index("ix_ledger_postings__account_id_amount", table_name="ledger_postings")
    op.drop_index("ix_ledger_postings__transfer_id_asset_amount", table_name="ledger_postings")
