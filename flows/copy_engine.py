"""The copy engine as one long Prefect flow run: heartbeats in the logs, never a task per order.

With ``shards`` > 1 each deployment ``copy-engine-I`` runs shard I of N (``copytrade up --shards
N``); its ``concurrency_limit: 1`` and the shard's PostgreSQL advisory lock keep it to one run.
"""

from __future__ import annotations

import asyncio

from prefect import flow, get_run_logger

from copytrade.db import session_factory
from copytrade.engine.service import run_engine
from copytrade.engine.shards import Shard
from copytrade.platform.leaders import leverage_recorder
from copytrade.settlement.events import copy_stopped_event
from copytrade.settlement.funding import funding_poster
from flows._secrets import prefect_secret


def announce_stop(copy_id: int, stop_reason: str | None) -> None:
    """Emit ``copytrade.copy.stopped``: the ``settle-event`` automation settles the copy (R-SET-5)."""
    from prefect.events import emit_event

    emit_event(**copy_stopped_event(copy_id, stop_reason))


@flow(
    name="copy-engine",
    flow_run_name="copy-engine-{exchange}-shard-{shard}-of-{shards}",
    log_prints=False,
)
async def copy_engine(
    exchange: str = "paper",
    heartbeat_every: float = 30.0,
    run_for_seconds: float | None = None,
    shard: int = 0,
    shards: int = 1,
) -> str:
    """Follow the leaders of shard ``shard`` of ``shards`` and copy their fills until cancelled
    (or ``run_for_seconds``)."""
    logger = get_run_logger()
    which = Shard(shard, shards)  # a bad pair fails the run at once, naming the rule
    stop = asyncio.Event()
    if run_for_seconds:
        asyncio.get_running_loop().call_later(run_for_seconds, stop.set)
    stats = await run_engine(
        exchange=exchange,
        secrets=prefect_secret,
        heartbeat=lambda line: logger.info("heartbeat shard %s: %s", which, line),
        heartbeat_every=heartbeat_every,
        stop=stop,
        shard=which,
        on_stopped=announce_stop,
        on_leader_opened=leverage_recorder(session_factory()),
        on_funding=funding_poster(session_factory()),
    )
    return stats.line()
