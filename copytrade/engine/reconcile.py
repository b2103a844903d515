"""Reconciliation on start and after every reconnect: nothing lost, nothing sent twice (R-COPY-11).

1. Every intent without an outcome (``pending``: persisted, maybe sent when the process died;
   ``unknown``: a timeout nobody could resolve yet; ``acked``: an order still open) is looked up by
   its client order id. Found → the exchange's state is adopted and recorded. Confirmed absent →
   sent now if it is still fresh, otherwise closed as skipped (``not_sent``) with the reason.
   A lookup that fails leaves the intent for the next sweep. Nothing is sent without a lookup.
2. Leader fills missed while the stream was down are backfilled from ``myTrades`` by trade id,
   from each symbol's watermark, and go through the same ingest as the stream (R-IN-1).
3. On the first start for a portfolio, each symbol's watermark is set to the newest existing
   trade (history before the engine first saw the portfolio is not copied) and the leader's
   position is taken from the exchange (futures).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from decimal import Decimal

from sqlalchemy import select, update

from copytrade import clock
from copytrade.domain.fills import PositionState
from copytrade.engine.core import CopyEngine, Intent
from copytrade.engine.dispatch import SendResult, send_one
from copytrade.engine.state import CopyState, PortfolioState
from copytrade.exchange.protocol import GatewayError, OrderRequest
from models import Copy, CopyPosition, FollowerOrderIntent, LeaderFill, LeaderWatermark

log = logging.getLogger(__name__)
OPEN_STATUSES = ("pending", "sent", "unknown", "acked")


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

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items()}


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


async def resolve_open_intents(
    engine: CopyEngine, report: ReconcileReport | None = None
) -> ReconcileReport:
    """Settle every intent that has no outcome yet (see the module docstring)."""
    report = report or ReconcileReport()
    with engine.sf() as session:
        rows = session.execute(
            select(FollowerOrderIntent, LeaderFill.traded_at, LeaderFill.portfolio_id)
            .outerjoin(LeaderFill, LeaderFill.id == FollowerOrderIntent.leader_fill_id)
            .where(FollowerOrderIntent.status.in_(OPEN_STATUSES))
            .order_by(FollowerOrderIntent.id)
        ).all()
        work = []
        for intent, traded_at, portfolio_id in rows:
            if intent.id in engine.inflight:
                continue  # being sent right now by the engine: not ours to resolve
            ps, copy, index = _copy_for(engine, session, intent.copy_id)
            pid = portfolio_id or (ps.portfolio_id if ps else None)
            work.append((intent, traded_at, pid, ps, copy, index))
    report.open_intents += len(work)
    if not work:
        return report
    sem = asyncio.Semaphore(64)
    now = clock.now()

    async def settle(intent, traded_at, pid, ps, copy, index):
        gw = engine.gateway_for(copy.account_id)
        it = Intent(
            intent_id=intent.id,
            portfolio_id=pid,
            copy=copy,
            index=index,
            client_order_id=intent.client_order_id,
            symbol=intent.symbol,
            side=intent.side,
            quantity=intent.quantity,
            reduce_only=intent.reduce_only,
            leverage=intent.leverage,
            leader_fill_id=intent.leader_fill_id,
            leader_price=intent.leader_price,
            leader_time=traded_at,
            kind=intent.kind,
        )
        async with sem:
            try:
                state = await gw.order_by_client_id(intent.symbol, intent.client_order_id)
            except (GatewayError, OSError, TimeoutError) as exc:
                log.info("lookup of %s failed: %s", intent.client_order_id, exc)
                return it, None, "lookup_failed"
            if state is not None:
                return (
                    it,
                    SendResult(state=state, acked_at=clock.now(), sent_at=intent.sent_at),
                    "adopted",
                )
            born = traded_at or intent.created_at
            if (now - born).total_seconds() <= engine.stale_after:
                request = OrderRequest(
                    symbol=intent.symbol,
                    side=intent.side,
                    quantity=intent.quantity,
                    client_order_id=intent.client_order_id,
                    reduce_only=intent.reduce_only,
                )
                return it, await send_one(gw, request), "resent"
            return it, None, "not_sent"

    results = await asyncio.gather(*(settle(*w) for w in work))
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
        if ps is not None:
            async with ps.lock:
                engine.record(ps, intents, sends)
        else:
            engine.record(None, intents, sends)
    if not_sent:
        with engine.sf() as session, session.begin():
            session.execute(
                update(FollowerOrderIntent)
                .where(
                    FollowerOrderIntent.id.in_(not_sent),
                    FollowerOrderIntent.status.in_(OPEN_STATUSES),
                )
                .values(
                    status="done",
                    outcome="skipped",
                    reason_code="not_sent",
                    reason="never reached the exchange and too old to send after a restart; "
                    "a re-sync restores the position (R-COPY-11, R-X-2)",
                )
            )
        report.closed_not_sent += len(not_sent)
    with engine.sf() as session:
        report.still_unknown = len(
            session.scalars(
                select(FollowerOrderIntent.id).where(FollowerOrderIntent.status.in_(OPEN_STATUSES))
            ).all()
        )
    return report


async def baseline(
    engine: CopyEngine, ps: PortfolioState, report: ReconcileReport | None = None
) -> None:
    """Set watermarks of symbols never seen to the newest existing trade; take the leader's position."""
    gw = engine.gateway_for(ps.leader_account_id)
    missing = [s for s in engine.markets(ps) if s not in ps.watermarks]
    if not missing:
        return
    positions: dict[str, Decimal] = {}
    if ps.mode == "futures":
        try:
            positions = {p.symbol: p.quantity for p in await gw.positions()}
        except Exception as exc:  # the position starts flat when the exchange cannot say
            log.warning("leader positions of portfolio %s unavailable: %r", ps.portfolio_id, exc)

    async def newest(symbol):
        try:
            trades = await gw.my_trades(symbol, None, 1000)
        except Exception as exc:
            log.warning("baseline of %s failed: %r", symbol, exc)
            return symbol, None
        return symbol, max((int(t.trade_id) for t in trades), default=0)

    found = await asyncio.gather(*(newest(s) for s in missing))
    with engine.sf() as session, session.begin():
        for symbol, last in found:
            if last is None:
                continue
            ps.watermarks[symbol] = last
            ps.leader_positions[symbol] = positions.get(symbol, Decimal(0))
            session.add(
                LeaderWatermark(
                    portfolio_id=ps.portfolio_id,
                    symbol=symbol,
                    last_trade_id=last,
                    position=ps.leader_positions[symbol],
                )
            )
            if report is not None:
                report.baselined.append(f"{ps.portfolio_id}:{symbol}@{last}")


async def backfill(
    engine: CopyEngine, ps: PortfolioState, report: ReconcileReport | None = None
) -> int:
    """Fetch and ingest leader trades after each symbol's watermark (R-COPY-10 after a gap)."""
    report = report or ReconcileReport()
    gw = engine.gateway_for(ps.leader_account_id)
    symbols = sorted(ps.watermarks)

    async def fetch(symbol):
        out = []
        start = ps.watermarks.get(symbol, 0) + 1
        while True:
            try:
                page = await gw.my_trades(symbol, str(start), 1000)
            except Exception as exc:
                log.warning("backfill of %s:%s failed: %r", ps.portfolio_id, symbol, exc)
                break
            page = [t for t in page if str(t.trade_id).isdigit() and int(t.trade_id) >= start]
            out.extend(page)
            if len(page) < 1000:
                break
            start = max(int(t.trade_id) for t in page) + 1
        return out

    pages = await asyncio.gather(*(fetch(s) for s in symbols))
    trades = sorted(
        (t for page in pages for t in page), key=lambda t: (t.traded_at, int(t.trade_id))
    )
    count = 0
    for t in trades:
        if t.trade_id in ps.known_ids.get(t.symbol, set()):
            continue
        r = await engine.on_leader_event(ps.portfolio_id, t, "backfill")
        if r.quarantined:
            report.quarantined += 1
        else:
            count += 1
    report.backfilled += count
    return count


async def reconcile(engine: CopyEngine) -> ReconcileReport:
    """Run the whole sweep: resolve open intents, baseline new symbols, backfill every leader."""
    report = ReconcileReport()
    await resolve_open_intents(engine, report)
    for ps in list(engine.portfolios.values()):
        if ps.leader_account_id is None:
            continue
        await baseline(engine, ps, report)
        await backfill(engine, ps, report)
    return report
