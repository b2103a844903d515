"""`copytrade marks`: load mark prices from candle files or the exchange; list what is stored."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import typer

from copytrade.cli.common import Table, console, refuse
from copytrade.cli.engine import EXCHANGE
from copytrade.cli.failures import reported
from copytrade.cli.platform_db import transaction

app = typer.Typer(
    help="Mark prices (one minute-grain table): load candle files, fetch from the exchange, list.",
    no_args_is_help=True,
)

MARKET = typer.Option(
    None, "--market", help="spot or usdm (default: from the file's folder or name)."
)


def _market(value: str | None) -> str | None:
    if value not in (None, "spot", "usdm"):
        raise refuse(f"--market {value!r} must be spot or usdm")
    return value


@app.command()
def load(
    files: list[Path] = typer.Argument(..., help="Candle CSV files (timestamp … close, volume)."),
    market: str = MARKET,
) -> None:
    """Record every candle of the files as a mark at its close minute (idempotent).

    A file with a bad row is refused whole and nothing is stored (exit 2).
    """
    from copytrade.marks.candles import load_files

    market = _market(market)
    for path in files:
        if not path.is_file():
            raise refuse(f"file {path} does not exist")
    with transaction() as session:
        recorded = load_files(session, files, market)
    table = Table("file", "inserted", "updated", "unchanged", title="Marks loaded")
    for name, r in recorded.items():
        table.add_row(name, f"{r.inserted:,}", f"{r.updated:,}", f"{r.unchanged:,}")
    console.print(table)


@app.command()
def fetch(
    symbol: list[str] = typer.Option(..., "--symbol", help="Exchange id, e.g. 1000PEPEUSDT."),
    market: str = typer.Option("usdm", "--market", help="spot or usdm."),
    since: str = typer.Option(..., "--since", help="First UTC day (YYYY-MM-DD)."),
    until: str = typer.Option(None, "--until", help="Last UTC day (default: today)."),
    interval: str = typer.Option("1d", "--interval", help="1d (daily closes) or 1m (minutes)."),
    exchange: str = EXCHANGE,
) -> None:
    """Fetch candles from the exchange's klines endpoint and record them as marks (idempotent)."""
    from copytrade.marks.fetch import INTERVALS

    market = _market(market)
    if interval not in INTERVALS:
        raise refuse(f"--interval {interval!r} must be one of {', '.join(INTERVALS)}")
    try:
        first = date.fromisoformat(since)
        last = date.fromisoformat(until) if until else datetime.now(UTC).date()
    except ValueError as exc:
        raise refuse(f"--since/--until: {exc} (YYYY-MM-DD)") from None
    if first > last:
        raise refuse(f"--since {first} is after --until {last}")
    start = datetime(first.year, first.month, first.day, tzinfo=UTC)
    end = datetime(last.year, last.month, last.day, tzinfo=UTC) + timedelta(days=1)
    with reported():  # an unreachable exchange: one line (no query string), exit 3
        results = asyncio.run(_fetch(exchange, market, symbol, start, end, interval))
    table = Table("symbol", "inserted", "updated", "unchanged", title=f"Marks fetched ({interval})")
    for name, r in results.items():
        table.add_row(name, f"{r.inserted:,}", f"{r.updated:,}", f"{r.unchanged:,}")
    console.print(table)


async def _fetch(exchange: str, market: str, symbols: list[str], start, end, interval: str):
    import ccxt.async_support as ccxt

    from copytrade.engine.service import exchange_url
    from copytrade.exchange.factory import new_client
    from copytrade.marks.fetch import BinanceKlines, fetch_marks

    client = new_client("futures" if market == "usdm" else "spot", exchange_url(exchange))
    results = {}
    try:
        source = BinanceKlines(client, market)
        for symbol in symbols:
            with transaction() as session:
                results[symbol] = await fetch_marks(
                    source, session, symbol, market, start, end, interval
                )
    except ccxt.BadRequest as exc:
        raise refuse(f"the exchange refused the request: {str(exc)[:200]}") from None
    finally:
        await client.close()
    return results


@app.command()
def prune(
    keep_minutes_days: int = typer.Option(
        30,
        "--keep-minutes-days",
        max=36_500,
        help="Keep every minute of the last N days (N ≥ 1).",
    ),
) -> None:
    """Delete minute marks older than N days, keeping each day's close and its summed volume."""
    from copytrade.marks.store import PrunePolicy
    from copytrade.marks.store import prune as run_prune

    if keep_minutes_days < 1:
        raise refuse(f"--keep-minutes-days {keep_minutes_days} must be at least 1")
    with transaction() as session:
        removed = run_prune(session, PrunePolicy(keep_minutes_days))
    console.print(f"{removed:,} minute marks removed; every day's close kept")


@app.command("list")
def list_() -> None:
    """Stored marks per market and symbol: first and last minute, count."""
    from copytrade.marks.store import stored_summary

    with transaction() as session:
        rows = stored_summary(session)
    table = Table("market", "symbol", "first", "last", "marks", title="Mark prices")
    for market, symbol, first, last, count in rows:
        table.add_row(
            market, symbol, f"{first:%Y-%m-%d %H:%M}", f"{last:%Y-%m-%d %H:%M}", f"{count:,}"
        )
    console.print(table)
