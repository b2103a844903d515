"""`copytrade engine …`: run the copy engine, reconcile, re-sync, close by hand, import history."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal

import typer
from rich.text import Text

from copytrade.cli.common import (
    EXIT_PROBLEM,
    EXIT_UNAVAILABLE,
    Table,
    check_id,
    console,
    err_console,
    finite,
    refusals,
    refuse,
)
from copytrade.engine.completeness import WINDOW_FILLS

app = typer.Typer(
    help="The copy engine: leader fills in, follower orders out.", no_args_is_help=True
)


def _check_exchange(value: str) -> str:
    """Refuse an --exchange that is not paper, binance or an http(s) URL (exit 2, R-IN-2)."""
    from copytrade.engine.service import exchange_url

    if not value.strip():
        raise typer.BadParameter("'' is empty: give paper, binance or a URL (R-IN-2)")
    try:
        exchange_url(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    return value


EXCHANGE = typer.Option(
    "paper",
    "--exchange",
    help="paper (the configured paper exchange), binance, or an http(s)://host[:port] URL.",
    callback=_check_exchange,
)


def _check_shard(value: str) -> str:
    """Refuse a --shard that is not I/N with 0 ≤ I < N (exit 2, R-IN-2)."""
    from copytrade.engine.shards import Shard

    try:
        Shard.parse(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    return value


RUN_EPILOG = (
    "Exit codes: 0 stopped cleanly; 2 bad input (e.g. --shard not I/N, or N > 1 on a SQLite "
    "ledger); 3 the database or the exchange cannot be reached, or another process already runs "
    "this shard (PostgreSQL advisory lock) or another shard layout."
)


@app.command(epilog=RUN_EPILOG)
def run(
    exchange: str = EXCHANGE,
    shard: str = typer.Option(
        "0/1",
        "--shard",
        help="I/N: run shard I of N (the lead portfolios whose stable hash falls in shard I, "
        "with every copy of them). 0/1, the default, is the whole platform.",
        callback=_check_shard,
    ),
    heartbeat_every: float = typer.Option(
        30.0, help="Seconds between heartbeat lines.", callback=finite(0, above=True)
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log every leader event."),
) -> None:
    """Run the copy engine until SIGTERM or Ctrl-C (clean shutdown: the current fill finishes)."""
    from sqlalchemy.exc import OperationalError

    from copytrade.db import session_factory
    from copytrade.engine.service import run_engine
    from copytrade.engine.shards import Shard, ShardBusy
    from copytrade.platform.leaders import leverage_recorder
    from copytrade.settlement.funding import funding_poster

    which = Shard.parse(shard)

    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        stats = await run_engine(
            exchange=exchange,
            stop=stop,
            heartbeat=lambda line: console.print(f"[dim]heartbeat[/] shard {which}: {line}"),
            heartbeat_every=heartbeat_every,
            shard=which,
            on_stopped=lambda cid, why: loop.run_in_executor(None, _settle_now, cid, why),
            on_leader_opened=leverage_recorder(session_factory()),
            on_funding=funding_poster(session_factory()),
        )
        console.print(f"copy engine shard {which} stopped: {stats.line()}")

    with refusals():
        try:
            with asyncio.Runner(loop_factory=_loop_factory()) as runner:
                runner.run(main())
        except ShardBusy as exc:
            err_console.print(f"[bold red]shard busy:[/] {exc}", soft_wrap=True)  # one line
            raise typer.Exit(EXIT_UNAVAILABLE) from None
        except OperationalError as exc:
            why = " ".join(str(exc.orig).split())[:300]
            err_console.print(f"[bold red]database unreachable:[/] {why}", soft_wrap=True)
            raise typer.Exit(EXIT_UNAVAILABLE) from None
        except OSError as exc:
            err_console.print(f"[bold red]exchange unreachable:[/] {exc}")
            raise typer.Exit(EXIT_UNAVAILABLE) from None


def _loop_factory():
    """uvloop when installed (the paper exchange's server loop too): the engine's hot path is
    thousands of socket writes and reads per leader fill, each a loop callback, cheaper there."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


RECONCILE_EPILOG = (
    "Exit codes: 0 complete (every lead portfolio's fills and position match the exchange, no "
    "order without an outcome); 1 something is left unresolved (a position drift, a portfolio "
    "close-only, an exchange answer missing, an order still unknown: see the JSON); 2 bad input; "
    "3 the database or the exchange cannot be reached."
)


@app.command(epilog=RECONCILE_EPILOG)
def reconcile(
    exchange: str = EXCHANGE,
    window: int = typer.Option(
        WINDOW_FILLS,
        "--window",
        min=1,
        max=1_000_000,
        help="Compare the exchange's trades after the N newest stored fills of each symbol.",
    ),
) -> None:
    """Backfill leader fills, check them and the leader's position against the exchange over a
    trailing window (R-IN-3), settle follower orders without an outcome; print what was found.

    The portfolios of a running `engine run` (or shard) are left to it: it does the same every
    few seconds, and two processes would write orders for the same followers. Their open gaps
    are still reported; `left_to_engines` names the running shards."""
    from copytrade.engine.service import reconcile_once

    report = asyncio.run(reconcile_once(exchange=exchange, window=window))
    console.print_json(json.dumps(report.as_dict() | {"unresolved": report.unresolved}))
    if report.unresolved:
        raise typer.Exit(EXIT_PROBLEM)


STATUS_EPILOG = (
    "Exit codes: 0 every lead portfolio copies normally; 1 some portfolio is close-only because "
    "its fill history has an open gap or its position drifts (R-IN-3); 3 the database cannot be "
    "reached."
)


@app.command(epilog=STATUS_EPILOG)
def status() -> None:
    """Show each lead portfolio's ingest state: watermarks, open gaps, close-only (R-IN-3)."""
    from copytrade.db import session_scope
    from copytrade.engine.completeness import ingest_status

    with session_scope() as session:
        rows = ingest_status(session)
    table = Table("portfolio", "mode", "symbols", "fills", "copying", "open gaps", title="Ingest")
    for row in rows:
        table.add_row(
            str(row.portfolio_id),
            row.mode,
            str(row.symbols),
            str(row.fills),
            Text("close-only", style="bold red") if row.gaps else "normal",
            "; ".join(row.gaps) or "-",
        )
    console.print(table)
    if any(row.gaps for row in rows):
        raise typer.Exit(EXIT_PROBLEM)


@app.command()
def resync(
    copy_id: int = typer.Argument(
        ..., help="The copy to bring back to the leader's proportional position.", callback=check_id
    ),
    symbol: list[str] = typer.Option(None, "--symbol", help="Only these symbols (repeatable)."),
    exchange: str = EXCHANGE,
) -> None:
    """Re-sync a drifted copy: every correcting order is recorded as a re-sync (R-X-2)."""
    from copytrade.engine.service import resync_copy

    with refusals():
        try:
            intents = asyncio.run(resync_copy(copy_id, symbol or None, exchange=exchange))
        except KeyError:
            raise refuse(f"copy_id {copy_id} is not an active copy (R-X-2)") from None
    if not intents:
        console.print(f"copy {copy_id} is in sync")
        return
    for it in intents:
        console.print(
            f"re-sync {it.client_order_id}: {it.side} {it.quantity} {it.symbol}", markup=False
        )


@app.command("close-position")
def close_position(
    copy_id: int = typer.Argument(..., help="The copy whose position to close.", callback=check_id),
    symbol: str = typer.Argument(..., help="Exchange symbol, e.g. BTCUSDT."),
    exchange: str = EXCHANGE,
) -> None:
    """Close one copied position by hand (R-COPY-5)."""
    from copytrade.engine.service import close_or_stop

    try:
        asyncio.run(close_or_stop(copy_id, symbol.upper(), stop_copying=False, exchange=exchange))
    except KeyError:
        raise refuse(f"copy_id {copy_id} is not an active copy (R-COPY-5)") from None
    console.print(f"closed copy {copy_id} {symbol.upper()}", markup=False)


def _settle_now(copy_id: int, stop_reason: str | None) -> None:
    """Settle a stopped, flat copy at once (R-SET-5): the CLI engine has no Prefect automation.

    Idempotent (``settle_event``): the weekly run or a second call pays nothing twice. A
    blocked or failed settlement is reported and left to the weekly run.
    """
    from copytrade import clock
    from copytrade.config import get_settings
    from copytrade.db import session_factory
    from copytrade.settlement import RecordedMarks, SettlementService, ledger_integrity_gate

    url = get_settings().ledger_url
    sessions = session_factory(url)
    marks = RecordedMarks(sessions).preload(clock.now())
    service = SettlementService(sessions, gate=ledger_integrity_gate(url), marks=marks)
    try:
        report = service.settle_event(copy_id)
        console.print(f"copy {copy_id} settled ({stop_reason or 'stop_copy'}): {report.summary()}")
    except Exception as exc:  # the weekly run settles it; the engine keeps running
        err_console.print(f"[yellow]copy {copy_id} not settled now[/]: {exc}")


@app.command("stop-copy")
def stop_copy(
    copy_id: int = typer.Argument(..., help="The copy to stop.", callback=check_id),
    exchange: str = EXCHANGE,
) -> None:
    """Stop copying: positions closed, settlement trigger recorded (R-COPY-5, R-SET-5)."""
    from copytrade.engine.service import close_or_stop

    try:
        asyncio.run(
            close_or_stop(
                copy_id, None, stop_copying=True, exchange=exchange, on_stopped=_settle_now
            )
        )
    except KeyError:
        raise refuse(f"copy_id {copy_id} is not an active copy (R-COPY-5)") from None
    console.print(f"copy {copy_id} stopped")


# `engine import-fills` is `leaders import-fills` (copytrade/cli/leaders.py), listed here too.
def _register_import_fills() -> None:
    from copytrade.cli.leaders import import_fills

    app.command("import-fills")(import_fills)


_register_import_fills()
