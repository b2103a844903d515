"""The running engine's mark feed: fetch, record into ``mark_prices``, evaluate risk on the mark.

Every ``MARK_EVERY_SECONDS`` (and once right after a start) the feed asks the exchange, through
the gateway port (``fetch_marks``: USDⓈ-M ``premiumIndex`` mark price, spot last price), for the
mark of every symbol a lead portfolio or one of its copies holds (stopped copies still closing
included). It then

1. records them into ``mark_prices`` (``copytrade.marks.store.record``): one row per market,
   symbol and UTC minute, the minute's row corrected to the latest mark, so at most one row per
   symbol per minute whatever the interval; settlement reads the last one at or before its
   instant within ``MARK_FRESHNESS`` (R-SET-3, R-SET-6), the metrics their daily closes;
2. prunes by ``PrunePolicy`` (every minute of the last 30 days, then each day's close), at most
   once per ``PRUNE_EVERY``;
3. updates the engine's prices and evaluates, under each portfolio's lock, the daily loss guard,
   per-position TP/SL and copy stop-loss / take-profit (``copytrade.engine.risk``), so a stop
   fires within one mark update even when the leader is idle or the engine just restarted.

One public request per market kind per tick, whatever the number of copies. A failed fetch is
logged and tried at the next tick; the previous prices stay in use meanwhile.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from copytrade import clock
from copytrade.engine.state import PortfolioState
from copytrade.exchange.protocol import Marks
from copytrade.marks.store import Mark, PrunePolicy, prune, record

log = logging.getLogger(__name__)
MARK_EVERY_SECONDS = 5.0
PRUNE_EVERY = timedelta(hours=6)
MARKET_OF_MODE = {"futures": "usdm", "spot": "spot"}  # portfolio mode → mark_prices.market
SOURCE = "engine:fetch_marks"


def held_symbols(ps: PortfolioState, closing=()) -> set[str]:
    """Symbols the leader or a copy of the portfolio holds (``closing``: stopped, not yet flat)."""
    held = {s for s, q in ps.leader_positions.items() if q}
    for c in [*ps.copies, *closing]:
        held.update(s for s, p in c.positions.items() if p.quantity)
    return held


@dataclass(frozen=True, slots=True)
class Tick:
    fetched: int = 0
    recorded: int = 0
    pruned: int = 0
    failed: tuple[str, ...] = ()


class MarkFeed:
    """Fetch, record and act on marks for one ``CopyEngine`` (see the module docstring)."""

    def __init__(self, engine, policy: PrunePolicy | None = None) -> None:
        self.engine = engine
        self.policy = policy or PrunePolicy()
        self.last_prune: datetime | None = None

    def _wanted(self) -> dict[str, dict[int, set[str]]]:
        """mode → portfolio id → held symbols."""
        closing: dict[int, list] = {}
        for entry in self.engine.closing.values():
            closing.setdefault(entry.portfolio_id, []).append(entry.copy)
        out: dict[str, dict[int, set[str]]] = {}
        for pid, ps in self.engine.portfolios.items():
            held = held_symbols(ps, closing.get(pid, ()))
            if held:
                out.setdefault(ps.mode, {})[pid] = held
        return out

    def _gateway(self, mode: str):
        """Any account's gateway of that market kind: marks are public data."""
        for ps in self.engine.portfolios.values():
            if ps.mode == mode and ps.leader_account_id is not None:
                return self.engine.gateway_for(ps.leader_account_id)
        return None

    async def tick(self) -> Tick:
        """One round: fetch every held symbol's mark, record, prune when due, evaluate risk."""
        wanted = self._wanted()
        now = clock.now()
        fetched: dict[str, Marks] = {}
        failed = []
        for mode, by_portfolio in wanted.items():
            gateway = self._gateway(mode)
            symbols = sorted(set().union(*by_portfolio.values()))
            if gateway is None:
                continue
            try:
                fetched[mode] = await gateway.fetch_marks(symbols)
            except Exception as exc:  # an exchange hiccup: keep the last prices, try next tick
                log.warning("fetching %s marks failed: %r", mode, exc)
                failed.append(mode)
        marks = [
            Mark(symbol, MARKET_OF_MODE[mode], now, price, source=SOURCE)
            for mode, prices in fetched.items()
            for symbol, price in prices.items()
        ]
        recorded = pruned = 0
        try:  # a failed write (another engine shard wrote the same minute) must not stop risk
            if marks:
                with self.engine.sf() as session, session.begin():
                    result = record(session, marks)
                    recorded = result.inserted + result.updated
                    if self.last_prune is None or now - self.last_prune >= PRUNE_EVERY:
                        pruned = prune(session, self.policy, now)
                        self.last_prune = now
        except Exception as exc:
            log.warning("recording %s marks failed (next tick writes them): %r", len(marks), exc)
        for mode, prices in fetched.items():
            self.engine.note_marks(mode, prices, at=prices.at)
            for pid, symbols in wanted[mode].items():
                ps = self.engine.portfolios.get(pid)
                if ps is None or ps.book is None:
                    continue
                async with ps.lock:
                    await self.engine._guards(ps, sorted(symbols & set(prices)))
        return Tick(len(marks), recorded, pruned, tuple(failed))
