"""Run the copy engine for a long time: leader streams, periodic sweeps, heartbeats, clean stop.

On start and after every stream reconnect each portfolio catches up (buffered stream, backfill
retried until it succeeds, then the buffer in trade-id order); between events a sweep settles
unknown outcomes, reloads changed copies and, every ``check_every`` seconds, checks each
portfolio's fills and position against the exchange (R-IN-3). ``stop`` (SIGTERM in the CLI)
lets the event being processed finish, then closes the gateways.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from copytrade.engine import closing, live_config
from copytrade.engine.completeness import (
    WINDOW_FILLS,
    HistoryUnavailable,
    check_all,
    open_gap,
)
from copytrade.engine.core import CopyEngine
from copytrade.engine.follower_streams import FollowerStreams
from copytrade.engine.funding import FundingReader
from copytrade.engine.marks_feed import MARK_EVERY_SECONDS, MarkFeed
from copytrade.engine.reconcile import (
    ReconcileReport,
    backfill,
    baseline,
    resolve_open_intents,
    settle_while_in_flight,
)

log = logging.getLogger(__name__)
CHECK_EVERY_SECONDS = 60.0  # the running engine's completeness check (R-IN-3)


def _orderable(event: object) -> bool:
    return isinstance(getattr(event, "trade_id", None), str) and event.trade_id.isdigit()


@dataclass
class RunStats:
    started: float = field(default_factory=time.monotonic)
    events: int = 0
    reconnects: int = 0
    sweeps: int = 0
    last_reconcile: ReconcileReport | None = None

    def line(self) -> str:
        up = time.monotonic() - self.started
        return f"up {up:.0f}s, {self.events} leader events, {self.reconnects} reconnects, {self.sweeps} sweeps"


@dataclass(frozen=True, slots=True)
class StreamEnded:
    """Put in a portfolio's buffer when its stream ends or drops: reconnect after it."""

    why: str


class EngineRunner:
    """Drive a ``CopyEngine``: one stream task per lead portfolio plus a sweep and a heartbeat.

    Per portfolio, on start and after every reconnect: subscribe, buffer the stream, backfill
    the leader's trades since the last stored one (retried with exponential backoff until it
    succeeds), then hand the buffered events over in trade-id order and follow the stream
    (R-IN-3). While the backfill fails the portfolio has an open ``backfill_failed`` gap, so its
    copying is close-only; after ``hold_seconds`` of failures the buffered events are handled
    close-only rather than held, so the leader's reductions are still followed.
    """

    def __init__(
        self,
        engine: CopyEngine,
        *,
        sweep_every: float = 5.0,
        heartbeat_every: float = 30.0,
        heartbeat: Callable[[str], None] | None = None,
        reconnect_delay: float = 0.2,
        check_every: float = CHECK_EVERY_SECONDS,
        window: int = WINDOW_FILLS,
        backfill_delay: float = 0.5,
        backfill_max_delay: float = 30.0,
        hold_seconds: float = 10.0,
        marks_every: float | None = MARK_EVERY_SECONDS,
    ) -> None:
        self.engine = engine
        self.sweep_every = sweep_every
        self.heartbeat_every = heartbeat_every
        self.heartbeat = heartbeat or (lambda line: log.info("copy engine heartbeat: %s", line))
        self.reconnect_delay = reconnect_delay
        self.check_every = check_every
        self.window = window
        self.backfill_delay = backfill_delay
        self.backfill_max_delay = backfill_max_delay
        self.hold_seconds = hold_seconds
        self.marks_every = marks_every  # None: no mark feed (tests that drive prices by hand)
        self.marks = MarkFeed(engine)
        self.wake = asyncio.Event()  # a follower stream event: sweep now
        self.follower_streams = FollowerStreams(engine, self.wake)
        self.funding = FundingReader(engine)
        self.stats = RunStats()
        self.stop_event = asyncio.Event()
        self.ready = asyncio.Event()
        self._started: dict[int, asyncio.Event] = {}
        self._tasks: list[asyncio.Task] = []
        self._settled = asyncio.Event()  # the previous run's open orders are settled

    def stop(self) -> None:
        self.stop_event.set()

    async def run(self) -> RunStats:
        """Start, catch up, follow every leader until ``stop``; return the run's counters."""
        engine = self.engine
        engine.load()
        tasks = self._tasks = []
        for ps in engine.portfolios.values():
            if ps.leader_account_id is not None:
                self._start_following(ps.portfolio_id)
        report = self.stats.last_reconcile = await self._settle_open_intents()
        log.info("open intents settled at start: %s", report.as_dict())
        self._settled.set()
        for started in self._started.values():
            await started.wait()
        self._warm()
        tasks.append(asyncio.create_task(self._sweep(), name="sweep"))
        tasks.append(asyncio.create_task(self._beat(), name="heartbeat"))
        if self.marks_every is not None:
            tasks.append(asyncio.create_task(self._mark_feed(), name="marks"))
        self.ready.set()
        try:
            await self.stop_event.wait()
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await self.follower_streams.close()
            self.heartbeat(f"stopped: {self.stats.line()}")
        return self.stats

    def _start_following(self, portfolio_id: int) -> None:
        self._started[portfolio_id] = asyncio.Event()
        self._tasks.append(
            asyncio.create_task(self._follow(portfolio_id), name=f"leader-{portfolio_id}")
        )

    async def _settle_open_intents(self) -> ReconcileReport:
        """Settle the orders a killed run left open before any new fill is sized.

        A new reduction sized on a position that lacks an executed but unrecorded order would be
        too large and refused (found by the fault campaign).
        """
        return await settle_while_in_flight(self.engine)

    def _warm(self) -> None:
        """Build every follower gateway now (credentials resolved, a bad one logged here, not in
        a fan-out; each account's ccxt client is built on first use) and freeze the start-up heap.

        The loaded state holds many objects; the cyclic garbage collector's full passes over them
        took tens of milliseconds in the middle of a fan-out. ``gc.freeze`` moves everything
        alive after start-up out of the collector's sight.
        """
        for ps in self.engine.portfolios.values():
            for c in ps.copies:
                if c.account_id is not None:
                    try:
                        self.engine.gateway_for(c.account_id)
                    except Exception as exc:  # a bad credential must not stop the others
                        log.warning("gateway of account %s: %r", c.account_id, exc)
        gc.collect()
        gc.freeze()

    async def _follow(self, portfolio_id: int) -> None:
        engine = self.engine
        first = True
        while not self.stop_event.is_set():
            ps = engine.portfolios.get(portfolio_id)
            if ps is None:
                return
            gateway = engine.gateway_for(ps.leader_account_id)
            buffer: asyncio.Queue = asyncio.Queue()
            pump = asyncio.create_task(self._pump(gateway, buffer), name=f"stream-{portfolio_id}")
            try:
                await self._subscribed(gateway)
                await (
                    self._settled.wait()
                )  # no fill is sized on positions missing a killed run's orders
                if first:
                    await baseline(engine, ps)
                else:
                    self.stats.reconnects += 1
                    try:
                        await resolve_open_intents(engine)
                    except Exception:
                        log.exception("settling open intents after reconnect failed")
                first = False
                ended = await self._catch_up(ps, buffer)
                self._started[portfolio_id].set()
                ended = ended or await self._hand_over(ps, buffer)
                while not ended:
                    event = await buffer.get()
                    if isinstance(event, StreamEnded):
                        log.warning(
                            "leader stream of portfolio %s %s; reconnecting",
                            portfolio_id,
                            event.why,
                        )
                        break
                    self.stats.events += 1
                    await engine.on_leader_event(portfolio_id, event, "stream")
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("following portfolio %s failed; reconnecting", portfolio_id)
            finally:
                self._started.setdefault(portfolio_id, asyncio.Event()).set()
                pump.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await pump
            await asyncio.sleep(self.reconnect_delay)

    @staticmethod
    async def _pump(gateway, buffer: asyncio.Queue) -> None:
        """Move the stream's events into ``buffer``; end with a ``StreamEnded``."""
        try:
            async for event in gateway.fills():
                buffer.put_nowait(event)
            buffer.put_nowait(StreamEnded("ended"))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            buffer.put_nowait(StreamEnded(f"dropped: {exc!r}"))

    @staticmethod
    async def _subscribed(gateway) -> None:
        """Return once the stream is live, so the backfill cannot miss what happens meanwhile."""
        start = getattr(gateway, "start_stream", None)
        if start is not None:
            await start()
        else:
            await asyncio.sleep(0.05)

    async def _catch_up(self, ps, buffer: asyncio.Queue) -> bool:
        """Backfill until it succeeds (R-IN-3); return whether the stream ended meanwhile."""
        delay, failing_since, ended = self.backfill_delay, None, False
        while True:
            try:
                await backfill(self.engine, ps)
                break
            except HistoryUnavailable as exc:
                open_gap(self.engine, ps, "backfill_failed", None, str(exc)[:500])
                self._started[ps.portfolio_id].set()  # running, close-only, still retrying
                failing_since = failing_since or time.monotonic()
                if time.monotonic() - failing_since >= self.hold_seconds and not ended:
                    ended = await self._hand_over(ps, buffer)  # close-only meanwhile
                log.warning(
                    "backfill of portfolio %s failed (%s); retrying in %.1fs",
                    ps.portfolio_id,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.backfill_max_delay)
        return ended

    async def _hand_over(self, ps, buffer: asyncio.Queue) -> bool:
        """Handle the buffered events in trade-id order; return whether the stream ended."""
        events = []
        while not buffer.empty():
            events.append(buffer.get_nowait())
        ended = any(isinstance(e, StreamEnded) for e in events)
        trades = [e for e in events if _orderable(e)]
        others = [e for e in events if not _orderable(e) and not isinstance(e, StreamEnded)]
        trades.sort(key=lambda t: (t.symbol, int(t.trade_id)))
        for event in trades + others:
            self.stats.events += 1
            await self.engine.on_leader_event(ps.portfolio_id, event, "stream")
        return ended

    async def _sweep(self) -> None:
        last_check = time.monotonic()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), self.sweep_every)
            self.wake.clear()
            try:
                await resolve_open_intents(self.engine)
                self.follower_streams.follow_resting()
                for ps in list(self.engine.portfolios.values()):
                    async with ps.lock:
                        await closing.reload(self.engine, ps, force=ps.copies_stale)
                        ps.copies_stale = False
                await closing.retry(self.engine)
                await self.funding.due()
                for pid in live_config.add_new_portfolios(self.engine):  # created meanwhile
                    log.info("following new lead portfolio %s", pid)
                    self._start_following(pid)
                if time.monotonic() - last_check >= self.check_every:
                    last_check = time.monotonic()
                    for found in await check_all(self.engine, self.window):
                        if found.missing or found.drift:
                            log.warning("completeness check: %s", found.as_dict())
                self.stats.sweeps += 1
            except Exception:
                log.exception("sweep failed")

    async def _mark_feed(self) -> None:
        """Marks recorded and risk evaluated now (right after the start), then every few seconds."""
        while True:
            try:
                await self.marks.tick()
            except Exception:
                log.exception("mark feed failed")
            await asyncio.sleep(self.marks_every)

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_every)
            self.heartbeat(self.stats.line())
