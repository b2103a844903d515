"""Stage 4, send: persisted intents → orders on the exchange, through the exchange port.

A thin layer over ``dispatch.send_all`` (one gateway per follower account, ``place_many``): the
leverage is set first where needed, and through zero the reductions are answered before the
openings are sent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from copytrade.engine.dispatch import SendResult, send_all
from copytrade.engine.types import Intent
from copytrade.exchange.protocol import OrderRequest

if TYPE_CHECKING:
    from copytrade.engine.core import CopyEngine

log = logging.getLogger(__name__)
LEVERAGE_CONCURRENCY = 64
LEVERAGE_RETRY_SECONDS = 30.0


async def send_by_leg(engine: CopyEngine, intents: list[Intent]) -> list[SendResult]:
    """Send a fill's orders, the reductions (leg 0) answered before the openings (leg 1).

    Through zero (futures, one-way mode) a follower gets a reduce-only close and an opening on
    the other side. Sent together, the opening could execute first; the close then meets a
    position it would flip and is refused (-2022), leaving the follower long while the leader
    is short (found by the fault campaign).
    """
    if all(it.leg == 0 for it in intents):
        return await engine._send(intents)
    answers: dict[int, SendResult] = {}
    for leg in sorted({it.leg for it in intents}):
        batch = [it for it in intents if it.leg == leg]
        answers.update(zip((it.intent_id for it in batch), await engine._send(batch), strict=True))
    return [answers[it.intent_id] for it in intents]


async def send(engine: CopyEngine, intents: list[Intent]) -> list[SendResult]:
    """Send ``intents`` concurrently, leverage first where it is not set yet."""
    orders = [(engine.gateway_for(it.copy.account_id), order_request(it), it) for it in intents]
    if not orders:
        return []
    now = time.monotonic()
    pending = []
    for gw, _, it in orders:
        if it.leverage and not it.reduce_only:
            key = (it.copy.account_id, it.symbol, it.leverage)
            if key not in engine._leverage_set and engine._leverage_retry.get(key, 0.0) <= now:
                pending.append((gw, it, key))
    if pending:
        # Leverage first, once per account, symbol and leverage, with bounded concurrency:
        # a thousand at once queue long enough to fall outside Binance's recvWindow.
        await _set_leverage(engine, pending)
    return await send_all([(gw, req) for gw, req, _ in orders])


async def _set_leverage(engine: CopyEngine, pending) -> None:
    sem = asyncio.Semaphore(LEVERAGE_CONCURRENCY)

    async def one(gw, it, key):
        async with sem:
            try:
                await gw.set_leverage(it.symbol, it.leverage)
                engine._leverage_set.add(key)
            except Exception as exc:  # the order still goes; leverage is tried again later
                engine._leverage_retry[key] = time.monotonic() + LEVERAGE_RETRY_SECONDS
                log.warning("set_leverage %s failed: %r", key, exc)

    await asyncio.gather(*(one(*p) for p in pending))


def order_request(it: Intent) -> OrderRequest:
    """The exchange order of an intent."""
    return OrderRequest(
        symbol=it.symbol,
        side=it.side,
        quantity=it.quantity,
        client_order_id=it.client_order_id,
        reduce_only=it.reduce_only,
    )
