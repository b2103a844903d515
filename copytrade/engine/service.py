"""Entry points the CLI and the Prefect flows call: run, reconcile, re-sync, close, stop, import."""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import logging
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from copytrade.config import get_settings
from copytrade.db import session_factory, session_scope
from copytrade.engine.completeness import WINDOW_FILLS, ingest_status
from copytrade.engine.core import CopyEngine
from copytrade.engine.importer import ImportReport, import_fills
from copytrade.engine.reconcile import ReconcileReport, reconcile
from copytrade.engine.resync import resync
from copytrade.engine.runner import EngineRunner, RunStats
from copytrade.engine.shards import Shard, ShardLock, running_engines
from copytrade.engine.wiring import GatewayDirectory, SecretSource

log = logging.getLogger(__name__)


EXCHANGE_FORMS = "paper, binance, or an http(s)://host[:port] URL"


def exchange_url(exchange: str | None) -> str | None:
    """Return the base URL for ``exchange``: ``paper`` (default, the configured paper exchange),
    ``binance`` (None: Binance itself) or an explicit http(s) URL; refuse anything else."""
    if exchange in (None, "", "paper"):
        return get_settings().paper_url
    if exchange == "binance":
        return None
    parts = urlsplit(exchange)
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        parts = parts._replace(netloc="")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"exchange {exchange!r} is not {EXCHANGE_FORMS} (R-IN-2)")
    return exchange.rstrip("/")


async def _open(
    database_url: str | None,
    exchange: str | None,
    secrets: SecretSource | None,
    shard: Shard | None = None,
):
    sf = session_factory(database_url)
    directory = GatewayDirectory(sf, exchange_url(exchange), secrets=secrets)
    try:
        await directory.start()
        venue = "binance" if exchange == "binance" else "paper"
        engine = CopyEngine(
            sf,
            directory,
            directory.markets_by_kind,
            venue=venue,
            owns=shard.owns if shard else None,
            ledger_stream=shard.stream if shard else 0,
        )
        engine.load()
    except BaseException:
        # an unreachable exchange or database: close what was opened, then let the CLI say which
        await directory.close()
        raise
    return engine, directory


async def run_engine(
    *,
    database_url: str | None = None,
    exchange: str | None = None,
    secrets: SecretSource | None = None,
    heartbeat: Callable[[str], None] | None = None,
    heartbeat_every: float = 30.0,
    stop: asyncio.Event | None = None,
    shard: Shard | None = None,
    on_stopped: Callable[[int, str | None], None] | None = None,
    on_leader_opened: Callable | None = None,
    on_funding: Callable | None = None,
) -> RunStats:
    """Run the engine (of ``shard``: its lead portfolios, their copies, its ledger stream) until
    ``stop`` is set (or the task is cancelled); close everything after.

    The shard is held first (``ShardLock``): a second process for it raises ``ShardBusy``
    before anything is loaded or sent.

    ``on_stopped(copy_id, stop_reason)`` is called once a stopped copy is flat (``closing``);
    ``on_leader_opened(portfolio_id, symbol, leverage, trade_id, at)`` when a futures leader
    opens a position (``leader_leverage``, R-LEAD-8); ``on_funding(copy_id, payments)`` with
    a futures copy's funding fees (``funding``).
    """
    shard = shard or Shard()
    # A long-running process: should a C extension ever crash it, the Python stacks go to stderr
    # (the CLI's or the flow run's log) instead of a silent exit.
    with contextlib.suppress(ValueError, OSError, AttributeError):  # stderr without a descriptor
        faulthandler.enable()
    with ShardLock(database_url or get_settings().ledger_url, shard):
        engine, directory = await _open(database_url, exchange, secrets, shard)
        engine.on_stopped = on_stopped
        engine.on_leader_opened = on_leader_opened
        engine.on_funding = on_funding
        return await _run(engine, directory, heartbeat, heartbeat_every, stop)


async def _run(engine, directory, heartbeat, heartbeat_every, stop) -> RunStats:
    runner = EngineRunner(engine, heartbeat=heartbeat, heartbeat_every=heartbeat_every)

    async def relay():
        if stop is not None:
            await stop.wait()
            runner.stop()

    async def announce():
        # Once every leader is followed and every follower gateway is built: what an operator
        # (or a failover script) waits for before counting on this shard.
        await runner.ready.wait()
        copies = sum(len(ps.copies) for ps in engine.portfolios.values())
        runner.heartbeat(f"ready: {len(engine.portfolios)} lead portfolios, {copies} copies")

    helpers = [asyncio.create_task(relay()), asyncio.create_task(announce())]
    try:
        return await runner.run()
    finally:
        for task in helpers:
            task.cancel()
        await directory.close()


async def reconcile_once(
    *,
    database_url: str | None = None,
    exchange: str | None = None,
    secrets: SecretSource | None = None,
    window: int = WINDOW_FILLS,
) -> ReconcileReport:
    """One backfill, completeness check and reconciliation sweep (the ingest flow, every minute).

    A running engine shard does all of this itself for the portfolios it owns (its sweep every
    few seconds, its check every minute); a second process acting on them would write orders for
    the same follower accounts beside it, on positions it does not hold in memory. So the
    portfolios of running shards are left to them (their open gaps are still reported, from the
    ledger), and this acts for the shards that are down, on each one's own ledger stream.
    """
    fleet = running_engines(database_url or get_settings().ledger_url)
    if fleet.count is None:  # no engine runs: act for every portfolio
        return await _reconcile_as(None, database_url, exchange, secrets, window)
    report = ReconcileReport(left_to_engines=[str(fleet)])
    for shard in fleet.free():
        report = await _reconcile_as(shard, database_url, exchange, secrets, window, report)
    with session_scope(database_url) as session:
        owned_by_running = {p.portfolio_id: p for p in ingest_status(session)}
    for pid, status in owned_by_running.items():
        if status.gaps and any(Shard(i, fleet.count).owns(pid) for i in fleet.running):
            report.close_only.append(f"portfolio {pid}: " + "; ".join(status.gaps))
    return report


async def _reconcile_as(shard, database_url, exchange, secrets, window, report=None):
    engine, directory = await _open(database_url, exchange, secrets, shard)
    try:
        return await reconcile(engine, window=window, report=report)
    finally:
        await directory.close()


async def resync_copy(
    copy_id: int,
    symbols: list[str] | None = None,
    *,
    database_url: str | None = None,
    exchange: str | None = None,
    secrets: SecretSource | None = None,
) -> list:
    """Bring one copy back to the leader's proportional position (R-X-2)."""
    engine, directory = await _open(database_url, exchange, secrets)
    try:
        return await resync(engine, copy_id, symbols)
    finally:
        await directory.close()


async def close_or_stop(
    copy_id: int,
    symbol: str | None,
    *,
    stop_copying: bool,
    database_url: str | None = None,
    exchange: str | None = None,
    secrets: SecretSource | None = None,
    on_stopped: Callable[[int, str | None], None] | None = None,
) -> None:
    """Close one copied position by hand, or stop copying (closing every position) (R-COPY-5)."""
    engine, directory = await _open(database_url, exchange, secrets)
    engine.on_stopped = on_stopped
    try:
        if stop_copying:
            await engine.stop_copy(copy_id, "stop_copy")
        else:
            await engine.close_position(copy_id, symbol)
    finally:
        await directory.close()


def import_leader_fills(
    portfolio_id: int, path: Path, fmt: str | None = None, database_url: str | None = None
) -> ImportReport:
    """Import a leader's past fills into the ledger database (one transaction)."""
    with session_scope(database_url) as session:
        return import_fills(session, portfolio_id, path, fmt)
