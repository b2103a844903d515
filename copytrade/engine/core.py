"""The copy engine: leader fill in → every active copy sized → intents persisted → sent → recorded.

Per leader fill (R-COPY-10, driven by fills, partial ones included), under the portfolio's lock:

1. ingest: validate or quarantine (R-IN-1), split into legs against the leader's position;
2. size every active copy in one vectorised pass per leg (``copytrade.domain.sizing``);
3. persist the leader fill and *all* its intents in one transaction, each with the deterministic
   client order id ``c<fill>-<copy>-<leg>`` (R-COPY-11); skipped copies get their outcome here;
4. send the orders concurrently, one gateway per account (``dispatch.send_all``);
5. record in one transaction: intent outcomes, exchange orders, follower fills with fee, rebate,
   leader price, follower price, slippage and copy delay (R-COPY-8, R-FEE-1/2/4), ledger postings,
   positions; then the copy guards (daily loss, copy stop-loss/take-profit, position TP/SL).

Every leader fill × active copy thus has exactly one intent, and every intent ends in exactly one
outcome (R-COPY-7); intents whose outcome is still unknown are resolved by ``reconcile``.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime
from decimal import Decimal

import numpy as np
from sqlalchemy import case, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from copytrade.domain.markets import Market
from copytrade.domain.money import ZERO, to_units
from copytrade.domain.sizing import SEND, SKIP_SLIPPAGE, FillSpec, size_fill
from copytrade.domain.triggers import parse_trigger, stop_reason
from copytrade.engine import closing, guards, history, ingest, leader_leverage
from copytrade.engine import record as record_stage
from copytrade.engine import send as send_stage
from copytrade.engine.dispatch import SendResult
from copytrade.engine.persist import insert_intents, stored_time
from copytrade.engine.state import (
    PortfolioState,
    copies_signature,
    load_copies,
    load_portfolios,
)
from copytrade.engine.types import FillReport, Intent
from copytrade.exchange.protocol import ExchangeGateway, Trade
from copytrade.gcpause import GcPause
from models import (
    AuditEntry,
    Copy,
    CopyStopEvent,
    FollowerOrderIntent,
    LeaderFill,
    LeaderWatermark,
    QuarantinedEvent,
)
from models.types import utcnow

log = logging.getLogger(__name__)
STALE_AFTER_SECONDS = 60.0
ABSENT_AFTER_SECONDS = 12.0  # beyond ccxt's 10 s recvWindow: an unfound order can no longer execute
LEVERAGE_CONCURRENCY = 64
LEVERAGE_RETRY_SECONDS = 30.0  # a never-sent intent older than this is not sent after a restart
DB_RETRY_SECONDS = (0.2, 1.0, 3.0, 10.0)  # a dropped database session: try the event again
NOT_YET_STREAMED_LIMIT = 100_000
AVAILABLE_MAX_AGE = 30.0  # seconds: an older mark is not the price an order meets now


def client_order_id(fill_id: int, copy_id: int, leg: int) -> str:
    """Return the deterministic client order id of (leader fill, copy, leg) (R-COPY-11)."""
    return f"c{fill_id}-{copy_id}-{leg}"


def _dec(units: int) -> Decimal:
    return Decimal(int(units)).scaleb(-8)


class CopyEngine:
    """The copy engine for a set of lead portfolios (one writer per follower account)."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        gateway_for: Callable[[int], ExchangeGateway],
        markets_by_kind: dict[str, dict[str, Market]],
        *,
        venue: str = "paper",
        stale_after: float = STALE_AFTER_SECONDS,
        absent_after: float = ABSENT_AFTER_SECONDS,
    ) -> None:
        self.sf = session_factory
        self.gateway_for = gateway_for
        self.markets_by_kind = markets_by_kind
        self.venue = venue
        self.stale_after = stale_after
        self.absent_after = absent_after  # an order not found is resent only after this (reconcile)
        self.portfolios: dict[int, PortfolioState] = {}
        self.prices: dict[str, Decimal] = {}
        self._leverage_set: set[tuple[int, str, int]] = set()
        self._leverage_retry: dict[tuple[int, str, int], float] = {}
        self._copies_signature: dict[int, int] = {}
        self.reports: list[FillReport] = []
        self.inflight: set[int] = set()  # intent ids being sent now: sweeps leave them alone
        self.keep_reports = False
        # (mode, symbol) → (price, monotonic time): the mark feed's latest, what a follower's
        # order meets now (R-COPY-12's reference); older than AVAILABLE_MAX_AGE is not used.
        self.available: dict[tuple[str, str], tuple[Decimal, float]] = {}
        self.closing: dict[int, closing.Closing] = {}  # stopped copies not flat yet
        # Called with (copy id, stop reason) once a stopped copy is flat: the driver emits the
        # ``copytrade.copy.stopped`` event or settles directly (the engine imports neither).
        self.on_stopped: Callable[[int, str | None], None] | None = None
        # Called (in a thread) with (portfolio id, symbol, leverage, trade id, opened at, AUM)
        # when a futures leader opens a position: the driver records an R-LEAD-8 violation.
        # Called (in a thread) with (copy id, funding payments, venue): the driver posts them.
        self.on_funding: Callable[[int, list, str], None] | None = None
        self.on_leader_opened: Callable[[int, str, int, str, datetime, Decimal], None] | None = None

    # -- state ---------------------------------------------------------------------------------

    def load(self) -> None:
        """Load portfolios and copies from the database."""
        with self.sf() as session:
            self.portfolios = load_portfolios(session, self.markets_by_kind)
            self._copies_signature = {
                pid: copies_signature(session, pid) for pid in self.portfolios
            }

    def refresh_copies(
        self, portfolio_ids: list[int] | None = None, *, force: bool = False
    ) -> bool:
        """Reload active copies if any changed (joined, stopped, new settings); return whether."""
        states = {
            pid: ps
            for pid, ps in self.portfolios.items()
            if portfolio_ids is None or pid in portfolio_ids
        }
        with self.sf() as session:
            changed = {}
            for pid in states:
                signature = copies_signature(session, pid)
                if force or signature != self._copies_signature.get(pid):
                    changed[pid] = states[pid]
                    self._copies_signature[pid] = signature
            if changed:
                load_copies(session, changed, self.markets_by_kind)
        return bool(changed)

    def note_marks(self, mode: str, prices: dict[str, Decimal]) -> None:
        """The mark feed's prices: risk evaluates at them, entries compare with them."""
        now = time.monotonic()
        self.prices.update(prices)
        self.available.update({(mode, s): (p, now) for s, p in prices.items()})

    def available_price(self, mode: str, symbol: str) -> Decimal | None:
        """The price a follower's order meets now (the latest mark), if fresh enough."""
        found = self.available.get((mode, symbol))
        if found is None or time.monotonic() - found[1] > AVAILABLE_MAX_AGE:
            return None
        return found[0]

    def markets(self, ps: PortfolioState) -> dict[str, Market]:
        return self.markets_by_kind.get(ps.mode, {})

    # -- leader events -------------------------------------------------------------------------

    async def on_leader_event(
        self, portfolio_id: int, event: object, source: str = "stream"
    ) -> FillReport:
        """Handle one leader event end to end; never raises for a bad event (R-IN-1)."""
        ps = self.portfolios.get(portfolio_id)
        if ps is None:
            self._quarantine(
                portfolio_id, source, "unknown_portfolio", "no active lead portfolio", event
            )
            return FillReport(quarantined="unknown_portfolio")
        pause = GcPause()
        async with ps.lock:
            pause.hold()
            try:
                report = await self._handle_retrying(ps, event, source, pause)
            except Exception as exc:  # a bug on one event must not stop the leader's stream
                log.exception("leader event of portfolio %s failed", portfolio_id)
                self._quarantine(
                    portfolio_id, source, "malformed", f"processing failed: {exc!r}", event
                )
                report = FillReport(quarantined="error")
            finally:
                pause.release()
        if self.keep_reports:
            self.reports.append(report)
        return report

    async def _handle_retrying(
        self, ps: PortfolioState, event: object, source: str, pause: GcPause
    ) -> FillReport:
        """Handle an event; a lost database connection is not the event's fault: try again.

        A dropped session rolls the fill's transaction back, so the fill is not stored and
        handling it again is safe; if it was stored (the failure came later, while recording)
        the open intents are the sweep's and the event is done (R-IN-3: never quarantined).
        """
        for attempt in range(len(DB_RETRY_SECONDS) + 1):
            try:
                return await self._handle(ps, event, source, pause)
            except DBAPIError as exc:
                if not (exc.connection_invalidated or isinstance(exc, OperationalError)):
                    raise
                symbol, trade_id = getattr(event, "symbol", None), getattr(event, "trade_id", None)
                if trade_id in ps.known_ids.get(symbol, ()):
                    log.warning("database lost after storing %s#%s: %r", symbol, trade_id, exc)
                    return FillReport(merged=True)
                if attempt == len(DB_RETRY_SECONDS):
                    raise
                log.warning("database lost (%r); handling the event again", exc)
                await asyncio.sleep(DB_RETRY_SECONDS[attempt])
                ps.known_ids.pop(symbol, None)  # re-read: the database is the truth
        raise AssertionError("unreachable")

    def _reload_leader(self, ps: PortfolioState, symbol: str) -> None:
        """Re-derive the leader's positions and known trade ids of ``symbol`` from the database."""
        with self.sf() as session:
            ps.leader_positions, ps.baselines = history.derive_positions(
                session, ps.portfolio_id, ps.mode
            )
            ps.known_ids.pop(symbol, None)
            self._known_ids(session, ps, symbol)

    def _known_ids(self, session: Session, ps: PortfolioState, symbol: str) -> set[str]:
        ids = ps.known_ids.get(symbol)
        if ids is None:
            ids = ps.known_ids[symbol] = set(
                session.scalars(
                    select(LeaderFill.exchange_trade_id).where(
                        LeaderFill.portfolio_id == ps.portfolio_id, LeaderFill.symbol == symbol
                    )
                )
            )
        return ids

    async def _handle(
        self, ps: PortfolioState, event: object, source: str, pause: GcPause
    ) -> FillReport:
        if ps.copies_stale:
            self.refresh_copies([ps.portfolio_id], force=True)
            ps.copies_stale = False
        markets = self.markets(ps)
        symbol = getattr(event, "symbol", None)
        with self.sf() as session:
            known = self._known_ids(session, ps, symbol) if isinstance(symbol, str) else None
        rejection = ingest.validate(event, markets, known, ps.baselines.get(symbol))
        if rejection and rejection.reason_code == "duplicate" and ps.merge(source, event):
            # The same trade from a backfill or a check and the stream: merged by trade id.
            return FillReport(merged=True)
        if rejection:
            self._quarantine(
                ps.portfolio_id, source, rejection.reason_code, rejection.reason, event
            )
            return FillReport(quarantined=rejection.reason_code)
        trade: Trade = event  # type: ignore[assignment]
        market = markets[trade.symbol]
        # R-COPY-12: the follower meets the market's price now, not the leader's fill price
        reference = self.available_price(ps.mode, trade.symbol) or trade.price
        self.prices[trade.symbol] = trade.price
        position = ps.leader_positions.get(trade.symbol, ZERO)
        legs = ingest.split_legs(ps.mode, trade.side, trade.quantity, position)
        first_of_order = trade.order_id not in ps.copied_orders
        guards.unpause_expired(ps)
        book = ps.book
        aum_capped = ps.aum_capped()
        sizings = []
        acc_before = {s: a.copy() for s, a in book.accumulated.items()}
        for leg in legs:
            spec = FillSpec(
                symbol=trade.symbol,
                side=trade.side,
                opening=leg.opening,
                quantity=leg.quantity,
                price=trade.price,
                leader_position_before=leg.position_before,
                leader_equity=ps.leader_equity,
                reference_price=reference,
                market=market,
                aum_capped=aum_capped,
                first_fill_of_order=first_of_order,
            )
            paused = leg.opening and ps.ingest_paused  # close-only while incomplete (R-IN-3)
            sizings.append((leg, history.paused_sizing(book) if paused else size_fill(book, spec)))
        after = ingest.position_after(ps.mode, trade.side, trade.quantity, position)

        # 3. persist the fill and every intent in one transaction
        now = utcnow()
        intents: list[Intent] = []
        report = FillReport()
        with self.sf() as session, session.begin():
            try:
                with session.begin_nested():
                    fill_id = session.execute(
                        LeaderFill.__table__.insert().returning(LeaderFill.id),
                        {
                            "portfolio_id": ps.portfolio_id,
                            "exchange_trade_id": trade.trade_id,
                            "exchange_order_id": trade.order_id,
                            "symbol": trade.symbol,
                            "side": trade.side,
                            "position_side": None,
                            "price": trade.price,
                            "quantity": trade.quantity,
                            "fee": trade.fee or ZERO,
                            "fee_asset": trade.fee_asset,
                            "realised_pnl": trade.realised_pnl,
                            "traded_at": trade.traded_at,
                            "is_opening": legs[0].opening,
                            "position_before": position,
                            "source": source,
                            "received_at": now,
                        },
                    ).scalar_one()
            except IntegrityError:
                # Stored meanwhile by another process (a reconcile run): take its effect on the
                # leader's position from the stored fills instead of counting it twice or never.
                self._reload_leader(ps, trade.symbol)
                if source != "stream":
                    return FillReport(merged=True)
                report.quarantined = "duplicate"
                self._quarantine(
                    ps.portfolio_id,
                    source,
                    "duplicate",
                    f"trade {trade.symbol}#{trade.trade_id} already stored",
                    trade,
                )
                return report
            rows: list[tuple] = []
            sends: list[tuple[int, int, object]] = []  # (row index, copy index, leg)
            price_units = to_units(trade.price.quantize(Decimal("1e-8")))
            created = stored_time(session, now)
            futures = ps.mode == "futures"
            for leg, sizing in sizings:
                quantities = sizing.quantity_units.tolist()
                computed = sizing.computed_units.tolist()
                for i, (copy, code) in enumerate(
                    zip(ps.copies, sizing.codes.tolist(), strict=True)
                ):
                    cid = copy.copy_id
                    # persist.INTENT_COLUMNS order; amounts in 1e-8 units
                    row = (
                        fill_id,
                        cid,
                        leg.index,
                        "copy",
                        client_order_id(fill_id, cid, leg.index),
                        trade.symbol,
                        trade.side,
                        quantities[i],
                        computed[i],
                        sizing.reduce_only,
                        copy.leverage if futures else None,
                        price_units,
                        created,
                    )
                    if code == SEND:
                        sends.append((len(rows), i, leg))
                        row += ("pending", None, None, None)
                    elif code == SKIP_SLIPPAGE:  # a skip records both prices
                        why = history.skip_reason(code)
                        row += (
                            "done",
                            "skipped",
                            why[0],
                            f"{why[1]}: leader {trade.price}, available {reference}",
                        )
                    else:
                        row += ("done", "skipped", *history.skip_reason(code))
                    rows.append(row)
            ids = insert_intents(session, fill_id, rows)
            self._save_watermark(session, ps, trade, after)
            self._save_accumulators(session, ps, acc_before)
        ps.leader_positions[trade.symbol] = after
        if not position and after:  # the leader opened a position: its leverage (R-LEAD-8)
            leader_leverage.opened(self, ps, trade.symbol, trade.trade_id, trade.traded_at)
        ps.watermarks[trade.symbol] = max(ps.watermarks.get(trade.symbol, 0), int(trade.trade_id))
        ps.known_ids.setdefault(trade.symbol, set()).add(trade.trade_id)
        if source != "stream":
            if len(ps.not_yet_streamed) >= NOT_YET_STREAMED_LIMIT:
                ps.not_yet_streamed.clear()  # only a quarantine note is lost, never a fill
            ps.not_yet_streamed.add((trade.symbol, trade.trade_id))
        ps.copied_orders.add(trade.order_id)
        if trade.realised_pnl:
            ps.leader_realised += trade.realised_pnl
        for row_index, copy_index, _leg in sends:
            row = rows[row_index]
            copy = ps.copies[copy_index]
            intents.append(
                Intent(
                    intent_id=ids[row_index],
                    portfolio_id=ps.portfolio_id,
                    copy=copy,
                    index=copy_index,
                    client_order_id=row[4],
                    symbol=trade.symbol,
                    side=trade.side,
                    quantity=_dec(row[7]),
                    reduce_only=row[9],
                    leverage=row[10],
                    leader_fill_id=fill_id,
                    leader_price=trade.price,
                    leader_time=trade.traded_at,
                    leg=row[2],
                )
            )
        self.inflight.update(it.intent_id for it in intents)
        report.leader_fill_id = fill_id
        report.leader_time = trade.traded_at
        report.received_at = now
        report.sized_at = utcnow()
        report.intents = len(rows)
        report.skipped = len(rows) - len(intents)
        report.sent = len(intents)

        # 4-5. send concurrently, record in one transaction
        try:
            results = await self._send_by_leg(intents)
            pause.release()  # the orders are answered: collect during recording, not before
            self.record(ps, intents, results)
        finally:
            self.inflight.difference_update(it.intent_id for it in intents)
        if results:
            report.first_sent_at = min(r.sent_at for r in results if r.sent_at)
            acks = [r.acked_at for r in results if r.acked_at]
            report.last_ack_at = max(acks) if acks else None
        await self._guards(ps, trade.symbol)
        return report

    # -- sending and recording -----------------------------------------------------------------

    async def _send_by_leg(self, intents: list[Intent]) -> list[SendResult]:
        return await send_stage.send_by_leg(self, intents)

    async def _send(self, intents: list[Intent]) -> list[SendResult]:
        return await send_stage.send(self, intents)

    def record(
        self, ps: PortfolioState | None, intents: list[Intent], results: list[SendResult]
    ) -> None:
        """Record send results (``record``): outcomes, orders, fills, ledger, positions."""
        record_stage.record(self, ps, intents, results)

    def _save_accumulators(self, session: Session, ps: PortfolioState, before: dict) -> None:
        """Persist accumulate remainders that sizing changed (R-COPY-6 accumulate)."""
        touched = {}
        for symbol, acc in ps.book.accumulated.items():
            old = before.get(symbol)
            changed = (
                np.nonzero(acc != old)[0]
                if old is not None and len(old) == len(acc)
                else np.nonzero(acc)[0]
            )
            for i in changed:
                copy = ps.copies[int(i)]
                pos = copy.position(symbol)
                pos.accumulated = _dec(acc[int(i)])
                touched[(copy.copy_id, symbol)] = pos
        record_stage.save_positions(session, touched)

    def _save_watermark(
        self, session: Session, ps: PortfolioState, trade: Trade, position: Decimal
    ) -> None:
        table = LeaderWatermark.__table__
        tid = int(trade.trade_id)
        # A late fill lies below the watermark: the watermark stays the highest stored id.
        highest = case((table.c.last_trade_id < tid, tid), else_=table.c.last_trade_id)
        updated = session.execute(
            update(table)
            .where(table.c.portfolio_id == ps.portfolio_id, table.c.symbol == trade.symbol)
            .values(last_trade_id=highest, position=position, updated_at=utcnow())
        ).rowcount
        if not updated:
            # First fill of a symbol never baselined: the leader started flat in it.
            ps.baselines.setdefault(trade.symbol, 0)
            session.execute(
                table.insert(),
                {
                    "portfolio_id": ps.portfolio_id,
                    "symbol": trade.symbol,
                    "last_trade_id": tid,
                    "position": position,
                    "baseline_trade_id": 0,
                    "baseline_position": ZERO,
                    "updated_at": utcnow(),
                },
            )

    # -- quarantine ----------------------------------------------------------------------------

    def _quarantine(
        self, portfolio_id: int | None, source: str, code: str, reason: str, event: object
    ) -> None:
        log.warning("quarantined %s event of portfolio %s: %s", code, portfolio_id, reason)
        with self.sf() as session, session.begin():
            session.add(
                QuarantinedEvent(
                    source=source[:32],
                    portfolio_id=portfolio_id if portfolio_id in self.portfolios else None,
                    reason_code=code[:32],
                    reason=reason,
                    payload=ingest.payload_of(event),
                )
            )

    # -- guards: daily loss (R-X-3), copy SL/TP (R-COPY-3), position TP/SL (R-COPY-12) ---------

    async def _guards(self, ps: PortfolioState, symbols: str | Iterable[str]) -> None:
        await guards.run(self, ps, symbols)

    # -- manual close, stop copying (R-COPY-5), stops (R-COPY-3) -------------------------------

    def _find(self, copy_id: int) -> tuple[PortfolioState, int]:
        for ps in self.portfolios.values():
            for i, c in enumerate(ps.copies):
                if c.copy_id == copy_id:
                    return ps, i
        raise KeyError(copy_id)

    async def close_position(
        self,
        copy_id: int,
        symbol: str,
        *,
        kind: str = "close",
        ps: PortfolioState | None = None,
        quantity: Decimal | None = None,
    ) -> list[Intent]:
        """Close (all or ``quantity`` of) a copy's position in ``symbol`` with a recorded order."""
        ps, index = self._find(copy_id) if ps is None else (ps, self._find(copy_id)[1])
        copy = ps.copies[index]
        pos = copy.positions.get(symbol)
        if not pos or not pos.quantity:
            return []
        qty = abs(pos.quantity) if quantity is None else min(quantity, abs(pos.quantity))
        market = self.markets(ps).get(symbol)
        if market is not None:
            qty = market.round_amount(qty)
        if qty <= 0:
            return []
        side = "sell" if pos.quantity > 0 else "buy"
        intents = self._persist_extra(
            ps, [(copy, index, symbol, side, qty, ps.mode == "futures")], kind
        )
        results = await self._send(intents)
        self.record(ps, intents, results)
        return intents

    def _persist_extra(self, ps: PortfolioState, orders, kind: str) -> list[Intent]:
        """Persist intents that no leader fill caused (close, stop, resync) before sending them."""
        now = utcnow()
        rows = []
        for copy, _index, symbol, side, qty, reduce_only in orders:
            rows.append(
                {
                    "leader_fill_id": None,
                    "copy_id": copy.copy_id,
                    "leg": 0,
                    "kind": kind,
                    "client_order_id": f"{kind[0]}{copy.copy_id}-{uuid.uuid4().hex[:24]}",
                    "symbol": symbol,
                    "side": side,
                    "quantity": qty,
                    "computed_quantity": qty,
                    "reduce_only": reduce_only,
                    "leverage": copy.leverage if ps.mode == "futures" else None,
                    "leader_price": self.prices.get(symbol),
                    "created_at": now,
                    "status": "pending",
                }
            )
        with self.sf() as session, session.begin():
            ids = session.scalars(
                FollowerOrderIntent.__table__.insert().returning(
                    FollowerOrderIntent.id, sort_by_parameter_order=True
                ),
                rows,
            ).all()
        self.inflight.update(ids)
        return [
            Intent(
                intent_id=iid,
                portfolio_id=ps.portfolio_id,
                copy=copy,
                index=index,
                client_order_id=row["client_order_id"],
                symbol=symbol,
                side=side,
                quantity=qty,
                reduce_only=reduce_only,
                leverage=row["leverage"],
                leader_fill_id=None,
                leader_price=row["leader_price"],
                leader_time=None,
                kind=kind,
            )
            for iid, row, (copy, index, symbol, side, qty, reduce_only) in zip(
                ids, rows, orders, strict=True
            )
        ]

    async def stop_copy(
        self,
        copy_id: int,
        trigger: str = "stop_copy",
        *,
        pnl: Decimal | None = None,
        threshold: Decimal | None = None,
        ps: PortfolioState | None = None,
        close_positions: bool = True,
    ) -> None:
        """Stop a copy: no further copying, positions closed, settlement trigger recorded (R-COPY-3/5)."""
        ps, index = self._find(copy_id)
        copy = ps.copies[index]
        if pnl is None:
            pnl = copy.marked_pnl(self.prices)
        rule = "R-COPY-3" if trigger in ("stop_loss", "take_profit") else "R-COPY-5"
        reason = stop_reason(
            parse_trigger(trigger),
            f"result after fees and shares {pnl} (threshold {threshold})"
            if threshold is not None
            else None,
        )
        with self.sf() as session, session.begin():
            session.execute(
                update(Copy)
                .where(Copy.id == copy_id, Copy.status == "active")
                .values(status="stopped", stopped_at=utcnow(), stop_reason=reason)
            )
            exists = session.scalar(
                select(CopyStopEvent.id).where(CopyStopEvent.copy_id == copy_id)
            )
            if exists is None:
                session.add(
                    CopyStopEvent(
                        copy_id=copy_id,
                        trigger=trigger,
                        cumulative_pnl=pnl.quantize(Decimal("1e-8")),
                        threshold=threshold.quantize(Decimal("1e-8"))
                        if threshold is not None
                        else None,
                        reason=reason,
                    )
                )
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
        # The copy is no longer active: out of the sizing columns, closed and kept until flat.
        ps.copies = [c for c in ps.copies if c.copy_id != copy_id]
        ps.rebuild_book(self.markets(ps))
        if close_positions:
            await closing.stopped(self, ps, copy, reason)
