"""A lead portfolio's fill history as stored: the leader's position from it, and the close-only
gate while it is known incomplete (R-IN-3).

The leader's position in a symbol is the symbol's baseline (where the engine started following
it) plus every stored live fill above the baseline, in trade-id order; a portfolio with an open
gap (``ingest_gaps``) copies close-only: openings are skipped with ``ingest_incomplete``,
reductions are followed. Reads only: the gaps are opened and resolved in ``completeness``.
"""

from __future__ import annotations

from decimal import Decimal

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from copytrade.domain.money import ZERO
from copytrade.domain.sizing import REASON_CODES, REASON_TEXT, CopyBook, Sizing
from copytrade.engine.ingest import position_after
from models import LeaderFill, LeaderWatermark
from models.trading import IngestGap

LIVE_SOURCES = ("stream", "backfill", "completeness")  # not ``import``: history files

PAUSE_CODE = "ingest_incomplete"
PAUSE_TEXT = (
    "the leader's fill history is incomplete or its position drifts from the exchange's; "
    "copying is close-only until it is complete (R-IN-3)"
)
PAUSED = -1  # a sizing outcome code next to sizing's SKIP_* codes


def paused_sizing(book: CopyBook) -> Sizing:
    """Return the outcome of an opening leg while the portfolio is close-only: every copy skipped."""
    n = len(book.copy_ids)
    zeros = np.zeros(n, dtype=np.int64)
    return Sizing(book.copy_ids, zeros, zeros.copy(), np.full(n, PAUSED, dtype=np.int8), False)


def skip_reason(code: int) -> tuple[str, str]:
    """Return (reason code, reason) of a skipped copy."""
    if code == PAUSED:
        return PAUSE_CODE, PAUSE_TEXT
    return REASON_CODES[code], REASON_TEXT[code]


def derive_positions(
    session: Session, portfolio_id: int, mode: str
) -> tuple[dict[str, Decimal], dict[str, int]]:
    """Return (position, baseline trade id) per symbol, from the baselines and the stored fills."""
    positions: dict[str, Decimal] = {}
    baselines: dict[str, int] = {}
    for wm in session.scalars(
        select(LeaderWatermark).where(LeaderWatermark.portfolio_id == portfolio_id)
    ):
        positions[wm.symbol] = wm.baseline_position
        baselines[wm.symbol] = wm.baseline_trade_id
    fills: dict[str, list[tuple[int, str, Decimal]]] = {}
    for symbol, trade_id, side, quantity in session.execute(
        select(
            LeaderFill.symbol, LeaderFill.exchange_trade_id, LeaderFill.side, LeaderFill.quantity
        ).where(LeaderFill.portfolio_id == portfolio_id, LeaderFill.source.in_(LIVE_SOURCES))
    ):
        if trade_id.isdigit() and int(trade_id) > baselines.get(symbol, 0):
            fills.setdefault(symbol, []).append((int(trade_id), side, quantity))
    for symbol, rows in fills.items():
        position = positions.get(symbol, ZERO)
        for _, side, quantity in sorted(rows):
            position = position_after(mode, side, quantity, position)
        positions[symbol] = position
    return positions, baselines


def open_gaps(session: Session, portfolio_id: int) -> list[IngestGap]:
    return list(
        session.scalars(
            select(IngestGap)
            .where(IngestGap.portfolio_id == portfolio_id, IngestGap.resolved_at.is_(None))
            .order_by(IngestGap.id)
        )
    )
