"""ingest completeness: watermark baselines and known gaps (R-IN-3)

``leader_watermarks`` gains the baseline the engine started from (``baseline_trade_id``,
``baseline_position``): the leader's position is that baseline plus every stored fill with a
higher trade id, in trade-id order. On a ledger with history the baseline is put just below the
oldest stored live fill of each symbol, with the position then (the stored position less those
fills), so the derived position equals the stored one and a late older fill is still accepted.
``ingest_gaps`` records known holes and drifts; a portfolio with an open one copies close-only.

Revision ID: 0003
Revises: 0005 (written as 0002; re-chained after main's 0004, 0006, 0005)
Create Date: 2026-12-07 09:00:00
"""

from collections.abc import Sequence
from decimal import Decimal

import sqlalchemy as sa
from alembic import op

import models.types

revision: str = "0003"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("leader_watermarks", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("baseline_trade_id", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch_op.add_column(
            sa.Column(
                "baseline_position", models.types.Amount(), nullable=False, server_default="0"
            )
        )
    _baseline_existing()
    op.create_table(
        "ingest_gaps",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("portfolio_id", sa.Integer(), nullable=False),
        sa.Column("symbol", sa.String(length=32), nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("fills", sa.Integer(), nullable=False),
        sa.Column("opened_at", models.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", models.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("resolution", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "kind in ('backfill_failed', 'missing_fills', 'position_drift')",
            name=op.f("ck_ingest_gaps__kind"),
        ),
        sa.ForeignKeyConstraint(
            ["portfolio_id"],
            ["lead_portfolios.id"],
            name=op.f("fk_ingest_gaps__portfolio_id__lead_portfolios"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ingest_gaps")),
    )
    with op.batch_alter_table("ingest_gaps", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_ingest_gaps__portfolio_id_resolved_at"),
            ["portfolio_id", "resolved_at"],
            unique=False,
        )


def _baseline_existing() -> None:
    """Put each existing watermark's baseline just below its oldest stored live fill."""
    bind = op.get_bind()
    amount = models.types.Amount()
    marks = bind.execute(
        sa.text("SELECT id, portfolio_id, symbol, last_trade_id, position FROM leader_watermarks")
    ).all()
    for mark_id, portfolio_id, symbol, last_trade_id, position_units in marks:
        fills = bind.execute(
            sa.text(
                "SELECT exchange_trade_id, side, quantity FROM leader_fills "
                "WHERE portfolio_id = :p AND symbol = :s AND source <> 'import'"
            ),
            {"p": portfolio_id, "s": symbol},
        ).all()
        ids = [int(t) for t, _, _ in fills if str(t).isdigit()]
        if not ids:
            baseline_id, baseline_units = last_trade_id, position_units
        else:
            position = amount.process_result_value(position_units, bind.dialect) or Decimal(0)
            for trade_id, side, quantity_units in fills:
                if str(trade_id).isdigit():
                    quantity = amount.process_result_value(quantity_units, bind.dialect)
                    position -= quantity if side == "buy" else -quantity
            baseline_id = min(ids) - 1
            baseline_units = amount.process_bind_param(position, bind.dialect)
        bind.execute(
            sa.text(
                "UPDATE leader_watermarks SET baseline_trade_id = :b, baseline_position = :p "
                "WHERE id = :i"
            ),
            {"b": baseline_id, "p": baseline_units, "i": mark_id},
        )


def downgrade() -> None:
    with op.batch_alter_table("ingest_gaps", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ingest_gaps__portfolio_id_resolved_at"))
    op.drop_table("ingest_gaps")
    with op.batch_alter_table("leader_watermarks", schema=None) as batch_op:
        batch_op.drop_column("baseline_position")
        batch_op.drop_column("baseline_trade_id")
