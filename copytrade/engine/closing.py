"""Stopped copies: closed at market, kept until flat, then announced so they settle (R-SET-5).

A copy stops because its follower stopped it (``copies stop`` or ``engine stop-copy``), its
stop-loss or take-profit fired (``risk``), or its portfolio closed (R-LEAD-10). Whoever stopped
it, the engine closes every open position at market (reduce-only on futures; on spot the coins
are sold back to the settlement asset, as Binance's copy trading does when a copy ends) with a
recorded order each, and keeps the copy in ``engine.closing`` until its positions are flat: a
rejected or unknown close is tried again at the next sweep. Once flat, ``engine.on_stopped``
announces the stop (the Prefect flow emits ``copytrade.copy.stopped``, whose automation runs
``settle``; the CLI settles directly), so the copy settles within seconds with no operator.
Announcing twice pays nothing twice: the event settlement is keyed by trigger and copy.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import select, update

from copytrade.domain.triggers import parse_trigger, stop_reason
from copytrade.engine.persist import ExtraOrder
from copytrade.engine.state import CopyState, PortfolioState
from copytrade.engine.stop_events import add_stop_event
from models import AuditEntry, Copy
from models.types import utcnow

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 20  # then the copy is left to the operator (logged; the sweep stops resending)


@dataclass(slots=True)
class Closing:
    portfolio_id: int
    copy: CopyState
    reason: str | None
    attempts: int = 0


def open_orders(ps: PortfolioState, copy: CopyState, engine) -> list[ExtraOrder]:
    """One closing order per open position (reduce-only on futures)."""
    orders = []
    for symbol, pos in copy.positions.items():
        market = engine.markets(ps).get(symbol)
        qty = market.round_amount(abs(pos.quantity)) if market else abs(pos.quantity)
        if qty > 0:
            side = "sell" if pos.quantity > 0 else "buy"
            orders.append(ExtraOrder(copy, None, symbol, side, qty, ps.mode == "futures"))
    return orders


async def close_position(
    engine,
    ps: PortfolioState,
    index: int,
    symbol: str,
    kind: str,
    quantity: Decimal | None,
) -> list:
    """Close (all or ``quantity`` of) a copy's position in ``symbol`` with a recorded order."""
    copy = ps.copies[index]
    pos = copy.positions.get(symbol)
    if not pos or not pos.quantity:
        return []
    qty = abs(pos.quantity) if quantity is None else min(quantity, abs(pos.quantity))
    market = engine.markets(ps).get(symbol)
    if market is not None:
        qty = market.round_amount(qty)
    if qty <= 0:
        return []
    side = "sell" if pos.quantity > 0 else "buy"
    order = ExtraOrder(copy, index, symbol, side, qty, ps.mode == "futures")
    intents = engine._persist_extra(ps, [order], kind)
    results = await engine._send(intents)
    engine.record(ps, intents, results)
    return intents


def store_stop(
    engine, copy_id: int, trigger: str, pnl: Decimal, threshold: Decimal | None
) -> str | None:
    """Mark the copy stopped with its stop event and audit entry; return the stop reason."""
    rule = "R-COPY-3" if trigger in ("stop_loss", "take_profit") else "R-COPY-5"
    reason = stop_reason(
        parse_trigger(trigger),
        f"result after fees and shares {pnl} (threshold {threshold})"
        if threshold is not None
        else None,
    )
    with engine.sf() as session, session.begin():
        session.execute(
            update(Copy)
            .where(Copy.id == copy_id, Copy.status == "active")
            .values(status="stopped", stopped_at=utcnow(), stop_reason=reason)
        )
        add_stop_event(session, copy_id, reason, pnl=pnl, threshold=threshold)
        session.add(
            AuditEntry(
                actor="system" if rule == "R-COPY-3" else "follower",
                action="copy_stopped",
                subject_type="copy",
                subject_id=str(copy_id),
                rule=rule,
                reason=reason,
            )
        )
    return reason


async def flatten(engine, ps: PortfolioState, copy: CopyState) -> bool:
    """Send the closing orders of a stopped copy and record them; return whether it is flat."""
    orders = open_orders(ps, copy, engine)
    if orders:
        intents = engine._persist_extra(ps, orders, "stop")
        results = await engine._send(intents)
        engine.record(ps, intents, results)
    return not open_orders(ps, copy, engine)


def announce(engine, copy_id: int, reason: str | None) -> None:
    """Tell whoever settles that ``copy_id`` stopped (never raises: the sweep settles it anyway)."""
    callback = getattr(engine, "on_stopped", None)
    if callback is None:
        return
    try:
        callback(copy_id, reason)
    except Exception:
        log.exception("announcing the stop of copy %s failed; the weekly run settles it", copy_id)


async def stopped(engine, ps: PortfolioState, copy: CopyState, reason: str | None) -> None:
    """A copy left the active set stopped: close it now, keep it until flat, announce it."""
    entry = engine.closing.get(copy.copy_id) or Closing(ps.portfolio_id, copy, reason)
    engine.closing[copy.copy_id] = entry
    await _attempt(engine, ps, entry)


async def _attempt(engine, ps: PortfolioState, entry: Closing) -> None:
    entry.attempts += 1
    try:
        flat = await flatten(engine, ps, entry.copy)
    except Exception:
        log.exception("closing stopped copy %s failed", entry.copy.copy_id)
        flat = False
    if flat:
        engine.closing.pop(entry.copy.copy_id, None)
        announce(engine, entry.copy.copy_id, entry.reason)
    elif entry.attempts >= MAX_ATTEMPTS:
        engine.closing.pop(entry.copy.copy_id, None)
        log.error(
            "stopped copy %s is still not flat after %s attempts: close it by hand",
            entry.copy.copy_id,
            entry.attempts,
        )


async def retry(engine) -> None:
    """The sweep: try again to flatten every stopped copy that is not flat yet."""
    for entry in list(engine.closing.values()):
        ps = engine.portfolios.get(entry.portfolio_id)
        if ps is None:
            continue
        async with ps.lock:
            await _attempt(engine, ps, entry)


async def reload(engine, ps: PortfolioState, *, force: bool = False) -> None:
    """Reload a portfolio's copies (under its lock); a copy stopped elsewhere is closed here.

    ``copies stop`` and a portfolio close change the database only; the running engine sees the
    copy leave the active set at its next reload and closes and announces it as if it had
    stopped it itself.
    """
    before = {c.copy_id: c for c in ps.copies}
    engine.refresh_copies([ps.portfolio_id], force=force)
    active = {c.copy_id for c in ps.copies}
    gone = [c for cid, c in before.items() if cid not in active]
    if not gone:
        return
    with engine.sf() as session:
        rows = dict(
            session.execute(
                select(Copy.id, Copy.stop_reason).where(
                    Copy.id.in_([c.copy_id for c in gone]), Copy.status == "stopped"
                )
            ).all()
        )
    for copy in gone:
        if copy.copy_id in rows and copy.copy_id not in engine.closing:
            await stopped(engine, ps, copy, rows[copy.copy_id])
