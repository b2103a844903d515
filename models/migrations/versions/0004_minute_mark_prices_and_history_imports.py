"""mark prices at minute grain; leader history imports

``mark_prices`` becomes one table for the whole platform at minute grain: (market, symbol,
marked_at) unique, price and the interval's quote volume, and where the mark came from. Rows of
the old daily table are kept as the mark of their day's last minute (23:59 UTC), in the ``usdm``
market for symbols quoted in USDT (the futures candles) and ``spot`` otherwise, with source
``candles:<file>``.

``leader_history_imports`` records each import of past fills and the day from which the
portfolio's capital counts (docs/metrics.md).

Revision ID: 0004
Revises: 0002
Create Date: 2026-12-07 09:00:00
"""

from collections.abc import Sequence
from datetime import UTC, datetime, time

import sqlalchemy as sa
from alembic import op

import models.types

revision: str = "0004"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_LAST_MINUTE = time(23, 59)


def _create_minute_table() -> sa.Table:
    return op.create_table(
        "mark_prices",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("symbol", sa.String(length=32), nullable=False),
        sa.Column("market", sa.String(length=8), nullable=False),
        sa.Column("marked_at", models.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("price", models.types.Amount(), nullable=False),
        sa.Column("quote_volume", models.types.Amount(), nullable=False),
        sa.Column("source", sa.String(length=128), nullable=False),
        sa.Column("recorded_at", models.types.UtcDateTime(timezone=True), nullable=False),
        sa.CheckConstraint("market in ('spot', 'usdm')", name=op.f("ck_mark_prices__market")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mark_prices")),
        sa.UniqueConstraint(
            "market", "symbol", "marked_at", name=op.f("uq_mark_prices__market_symbol_marked_at")
        ),
    )


def _create_daily_table() -> sa.Table:
    return op.create_table(
        "mark_prices",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("symbol", sa.String(length=32), nullable=False),
        sa.Column("price_date", sa.Date(), nullable=False),
        sa.Column("price", models.types.Amount(), nullable=False),
        sa.Column("quote_volume", models.types.Amount(), nullable=False),
        sa.Column("candles", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=128), nullable=False),
        sa.Column("loaded_at", models.types.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mark_prices")),
        sa.UniqueConstraint("symbol", "price_date", name=op.f("uq_mark_prices__symbol_price_date")),
    )


def upgrade() -> None:
    bind = op.get_bind()
    # The table is small (one row per market and day); it is read whole, rebuilt and refilled,
    # which works the same on SQLite (no ALTER of constraints) and PostgreSQL.
    old = bind.execute(
        sa.text(
            "select symbol, price_date, price, quote_volume, source, loaded_at from mark_prices"
        )
    ).all()
    op.drop_table("mark_prices")
    table = _create_minute_table()
    op.create_index(
        op.f("ix_mark_prices__symbol_marked_at"), "mark_prices", ["symbol", "marked_at"]
    )
    if old:
        op.bulk_insert(
            table,
            [
                {
                    "symbol": symbol,
                    "market": "usdm" if symbol.endswith("USDT") else "spot",
                    "marked_at": datetime.combine(_as_date(day), _LAST_MINUTE, tzinfo=UTC),
                    "price": models.types.Amount().process_result_value(price, bind.dialect),
                    "quote_volume": models.types.Amount().process_result_value(
                        volume, bind.dialect
                    ),
                    "source": f"candles:{source}"[:128],
                    "recorded_at": models.types.UtcDateTime().process_result_value(
                        loaded, bind.dialect
                    )
                    if not isinstance(loaded, str)
                    else datetime.fromisoformat(loaded).replace(tzinfo=UTC),
                }
                for symbol, day, price, volume, source, loaded in old
            ],
        )
    op.create_table(
        "leader_history_imports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("portfolio_id", sa.Integer(), nullable=False),
        sa.Column("file_name", sa.String(length=128), nullable=False),
        sa.Column("file_sha256", sa.String(length=64), nullable=False),
        sa.Column("first_fill_at", models.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("last_fill_at", models.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("fills", sa.Integer(), nullable=False),
        sa.Column("capital_since", sa.Date(), nullable=False),
        sa.Column("imported_at", models.types.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["portfolio_id"],
            ["lead_portfolios.id"],
            name=op.f("fk_leader_history_imports__portfolio_id__lead_portfolios"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_leader_history_imports")),
        sa.UniqueConstraint(
            "portfolio_id",
            "file_sha256",
            "capital_since",
            name=op.f("uq_leader_history_imports__portfolio_id_file_sha256_capital_since"),
        ),
    )


def _as_date(value):
    from datetime import date

    return date.fromisoformat(value) if isinstance(value, str) else value


def downgrade() -> None:
    op.drop_table("leader_history_imports")
    bind = op.get_bind()
    # Back to one row per symbol and day: the day's last mark, its summed quote volume.
    minute = bind.execute(
        sa.text("select symbol, marked_at, price, quote_volume, source from mark_prices")
    ).all()
    days: dict = {}
    for symbol, marked_at, price, volume, source in minute:
        at = marked_at if not isinstance(marked_at, str) else datetime.fromisoformat(marked_at)
        key = (symbol, at.date())
        last = days.get(key)
        total = (last[2] if last else 0) + volume
        if last is None or at >= last[0]:
            days[key] = [at, price, total, source, (last[4] if last else 0) + 1]
        else:
            last[2], last[4] = total, last[4] + 1
    op.drop_index(op.f("ix_mark_prices__symbol_marked_at"), table_name="mark_prices")
    op.drop_table("mark_prices")
    table = _create_daily_table()
    if days:
        now = datetime.now(UTC)
        op.bulk_insert(
            table,
            [
                {
                    "symbol": symbol,
                    "price_date": day,
                    "price": models.types.Amount().process_result_value(price, bind.dialect),
                    "quote_volume": models.types.Amount().process_result_value(total, bind.dialect),
                    "candles": count,
                    "source": source.removeprefix("candles:"),
                    "loaded_at": now,
                }
                for (symbol, day), (_at, price, total, source, count) in days.items()
            ],
        )
