"""Reconciliation on start and after every reconnect: nothing lost, nothing sent twice (R-COPY-11).

1. Every intent without an outcome (``pending``: persisted, maybe sent when the process died;
   ``unknown``: a timeout nobody could resolve yet; ``acked``: an order still open) is looked up by
   its client order id. Found → the exchange's state is adopted and recorded. Absent → left for
   the next sweep while it could still be in flight (younger than ``absent_after``, beyond the
   recvWindow), then sent if it was decided less than ``stale_after`` seconds ago or only lowers
   the follower's recorded position (a reduction or a close, however old), otherwise closed as
   skipped (``not_sent``) with the reason. A resend the exchange refuses as a duplicate
   client id means the first one exists: it is adopted at the next sweep.
   A lookup that fails leaves the intent for the next sweep. Nothing is sent without a lookup.
2. Leader fills missed while the stream was down are backfilled from ``myTrades`` by trade id,
   from each symbol's watermark, and go through the same ingest as the stream (R-IN-1). A
   backfill that fails opens a ``backfill_failed`` gap (close-only) until one succeeds.
3. On the first start for a portfolio, each symbol's watermark and baseline are set to the newest
   existing trade (history before the engine first saw the portfolio is not copied) and the
   leader's position is taken from the exchange (futures).
4. The completeness check (``completeness.check_portfolio``) compares a trailing window of the
   exchange's trades and the leader's position with what is stored (R-IN-3).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from sqlalchemy import select, update

from copytrade import clock
from copytrade.domain.fills import PositionState
from copytrade.engine.completeness import (
    WINDOW_FILLS,
    HistoryUnavailable,
    check_portfolio,
    open_gap,
    resolve_gaps,
    trades_from,
)
from copytrade.engine.dispatch import SendResult, send_one
from copytrade.engine.send import order_request
from copytrade.engine.state import CopyState, PortfolioState
from copytrade.engine.types import Intent
from copytrade.exchange.protocol import GatewayError
from models import Copy, CopyPosition, FollowerOrderIntent, LeaderFill, LeaderWatermark

if TYPE_CHECKING:
    from copytrade.engine.core import CopyEngine

log = logging.getLogger(__name__)
OPEN_STATUSES = ("pending", "sent", "unknown", "acked")
DUPLICATE_ID_CODES = ("-4116", "-2010")  # futures / spot: "ClientOrderId is duplicated"


@dataclass
class ReconcileReport:
    """What a reconciliation sweep found and did (published as the ingest flow's artifact)."""

    open_intents: int = 0
    adopted: int = 0
    resent: int = 0
    closed_not_sent: int = 0
    still_unknown: int = 0
    backfilled: int = 0
    quarantined: int = 0
    baselined: list[str] = field(default_factory=list)
    missing_found: list[str] = field(default_factory=list)  # portfolio:symbol#id now stored
    drift: list[str] = field(default_factory=list)  # leader positions that differ (R-IN-3)
    unverified: list[str] = field(default_factory=list)  # what the exchange could not answer
    close_only: list[str] = field(default_factory=list)  # portfolios with an open gap
    left_to_engines: list[str] = field(default_factory=list)  # running shards act for their own

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items()}

    @property
    def unresolved(self) -> bool:
        """Whether something is left for the operator: unknown orders, a gap or a drift."""
        return bool(self.still_unknown or self.drift or self.unverified or self.close_only)


def _copy_for(
    engine: CopyEngine, session, copy_id: int
) -> tuple[PortfolioState | None, CopyState, int | None]:
    for ps in engine.portfolios.values():
        for i, c in enumerate(ps.copies):
            if c.copy_id == copy_id:
                return ps, c, i
    # A copy that stopped since: a detached state, enough to record the outcome and fills.
    row = session.get(Copy, copy_id)
    ps = engine.portfolios.get(row.portfolio_id)
    kind = ps.mode if ps else "futures"
    state = CopyState(copy_id, row.exchange_account_id, row.allocation, row.leverage, kind)
    for pos in session.scalars(select(CopyPosition).where(CopyPosition.copy_id == copy_id)):
        state.positions[pos.symbol] = PositionState(
            pos.quantity, pos.average_price, pos.realised_pnl, pos.fees_paid, pos.accumulated
        )
    return None, state, None


def _lowers_risk(intent: FollowerOrderIntent, copy: CopyState) -> bool:
    """Whether an unsent intent only reduces the follower's recorded position (never reverses it).

    Such an order is sent however old it is: dropping it would leave every later reduction, a pro
    rata share of what the follower holds (R-COPY-4), working on a position the leader no longer
    has (found by the fault campaign: followers ~11 % above ratio after a reduction killed in
    flight aged past ``stale_after``). An opening that old is not sent: the market moved on.
    """
    held = copy.positions.get(intent.symbol)
    quantity = held.quantity if held is not None else Decimal(0)
    on_side = quantity if intent.side == "sell" else -quantity
    reduces = intent.reduce_only or copy.kind == "spot" and intent.side == "sell"
    return reduces and intent.quantity <= on_side


def _rebind(ps: PortfolioState, intents: list[Intent]) -> None:
    """Point each intent at its copy's current state and book index."""
    live = {c.copy_id: (i, c) for i, c in enumerate(ps.copies)}
    for it in intents:
        found = live.get(it.copy.copy_id)
        if found is not None:
            it.index, it.copy = found


@dataclass(slots=True)
class _Open:
    """An intent without an outcome, with the copy state it belongs to."""

    intent: FollowerOrderIntent
    traded_at: datetime | None  # the leader fill's time (None for a close, a stop or a resync)
    portfolio_id: int | None
    copy: CopyState
    index: int | None

    def as_intent(self) -> Intent:
        row = self.intent
        return Intent(
            intent_id=row.id,
            portfolio_id=self.portfolio_id,
            copy=self.copy,
            index=self.index,
            client_order_id=row.client_order_id,
            symbol=row.symbol,
            side=row.side,
            quantity=row.quantity,
            reduce_only=row.reduce_only,
            leverage=row.leverage,
            leader_fill_id=row.leader_fill_id,
            leader_price=row.leader_price,
            leader_time=self.traded_at,
            kind=row.kind,
            leg=row.leg,
        )


def _open_intents(engine: CopyEngine, portfolio_id: int | None = None) -> list[_Open]:
    """The intents without an outcome this engine may settle (not in flight, its shard's; only
    ``portfolio_id``'s when given)."""
    with engine.sf() as session:
        rows = session.execute(
            select(
                FollowerOrderIntent,
                LeaderFill.traded_at,
                LeaderFill.portfolio_id,
                Copy.portfolio_id,
            )
            .outerjoin(LeaderFill, LeaderFill.id == FollowerOrderIntent.leader_fill_id)
            .outerjoin(Copy, Copy.id == FollowerOrderIntent.copy_id)
            .where(FollowerOrderIntent.status.in_(OPEN_STATUSES))
            .order_by(FollowerOrderIntent.id)
        ).all()
        work = []
        for intent, traded_at, fill_portfolio, copy_portfolio in rows:
            if intent.id in engine.inflight:
                continue  # being sent right now by the engine: not ours to resolve
            owner = fill_portfolio or copy_portfolio
            if not engine.owns(owner):
                continue  # another shard's copy: that shard's engine settles it
            if portfolio_id is not None and owner != portfolio_id:
                continue
            ps, copy, index = _copy_for(engine, session, intent.copy_id)
            pid = fill_portfolio or (ps.portfolio_id if ps else None)
            work.append(_Open(intent, traded_at, pid, copy, index))
    return work


async def _settle_one(
    engine: CopyEngine, w: _Open, now: datetime
) -> tuple[Intent, SendResult | None, str]:
    """Look one intent up; adopt it, send it, close it or leave it: (intent, result, what)."""
    intent, it = w.intent, w.as_intent()
    gw = engine.gateway_for(w.copy.account_id)
    try:
        state = await gw.order_by_client_id(intent.symbol, intent.client_order_id)
    except (GatewayError, OSError, TimeoutError) as exc:
        log.info("lookup of %s failed: %s", intent.client_order_id, exc)
        return it, None, "lookup_failed"
    if state is not None:
        return it, SendResult(state=state, acked_at=clock.now(), sent_at=intent.sent_at), "adopted"
    # Age from the engine's decision, not the leader's trade time: the decision already accepted
    # the fill (a backfilled one may be older), and the paper exchange's trade times follow its
    # simulated clock.
    age = (now - intent.created_at).total_seconds()
    if age < engine.absent_after:
        # The request may still be on its way or held by the exchange: absence is only final
        # once it can no longer execute (its recvWindow has passed). Next sweep.
        return it, None, "lookup_failed"
    if age > engine.stale_after and not _lowers_risk(intent, w.copy):
        return it, None, "not_sent"
    result = await send_one(gw, order_request(it))
    if result.rejected is not None and str(result.rejected.code) in DUPLICATE_ID_CODES:
        return it, None, "lookup_failed"  # it exists after all: adopted at the next sweep
    return it, result, "resent"


async def _record_settled(
    engine: CopyEngine,
    results: list[tuple[Intent, SendResult | None, str]],
    report: ReconcileReport,
    locked: PortfolioState | None = None,
) -> list[int]:
    """Record what was adopted or resent, per portfolio; return the intents to close not sent."""
    to_record: dict[int | None, tuple[PortfolioState | None, list, list]] = {}
    not_sent = []
    for it, res, what in results:
        if what == "lookup_failed":
            report.still_unknown += 1
            continue
        if what == "not_sent":
            not_sent.append(it.intent_id)
            continue
        report.adopted += what == "adopted"
        report.resent += what == "resent"
        ps = engine.portfolios.get(it.portfolio_id) if it.index is not None else None
        bucket = to_record.setdefault(id(ps) if ps else None, (ps, [], []))
        bucket[1].append(it)
        bucket[2].append(res)
    for ps, intents, sends in to_record.values():
        if ps is None:
            engine.record(None, intents, sends)
            continue
        async with contextlib.nullcontext() if ps is locked else ps.lock:
            # The copies may have been reloaded while the lookups ran (changed settings, a failed
            # recording): record into the live state, not a replaced one.
            engine.reload_if_stale(ps)
            _rebind(ps, intents)
            engine.record(ps, intents, sends)
    return not_sent


def _close_not_sent(engine: CopyEngine, intent_ids: list[int]) -> None:
    with engine.sf() as session, session.begin():
        session.execute(
            update(FollowerOrderIntent)
            .where(
                FollowerOrderIntent.id.in_(intent_ids),
                FollowerOrderIntent.status.in_(OPEN_STATUSES),
            )
            .values(
                status="done",
                outcome="skipped",
                reason_code="not_sent",
                reason="an opening that never reached the exchange and is too old to send "
                "after a restart; a re-sync restores the position (R-COPY-11, R-X-2)",
            )
        )


async def resolve_open_intents(
    engine: CopyEngine,
    report: ReconcileReport | None = None,
    *,
    locked: PortfolioState | None = None,
) -> ReconcileReport:
    """Settle every intent that has no outcome yet (see the module docstring); only those of
    ``locked``, a portfolio whose lock the caller holds, when given."""
    report = report or ReconcileReport()
    work = _open_intents(engine, locked.portfolio_id if locked else None)
    report.open_intents += len(work)
    if not work:
        return report
    sem = asyncio.Semaphore(64)
    now = clock.now()

    async def settle(w: _Open):
        async with sem:
            return await _settle_one(engine, w, now)

    # Reductions (leg 0) before openings on the other side (leg 1): see CopyEngine._send_by_leg.
    results = []
    for leg in sorted({w.intent.leg for w in work}):
        results += await asyncio.gather(*(settle(w) for w in work if w.intent.leg == leg))
    not_sent = await _record_settled(engine, results, report, locked)
    if not_sent:
        _close_not_sent(engine, not_sent)
        report.closed_not_sent += len(not_sent)
    if locked is not None:
        report.still_unknown = len(_open_intents(engine, locked.portfolio_id))
        return report
    with engine.sf() as session:
        report.still_unknown = len(
            session.scalars(
                select(FollowerOrderIntent.id).where(FollowerOrderIntent.status.in_(OPEN_STATUSES))
            ).all()
        )
    return report


async def settle_while_in_flight(
    engine: CopyEngine, *, locked: PortfolioState | None = None
) -> ReconcileReport:
    """``resolve_open_intents`` again every second while an order may still be in flight, for up
    to ``absent_after`` + 5 s (bounded: an unreachable exchange must not hold the engine)."""
    deadline = time.monotonic() + engine.absent_after + 5.0
    while True:
        report = await resolve_open_intents(engine, locked=locked)
        if not report.still_unknown or time.monotonic() >= deadline:
            return report
        await asyncio.sleep(1.0)


async def settle_before_sizing(engine: CopyEngine, ps: PortfolioState) -> None:
    """Adopt the orders of a fill whose recording failed before the portfolio's next fill is sized.

    A dropped database session after the orders were answered leaves them executed but
    unrecorded; the copies are reloaded without them. Sizing the next fill on those positions
    gets its reductions wrong for good (a reduction is a share of what the follower holds,
    R-COPY-4): the fault campaign ended with every follower 11 % above, or a third below, its
    ratio. So, as on start, this portfolio's open orders are looked up and recorded first,
    retried while one may still be in flight (up to ``absent_after`` + 5 s). The caller holds
    ``ps.lock``; a database still down raises, and the caller retries the event.
    """
    await settle_while_in_flight(engine, locked=ps)
    engine.reload_if_stale(ps)


async def baseline(
    engine: CopyEngine, ps: PortfolioState, report: ReconcileReport | None = None
) -> None:
    """Set watermarks of symbols never seen to the newest existing trade; take the leader's position.

    The newest trades are read before and after the positions; if the leader traded in between
    the baseline would not be consistent, so the symbol is left for the next attempt.
    """
    gw = engine.gateway_for(ps.leader_account_id)
    missing = [s for s in engine.markets(ps) if s not in ps.watermarks]
    if not missing:
        return

    async def newest(symbol):
        try:
            trades = await gw.my_trades(symbol, None, 1000)
        except Exception as exc:
            log.warning("baseline of %s failed: %r", symbol, exc)
            return symbol, None
        return symbol, max((int(t.trade_id) for t in trades), default=0)

    first = dict(await asyncio.gather(*(newest(s) for s in missing)))
    positions: dict[str, Decimal] = {}
    if ps.mode == "futures":
        try:
            positions = {p.symbol: p.quantity for p in await gw.positions()}
        except Exception as exc:  # retried at the next sweep
            log.warning("leader positions of portfolio %s unavailable: %r", ps.portfolio_id, exc)
            return
        second = dict(await asyncio.gather(*(newest(s) for s in missing)))
    else:
        second = first
    with engine.sf() as session, session.begin():
        for symbol in missing:
            last = first.get(symbol)
            if last is None or second.get(symbol) != last:
                continue
            position = positions.get(symbol, Decimal(0))
            ps.watermarks[symbol] = ps.baselines[symbol] = last
            ps.leader_positions[symbol] = position
            session.add(
                LeaderWatermark(
                    portfolio_id=ps.portfolio_id,
                    symbol=symbol,
                    last_trade_id=last,
                    position=position,
                    baseline_trade_id=last,
                    baseline_position=position,
                )
            )
            if report is not None:
                report.baselined.append(f"{ps.portfolio_id}:{symbol}@{last}")


async def backfill(
    engine: CopyEngine, ps: PortfolioState, report: ReconcileReport | None = None
) -> int:
    """Fetch and ingest the leader's trades after each symbol's watermark, in trade-id order.

    Raises ``HistoryUnavailable`` naming the symbols whose trade list could not be read, having
    ingested nothing; the caller retries (R-IN-3). On success an open ``backfill_failed`` gap is
    resolved before the trades are ingested, so they are copied normally.
    """
    report = report or ReconcileReport()
    gw = engine.gateway_for(ps.leader_account_id)
    symbols = sorted(ps.watermarks)

    async def fetch(symbol):
        try:
            return symbol, await trades_from(gw, symbol, ps.watermarks.get(symbol, 0) + 1), None
        except Exception as exc:
            log.warning("backfill of %s:%s failed: %r", ps.portfolio_id, symbol, exc)
            return symbol, [], exc

    pages = await asyncio.gather(*(fetch(s) for s in symbols))
    failed = [(symbol, exc) for symbol, _, exc in pages if exc is not None]
    if failed:
        raise HistoryUnavailable([s for s, _ in failed], failed[0][1])
    # Every missed trade is in hand: the history is complete again, so they are copied normally.
    resolve_gaps(engine, ps, "backfill_failed", "backfill succeeded")
    # Trade-id order per symbol (R-IN-1): a symbol's ids are the exchange's order of its trades.
    trades = sorted(
        (t for _, page, _ in pages for t in page), key=lambda t: (t.symbol, int(t.trade_id))
    )
    count = 0
    for t in trades:
        if t.trade_id in ps.known_ids.get(t.symbol, set()):
            continue
        r = await engine.on_leader_event(ps.portfolio_id, t, "backfill")
        if r.quarantined:
            report.quarantined += 1
        elif not r.merged:
            count += 1
    report.backfilled += count
    return count


async def reconcile(
    engine: CopyEngine,
    *,
    window: int = WINDOW_FILLS,
    check: bool = True,
    report: ReconcileReport | None = None,
) -> ReconcileReport:
    """Run the whole sweep: resolve open intents, baseline new symbols, backfill every leader,
    then compare each portfolio's fills and position with the exchange (R-IN-3)."""
    report = report or ReconcileReport()
    await resolve_open_intents(engine, report)
    for ps in list(engine.portfolios.values()):
        if ps.leader_account_id is None:
            continue
        await baseline(engine, ps, report)
        try:
            await backfill(engine, ps, report)
        except HistoryUnavailable as exc:
            report.unverified.append(f"portfolio {ps.portfolio_id}: {exc}")
            open_gap(engine, ps, "backfill_failed", None, str(exc)[:500])
        if check:
            found = await check_portfolio(engine, ps, window)
            report.missing_found.extend(f"{ps.portfolio_id}:{m}" for m in found.missing)
            report.drift.extend(f"portfolio {ps.portfolio_id}: {d}" for d in found.drift)
            if found.unverified:
                report.unverified.append(f"portfolio {ps.portfolio_id}: {found.unverified}")
        if ps.gaps:
            report.close_only.append(
                f"portfolio {ps.portfolio_id}: "
                + ", ".join(f"{k}{' ' + s if s else ''}" for k, s in sorted(ps.gaps, key=str))
            )
    return report
