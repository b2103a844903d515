"""One record of why a copy stopped: its ``copy_stop_events`` row (R-COPY-3/5, R-LEAD-10, R-SET-5).

Every stop path writes it in the same transaction as ``copies.status = 'stopped'``: the engine's
stop-loss / take-profit and ``engine stop-copy`` (``closing.store_stop``), the follower's
``copies stop`` and a portfolio close (``platform``). Its ``trigger`` is the settlement trigger of
``copytrade.domain.triggers`` and its ``reason`` the copy's ``stop_reason``, so the stop and the
settlement it triggers use one vocabulary; settlement sets ``settled_at`` when the copy's final
event cycle runs.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from copytrade.domain.money import UNIT
from copytrade.domain.triggers import trigger_of
from models import CopyStopEvent
from models.types import utcnow


def add_stop_event(
    session: Session,
    copy_id: int,
    reason: str,
    *,
    pnl: Decimal | None = None,
    threshold: Decimal | None = None,
    at: datetime | None = None,
) -> CopyStopEvent | None:
    """Add the stop event of ``copy_id`` stopped for ``reason`` unless it has one (one per copy)."""
    if session.scalar(select(CopyStopEvent.id).where(CopyStopEvent.copy_id == copy_id)):
        return None
    event = CopyStopEvent(
        copy_id=copy_id,
        trigger=trigger_of(reason).value,
        cumulative_pnl=pnl.quantize(UNIT) if pnl is not None else None,
        threshold=threshold.quantize(UNIT) if threshold is not None else None,
        reason=reason,
        at=at or utcnow(),
    )
    session.add(event)
    return event
