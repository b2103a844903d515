"""Stage 6, guards: daily loss pause (R-X-3), position TP/SL (R-COPY-12), copy stops (R-COPY-3).

Run after every leader fill and on every mark update (``marks_feed``) at the engine's latest
prices; the rules themselves are in ``copytrade.engine.risk``, the closing orders go through the
engine's ``close_position`` / ``stop_copy`` (``closing``).
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import TYPE_CHECKING

from sqlalchemy import update

from copytrade import clock
from copytrade.domain.money import ZERO
from copytrade.engine import risk
from copytrade.engine.state import CopyState, PortfolioState, next_utc_midnight
from models import AuditEntry, Copy

if TYPE_CHECKING:
    from copytrade.engine.core import CopyEngine


def add_day_pnl(copy: CopyState, amount: Decimal) -> None:
    """Add a result to the copy's day (UTC) for the daily loss limit (R-X-3)."""
    today = clock.now().date()
    if copy.day != today:
        copy.day, copy.day_pnl = today, ZERO
    copy.day_pnl += amount


def unpause_expired(ps: PortfolioState) -> None:
    """Copies whose daily loss pause has run out size again."""
    now = clock.now()
    for i, c in enumerate(ps.copies):
        if c.paused_until and c.paused_until <= now and ps.book.paused[i]:
            ps.book.paused[i] = False


async def run(engine: CopyEngine, ps: PortfolioState, symbols: str | Iterable[str]) -> None:
    """Pause, close positions and stop copies as the rules say at ``engine.prices``."""
    symbols = [symbols] if isinstance(symbols, str) else list(symbols)
    pauses = _pause_daily_losers(ps)
    closes = risk.position_closes(ps.copies, symbols, engine.prices)
    stops = []
    watched = risk.watched(ps)
    if watched:
        with engine.sf() as session:
            paid = risk.shares_paid(session, watched)
        stops = risk.copy_stops(watched, engine.prices, paid)
    stopping = {s.copy.copy_id for s in stops}
    closes = [(c, sym) for c, sym in closes if c.copy_id not in stopping]
    if pauses:
        _store_pauses(engine, pauses)
    for c, symbol in closes:
        await engine.close_position(c.copy_id, symbol, kind="close", ps=ps)
    for stop in stops:
        await engine.stop_copy(
            stop.copy.copy_id,
            stop.trigger.value,
            pnl=stop.result,
            threshold=stop.threshold,
            ps=ps,
        )


def _pause_daily_losers(ps: PortfolioState) -> list[CopyState]:
    """Pause until the next UTC midnight the copies whose day reached their loss limit."""
    now = clock.now()
    pauses = []
    for i, c in enumerate(ps.copies):
        if c.daily_loss_limit and c.day_pnl <= -c.daily_loss_limit and not ps.book.paused[i]:
            c.paused_until = next_utc_midnight(now)
            ps.book.paused[i] = True
            pauses.append(c)
    return pauses


def _store_pauses(engine: CopyEngine, pauses: list[CopyState]) -> None:
    with engine.sf() as session, session.begin():
        for c in pauses:
            session.execute(
                update(Copy).where(Copy.id == c.copy_id).values(paused_until=c.paused_until)
            )
            session.add(
                AuditEntry(
                    actor="system",
                    action="copy_paused",
                    subject_type="copy",
                    subject_id=str(c.copy_id),
                    rule="R-X-3",
                    reason=f"daily loss {c.day_pnl} reached the limit {c.daily_loss_limit}",
                )
            )
