"""Run the copy engine for a long time: leader streams, periodic sweeps, heartbeats, clean stop.

On start and after every stream reconnect the engine reconciles (``reconcile``); between
events a sweep settles unknown outcomes and reloads changed copies. ``stop`` (SIGTERM in the
CLI) lets the event being processed finish, then closes the gateways.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from copytrade.engine.core import CopyEngine
from copytrade.engine.reconcile import ReconcileReport, backfill, reconcile, resolve_open_intents

log = logging.getLogger(__name__)


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


class EngineRunner:
    """Drive a ``CopyEngine``: one stream task per lead portfolio plus a sweep and a heartbeat."""

    def __init__(
        self,
        engine: CopyEngine,
        *,
        sweep_every: float = 5.0,
        heartbeat_every: float = 30.0,
        heartbeat: Callable[[str], None] | None = None,
        reconnect_delay: float = 0.2,
    ) -> None:
        self.engine = engine
        self.sweep_every = sweep_every
        self.heartbeat_every = heartbeat_every
        self.heartbeat = heartbeat or (lambda line: log.info("copy engine heartbeat: %s", line))
        self.reconnect_delay = reconnect_delay
        self.stats = RunStats()
        self.stop_event = asyncio.Event()
        self.ready = asyncio.Event()

    def stop(self) -> None:
        self.stop_event.set()

    async def run(self) -> RunStats:
        """Start, reconcile, follow every leader until ``stop``; return the run's counters."""
        engine = self.engine
        engine.load()
        tasks = []
        for ps in engine.portfolios.values():
            if ps.leader_account_id is not None:
                tasks.append(
                    asyncio.create_task(
                        self._follow(ps.portfolio_id), name=f"leader-{ps.portfolio_id}"
                    )
                )
        self.stats.last_reconcile = await reconcile(engine)
        log.info("reconciled at start: %s", self.stats.last_reconcile.as_dict())
        self._warm()
        tasks.append(asyncio.create_task(self._sweep(), name="sweep"))
        tasks.append(asyncio.create_task(self._beat(), name="heartbeat"))
        self.ready.set()
        try:
            await self.stop_event.wait()
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            self.heartbeat(f"stopped: {self.stats.line()}")
        return self.stats

    def _warm(self) -> None:
        """Build every follower gateway now and freeze the start-up heap.

        A ccxt client holds tens of thousands of objects; with a thousand of them the cyclic
        garbage collector's full passes took tens of milliseconds in the middle of a fan-out.
        ``gc.freeze`` moves everything alive after start-up out of the collector's sight.
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
            stream = gateway.fills().__aiter__()
            pending = asyncio.ensure_future(stream.__anext__())
            await asyncio.sleep(0.05)  # let the subscription open before backfilling the gap
            if not first:
                self.stats.reconnects += 1
                try:
                    await resolve_open_intents(engine)
                    await backfill(engine, ps)
                except Exception:
                    log.exception("reconciliation after reconnect failed")
            first = False
            try:
                while True:
                    event = await pending
                    self.stats.events += 1
                    await engine.on_leader_event(portfolio_id, event, "stream")
                    pending = asyncio.ensure_future(stream.__anext__())
            except asyncio.CancelledError:
                pending.cancel()
                raise
            except StopAsyncIteration:
                log.info("leader stream of portfolio %s ended; reconnecting", portfolio_id)
            except Exception as exc:
                log.warning(
                    "leader stream of portfolio %s dropped: %r; reconnecting", portfolio_id, exc
                )
            await asyncio.sleep(self.reconnect_delay)

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_every)
            try:
                await resolve_open_intents(self.engine)
                for pid, ps in list(self.engine.portfolios.items()):
                    async with ps.lock:
                        self.engine.refresh_copies([pid])
                self.stats.sweeps += 1
            except Exception:
                log.exception("sweep failed")

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_every)
            self.heartbeat(self.stats.line())
