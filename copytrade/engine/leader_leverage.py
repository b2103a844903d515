"""The leader's own leverage (R-LEAD-8): read when the leader opens a futures position.

The platform cannot refuse the leader's order on an exchange it does not run; it records a
position opened above 5× at 100,000 USD AUM or more as a violation (``platform.leaders.
record_leader_leverage``, called by the driver through ``engine.on_leader_opened``) and copies of
the portfolio then skip openings above 5× (``leverage_cap``). The engine reads the leverage the
exchange reports for the new position (``positions()``) in a task of its own, after the copies
were sent: the hot path never waits for it, and a failed read is logged, not retried.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from copytrade.engine.state import PortfolioState

log = logging.getLogger(__name__)
_pending: set[asyncio.Task] = set()  # keep the checks alive until they finish


def opened(engine, ps: PortfolioState, symbol: str, trade_id: str, at: datetime) -> None:
    """The leader opened ``symbol`` from flat: check its leverage in the background."""
    if ps.mode != "futures" or engine.on_leader_opened is None or ps.leader_account_id is None:
        return
    task = asyncio.get_running_loop().create_task(_check(engine, ps, symbol, trade_id, at))
    _pending.add(task)
    task.add_done_callback(_pending.discard)


async def _check(engine, ps: PortfolioState, symbol: str, trade_id: str, at: datetime) -> None:
    try:
        gateway = engine.gateway_for(ps.leader_account_id)
        leverage = next(
            (p.leverage for p in await gateway.positions() if p.symbol == symbol and p.quantity),
            None,
        )
        if leverage:
            aum = ps.aum()  # the engine's view, as its own per-order cap uses
            await asyncio.to_thread(
                engine.on_leader_opened, ps.portfolio_id, symbol, leverage, trade_id, at, aum
            )
    except Exception:
        log.exception("leader leverage of portfolio %s %s not checked", ps.portfolio_id, symbol)
