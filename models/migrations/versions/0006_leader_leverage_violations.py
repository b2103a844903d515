"""leader leverage violations (R-LEAD-8)

A leader position opened above 5× while the portfolio's AUM is at or above 100,000 USD is recorded
in ``leader_leverage_violations`` (the platform cannot refuse an order on an exchange it does not
run) and shown with the portfolio.

Revision ID: 0006
Revises: 0004
Create Date: 2026-12-07 09:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.types

revision: str = "0006"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "leader_leverage_violations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("portfolio_id", sa.Integer(), nullable=False),
        sa.Column("symbol", sa.String(length=32), nullable=False),
        sa.Column("leverage", sa.Integer(), nullable=False),
        sa.Column("aum", models.types.Amount(), nullable=False),
        sa.Column("exchange_ref", sa.String(length=64), nullable=False),
        sa.Column("opened_at", models.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", models.types.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["portfolio_id"],
            ["lead_portfolios.id"],
            name=op.f("fk_leader_leverage_violations__portfolio_id__lead_portfolios"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_leader_leverage_violations")),
        sa.UniqueConstraint(
            "portfolio_id",
            "symbol",
            "exchange_ref",
            name=op.f("uq_leader_leverage_violations__portfolio_id_symbol_exchange_ref"),
        ),
    )
    with op.batch_alter_table("leader_leverage_violations", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_leader_leverage_violations__portfolio_id"),
            ["portfolio_id"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("leader_leverage_violations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_leader_leverage_violations__portfolio_id"))
    op.drop_table("leader_leverage_violations")
