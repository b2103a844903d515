"""The copy engine's coordinator: one leader fill through the stages, in this order.

Per leader fill (R-COPY-10, driven by fills, partial ones included), under the portfolio's lock
(``CopyEngine._handle``):

1. ``accept``  — stream event → ``LeaderFill``: validated or quarantined (R-IN-1), merged when
   another source stored it (R-IN-3), split into legs against the leader's position;
2. ``size``    — copy book + ``LeaderFill`` → ``IntentBatch``: every active copy in one
   vectorised pass per leg (``copytrade.domain.sizing``);
3. ``persist`` — the leader fill and *all* its intents in one transaction before any send, each
   with the client order id ``c<fill>-<copy>-<leg>`` (R-COPY-11); skipped copies end here;
4. ``send``    — the orders through the exchange port (``dispatch`` → ``place_many``), the
   reductions answered before the openings;
5. ``record``  — outcomes, orders, follower fills (R-COPY-8, R-FEE-1/2/4), ledger transfers
   (``copytrade.ledger.fill_transfers``) and positions in one transaction;
6. ``guards``  — daily loss (R-X-3), position TP/SL, copy stops (R-COPY-3, ``risk``), whose
   orders go through ``closing``.

Every leader fill × active copy thus has exactly one intent, and every intent ends in exactly one
outcome (R-COPY-7); intents whose outcome is still unknown are resolved by ``reconcile``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from decimal import Decimal

from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from copytrade.domain.markets import Market
from copytrade.engine import accept, closing, guards, persist, reconcile, size
from copytrade.engine import record as record_stage
from copytrade.engine import send as send_stage
from copytrade.engine.dispatch import SendResult
from copytrade.engine.state import (
    PortfolioState,
    copies_signature,
    load_copies,
    load_portfolios,
)
from copytrade.engine.types import FillReport, Intent
from copytrade.exchange.protocol import ExchangeGateway
from copytrade.gcpause import GcPause
from models.types import utcnow

log = logging.getLogger(__name__)
STALE_AFTER_SECONDS = 60.0
ABSENT_AFTER_SECONDS = 12.0  # beyond ccxt's 10 s recvWindow: an unfound order can no longer execute
DB_RETRY_SECONDS = (0.2, 1.0, 3.0, 10.0)  # a dropped database session: try the event again
AVAILABLE_MAX_AGE = 30.0  # seconds: an older mark is not the price an order meets now
# Stage 5 runs on one recording thread, off the event loop; the answers of the leader fills
# waiting meanwhile are recorded together, one transaction for up to this many orders.
RECORD_BATCH_ORDERS = 2000


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
        owns: Callable[[int], bool] | None = None,
        ledger_stream: int = 0,
    ) -> None:
        self.sf = session_factory
        # A shard's engine (engine.shards): the lead portfolios it owns, the ledger stream it posts to.
        self.owns = owns or (lambda portfolio_id: True)
        self.ledger_stream = ledger_stream
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
        # (mode, symbol) → (price, monotonic fetch time, the exchange's quote time or None): the
        # mark feed's latest, what a follower's order meets now (R-COPY-12's reference).
        self.available: dict[tuple[str, str], tuple[Decimal, float, datetime | None]] = {}
        self.closing: dict[int, closing.Closing] = {}  # stopped copies not flat yet
        # Called with (copy id, stop reason) once a stopped copy is flat: the driver emits the
        # ``copytrade.copy.stopped`` event or settles directly (the engine imports neither).
        self.on_stopped: Callable[[int, str | None], None] | None = None
        # Called (in a thread) with (portfolio id, symbol, leverage, trade id, opened at, AUM)
        # when a futures leader opens a position: the driver records an R-LEAD-8 violation.
        # Called (in a thread) with (copy id, funding payments, venue): the driver posts them.
        self.on_funding: Callable[[int, list, str], None] | None = None
        self.on_leader_opened: Callable[[int, str, int, str, datetime, Decimal], None] | None = None
        self._recorder: ThreadPoolExecutor | None = None
        self._to_record: list[tuple[record_stage.Answered, asyncio.Future]] = []
        self._recording = False
        self._record_lock = threading.Lock()

    # -- state ---------------------------------------------------------------------------------

    def load(self) -> None:
        """Load portfolios and copies from the database."""
        with self.sf() as session:
            self.portfolios = load_portfolios(session, self.markets_by_kind, owns=self.owns)
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

    def reload_if_stale(self, ps: PortfolioState) -> None:
        """Reload ``ps``'s copies if a recording failed since (``copies_stale``); under its lock."""
        if ps.copies_stale:
            self.refresh_copies([ps.portfolio_id], force=True)
            ps.copies_stale = False

    def note_marks(
        self, mode: str, prices: Mapping[str, Decimal], at: datetime | None = None
    ) -> None:
        """The mark feed's prices (``at``: the exchange's time of them, when it said):
        risk evaluates at them, entries compare with them."""
        now = time.monotonic()
        self.prices.update(prices)
        self.available.update({(mode, s): (p, now, at) for s, p in prices.items()})

    def available_price(self, mode: str, symbol: str, trade_at: datetime) -> Decimal | None:
        """The price a follower's order meets now (the latest mark), if fresh enough: fetched
        within AVAILABLE_MAX_AGE, and quoted no more than that before the leader's trade on the
        exchange's own clock (a mark from before a market jump is not what the order meets)."""
        found = self.available.get((mode, symbol))
        if found is None or time.monotonic() - found[1] > AVAILABLE_MAX_AGE:
            return None
        price, _, quoted_at = found
        if quoted_at is not None and (trade_at - quoted_at).total_seconds() > AVAILABLE_MAX_AGE:
            return None
        return price

    def markets(self, ps: PortfolioState) -> dict[str, Market]:
        return self.markets_by_kind.get(ps.mode, {})

    # -- leader events -------------------------------------------------------------------------

    async def on_leader_event(
        self, portfolio_id: int, event: object, source: str = "stream"
    ) -> FillReport:
        """Handle one leader event end to end; never raises for a bad event (R-IN-1)."""
        ps = self.portfolios.get(portfolio_id)
        if ps is None:
            accept.quarantine(
                self, portfolio_id, source, "unknown_portfolio", "no active lead portfolio", event
            )
            return FillReport(quarantined="unknown_portfolio")
        pause = GcPause()
        async with ps.lock:
            pause.hold()
            try:
                report = await self._handle_retrying(ps, event, source, pause)
            except Exception as exc:  # a bug on one event must not stop the leader's stream
                log.exception("leader event of portfolio %s failed", portfolio_id)
                accept.quarantine(
                    self, portfolio_id, source, "malformed", f"processing failed: {exc!r}", event
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

    async def _handle(
        self, ps: PortfolioState, event: object, source: str, pause: GcPause
    ) -> FillReport:
        """The pipeline for one event: accept → size → persist → send → record → guards."""
        if ps.copies_stale:  # a recording failed: its orders are adopted before sizing anew
            await reconcile.settle_before_sizing(self, ps)
        fill = accept.accept(self, ps, event, source)
        if isinstance(fill, FillReport):
            return fill
        self.prices[fill.trade.symbol] = fill.trade.price
        guards.unpause_expired(ps)
        stored = persist.persist_fill(self, ps, size.size(ps, fill))
        if isinstance(stored, FillReport):
            return stored
        accept.note_stored(self, ps, fill)
        intents, report = stored.intents, stored.report
        self.inflight.update(it.intent_id for it in intents)
        report.sized_at = utcnow()
        try:
            results = await self._send_by_leg(intents)
            pause.release()  # the orders are answered: collect during recording, not before
            await self._record_off_loop(ps, intents, results)
        finally:
            self.inflight.difference_update(it.intent_id for it in intents)
        if results:
            report.first_sent_at = min(r.sent_at for r in results if r.sent_at)
            acks = [r.acked_at for r in results if r.acked_at]
            report.last_ack_at = max(acks) if acks else None
        await self._guards(ps, fill.trade.symbol)
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
        self.record_many([record_stage.Answered(ps, intents, results)])

    def record_many(self, batches: list[record_stage.Answered]) -> None:
        """Record several fills' send results in one transaction (``record.record_many``)."""
        record_stage.record_many(self, batches)

    async def _record_off_loop(
        self, ps: PortfolioState, intents: list[Intent], results: list[SendResult]
    ) -> None:
        """``record`` on the recording thread, the portfolio's lock still held by the caller.

        Recording is one transaction of several statements; run on the event loop, every wait
        on the database stopped every other portfolio's orders from going out and their
        answers from being read (measured in ``benchmarks/scale_out.py``: the loop blocked on
        PostgreSQL for most of a burst). One thread: recordings post on one ledger stream,
        whose chain head serialises them anyway (several threads queued there, each holding
        a connection); the fills that wait meanwhile go into the next transaction together.
        The fill's in-memory copies are only touched under ``ps.lock``, which this coroutine
        holds until its batch is recorded. Raises what recording raised.
        """
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        with self._record_lock:
            self._to_record.append((record_stage.Answered(ps, intents, results), done))
            start, self._recording = not self._recording, True
        if start:
            if self._recorder is None:
                self._recorder = ThreadPoolExecutor(1, thread_name_prefix="record")
            self._recorder.submit(self._record_queued, loop)
        await done

    def _record_queued(self, loop: asyncio.AbstractEventLoop) -> None:
        """The recording thread: record what is queued, a transaction at a time, until empty."""
        while True:
            with self._record_lock:
                taken, size = [], 0
                while self._to_record and (not taken or size < RECORD_BATCH_ORDERS):
                    answered, done = self._to_record.pop(0)
                    taken.append((answered, done))
                    size += len(answered.intents)
                if not taken:
                    self._recording = False
                    return
            error: BaseException | None = None
            try:
                self.record_many([answered for answered, _ in taken])
            except BaseException as exc:  # handed to every waiting fill, as ``record`` raises
                error = exc
            try:
                loop.call_soon_threadsafe(_settle, [done for _, done in taken], error)
            except RuntimeError:  # the loop is closed (shutdown): nobody waits any more
                return

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
        return await closing.close_position(self, ps, index, symbol, kind, quantity)

    def _persist_extra(self, ps: PortfolioState, orders, kind: str) -> list[Intent]:
        return persist.persist_extra(self, ps, orders, kind)

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
        reason = closing.store_stop(self, copy_id, trigger, pnl, threshold)
        # The copy is no longer active: out of the sizing columns, closed and kept until flat.
        ps.copies = [c for c in ps.copies if c.copy_id != copy_id]
        ps.rebuild_book(self.markets(ps))
        if close_positions:
            await closing.stopped(self, ps, copy, reason)


def _settle(waiting: list[asyncio.Future], error: BaseException | None) -> None:
    for done in waiting:
        if done.done():  # its fill was cancelled (shutdown): nobody waits
            continue
        if error is None:
            done.set_result(None)
        else:
            done.set_exception(error)
