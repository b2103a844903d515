"""`copytrade paper`: run the paper exchange, manage its accounts and faults, run a leader bot."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer

from copytrade.cli.common import (
    EXIT_UNAVAILABLE,
    console,
    err_console,
    finite,
    handles_refusals,
    refuse,
)
from copytrade.config import DEFAULT_PAPER_PORT, get_settings

LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")


def _check_url(value: str | None) -> str | None:
    """Refuse a --url that is not http(s)://host[:port] before anything is sent (exit 2, R-IN-2)."""
    from urllib.parse import urlsplit

    if value is None:
        return value
    parts = urlsplit(value)
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number in 0-65535
    except ValueError:
        parts = parts._replace(netloc="")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise typer.BadParameter(f"{value!r} is not an http(s)://host[:port] URL (R-IN-2)")
    return value


URL = typer.Option(
    None,
    help="Paper exchange URL (default: COPYTRADE_PAPER_HOST/PORT).",
    callback=_check_url,
)

app = typer.Typer(
    help="The paper exchange: a local Binance-compatible exchange (spot and USDⓈ-M) for tests, demo and benchmarks.",
    no_args_is_help=True,
)


@app.command()
def serve(
    host: str = typer.Option(
        None, help="Address to listen on (default: COPYTRADE_PAPER_HOST, loopback)."
    ),
    port: int = typer.Option(
        None,
        min=1,
        max=65535,
        help=f"Port to listen on (default: COPYTRADE_PAPER_PORT, {DEFAULT_PAPER_PORT}).",
    ),
    start: str = typer.Option("2025-01-27T00:00:00Z", help="Simulated market time at start (UTC)."),
    speed: float = typer.Option(
        1.0,
        help="Simulated seconds per wall-clock second (0 freezes prices).",
        callback=finite(0),
    ),
    data_dir: Path = typer.Option(
        None, help="Reference data folder (default: COPYTRADE_DATA_DIR)."
    ),
    log_level: str = typer.Option("warning", help="uvicorn log level."),
) -> None:
    """Start the paper exchange (HTTP + websocket) and serve until interrupted.

    Without COPYTRADE_PAPER_ADMIN_TOKEN a random admin token is generated, written to
    <COPYTRADE_HOME>/paper-admin-token (mode 0600), where the other `copytrade paper` commands read
    it, and printed once when standard error is a terminal (never into a captured log).
    Exit 2: a bad option.
    """
    import uvicorn

    from copytrade.paper import admin_token
    from copytrade.paper.app import PaperServer
    from copytrade.paper.prices import parse_time_ms
    from copytrade.paper.server import uvicorn_config

    settings = get_settings()
    # The clients (engine, CLI, bots) find the exchange at COPYTRADE_PAPER_HOST/PORT: serve there.
    host, port = host or settings.paper_host, port or settings.paper_port
    folder = data_dir or settings.data_dir
    if not (folder / "exchange" / "binance-markets.json").exists():
        raise refuse(
            f"data_dir: {folder} has no exchange/binance-markets.json (set COPYTRADE_DATA_DIR)"
        )
    try:
        parse_time_ms(start)
    except ValueError:
        raise refuse(f"start: {start!r} is not an instant like 2025-01-27T00:00:00Z") from None
    if log_level.lower() not in LOG_LEVELS:
        raise refuse(f"log_level: {log_level!r} is not one of {', '.join(LOG_LEVELS)}")
    token = admin_token.configured(settings)
    if token is None:
        token_file = settings.paper_admin_token_file
        token = admin_token.generate(token_file)
        # Shown once, to the operator at a terminal; when stderr is captured (`copytrade up`
        # writes it to a log file) only where it is kept, so the token never lands in a log.
        shown = f"admin token (X-Admin-Token): {token}\n  " if sys.stderr.isatty() else ""
        err_console.print(
            f"{shown}admin token kept in {token_file} (mode 0600); "
            "set COPYTRADE_PAPER_ADMIN_TOKEN to choose one",
            soft_wrap=True,
        )
    paper = PaperServer(folder, token, start=start, speed=speed)
    config = uvicorn_config(paper.app(), host=host, port=port, log_level=log_level.lower())
    err_console.print(
        f"paper exchange on http://{host}:{port} (spot /api/v3, futures /fapi; loop {config.loop})"
    )
    uvicorn.Server(config).run()


def _admin_token() -> str:
    from copytrade.paper.admin_token import AdminTokenMissing, resolve

    try:
        return resolve(get_settings())
    except AdminTokenMissing as exc:
        # Without its token the exchange's admin API cannot be reached (exit 3, one line).
        err_console.print(f"[bold red]paper exchange unreachable:[/] {exc}", soft_wrap=True)
        raise typer.Exit(EXIT_UNAVAILABLE) from None


def _admin(url: str | None):
    from copytrade.paper.client import AdminClient

    return AdminClient(url or get_settings().paper_url, _admin_token())


@contextmanager
def _reaching(url: str | None) -> Iterator[None]:
    """Turn an unreachable exchange into exit 3 and a refused admin request into exit 2."""
    import httpx

    from copytrade.paper.client import AdminError

    try:
        yield
    except httpx.HTTPError as exc:
        where = url or get_settings().paper_url
        err_console.print(
            f"[bold red]paper exchange unreachable at {where}:[/] {exc}", soft_wrap=True
        )
        raise typer.Exit(EXIT_UNAVAILABLE) from None
    except AdminError as exc:
        raise refuse(str(exc)) from None


def _balances(pairs: list[str], option: str) -> dict[str, str]:
    from copytrade.domain.money import to_decimal

    out: dict[str, str] = {}
    for pair in pairs or []:
        asset, sep, amount = pair.partition("=")
        if not sep or not asset.strip():
            raise ValueError(f"{option}: {pair!r} is not ASSET=AMOUNT (e.g. USDT=10000)")
        value = to_decimal(amount, f"{option} {asset.strip().upper()}")
        if value <= 0:
            raise ValueError(f"{option} {asset.strip().upper()}: {amount!r} must be positive")
        out[asset.strip().upper()] = str(value)
    return out


@app.command("create-account")
@handles_refusals
def create_account(
    name: str = typer.Option(None, help="A label for the account."),
    spot: list[str] = typer.Option(None, help="Spot deposit ASSET=AMOUNT (repeatable)."),
    futures: list[str] = typer.Option(
        None, help="Futures wallet deposit ASSET=AMOUNT (repeatable)."
    ),
    credentials_file: Path = typer.Option(
        None,
        dir_okay=False,
        help="Write the API key and secret to this file (mode 0600); the secret is never printed.",
    ),
    url: str = URL,
) -> None:
    """Create a paper account with an API key; print its id and key, write the secret to a file.

    Exit 2: a bad deposit (ASSET=AMOUNT, a positive number); exit 3: the exchange is unreachable.
    """
    deposits = _balances(spot, "--spot"), _balances(futures, "--futures")
    with _reaching(url), _admin(url) as admin:
        account = admin.create_account(name, *deposits)
    console.print(f"account [bold]{account.account_id}[/] api key {account.api_key}")
    if credentials_file:
        credentials_file.write_text(
            json.dumps(
                {
                    "account_id": account.account_id,
                    "api_key": account.api_key,
                    "api_secret": account.api_secret,
                }
            )
        )
        os.chmod(credentials_file, 0o600)
        console.print(f"credentials written to {credentials_file}")
    else:
        console.print("secret not shown (use --credentials-file to keep it)")


@app.command()
@handles_refusals
def fault(
    kind: str = typer.Argument(
        ...,
        help="rate_limit | ban | error_before | error_after | timeout_after | slow | drop_stream | duplicate_events | reorder_events",
    ),
    account_id: str = typer.Option(None, help="Only this account (default: every account)."),
    count: int = typer.Option(1, help="How many requests/events it hits (0 = until cleared)."),
    path: list[str] = typer.Option(
        None, help="Only request paths containing this (repeatable), e.g. /order."
    ),
    delay: float = typer.Option(None, help="Seconds of delay (slow, timeout_after)."),
    retry_after: int = typer.Option(1, help="Retry-After seconds (rate_limit, ban)."),
    url: str = URL,
) -> None:
    """Arm a fault on the paper exchange.

    Exit 2: an unknown kind or a bad value (refused before anything is sent); exit 3: the
    exchange is unreachable.
    """
    from copytrade.paper.faults import KINDS

    if kind not in KINDS:
        raise refuse(f"kind: {kind!r} is not one of {', '.join(sorted(KINDS))}")
    if count < 0:
        raise refuse(f"--count: {count} must be ≥ 0 (0 = until cleared)")
    if delay is not None and not 0 <= delay <= 600:
        raise refuse(f"--delay: {delay} must be between 0 and 600 seconds")
    if retry_after < 0:
        raise refuse(f"--retry-after: {retry_after} must be ≥ 0 seconds")
    spec: dict = {
        "account_id": account_id,
        "count": count or None,
        "paths": path or [],
        "retry_after": retry_after,
    }
    if delay is not None:
        spec["delay"] = delay
    with _reaching(url), _admin(url) as admin:
        result = admin.add_fault(kind, **spec)
    console.print(result)


@app.command("clear-faults")
def clear_faults(url: str = URL) -> None:
    """Disarm every fault. Exit 3: the exchange is unreachable."""
    with _reaching(url), _admin(url) as admin:
        console.print(f"cleared {admin.clear_faults()} faults")


@app.command("leader-bot")
@handles_refusals
def leader_bot(
    strategy: str = typer.Option(
        "replay", help="replay (the real lead trader's fills) or ma-cross."
    ),
    url: str = URL,
    credentials_file: Path = typer.Option(
        None,
        exists=True,
        dir_okay=False,
        help="Trade from this account (JSON from create-account); default: a new account.",
    ),
    deposit: str = typer.Option("20000", help="USDT deposited into a new leader account."),
    limit: int = typer.Option(None, min=1, help="replay: only the first N fills."),
    scale: str = typer.Option("1", help="replay: multiply every fill's quantity."),
    leverage: int = typer.Option(10, min=1, max=125, help="replay: leverage on each symbol."),
    candles: Path = typer.Option(
        None, exists=True, dir_okay=False, help="ma-cross: the candle CSV to trade on."
    ),
    symbol: str = typer.Option("ETHUSDT", help="ma-cross: the exchange symbol to trade."),
    kind: str = typer.Option("spot", help="ma-cross: spot or futures."),
    fast: int = typer.Option(12, min=1, help="ma-cross: fast moving average (candles)."),
    slow: int = typer.Option(48, min=1, help="ma-cross: slow moving average (candles)."),
    notional: str = typer.Option("500", help="ma-cross: quote amount per buy."),
    max_trades: int = typer.Option(None, min=1, help="ma-cross: stop after N orders."),
    max_wait: float = typer.Option(
        2.0,
        help="Longest wall-clock wait for the next trade; longer gaps jump the simulated clock.",
        callback=finite(0),
    ),
    pace: float = typer.Option(
        None,
        callback=finite(0),
        help="Share the simulated clock with other bots: wait for it at most this many seconds "
        "per fill (replay) or candle (ma-cross), then move it on, never back (instead of "
        "--max-wait).",
    ),
) -> None:
    """Trade as a leader on the paper exchange: replay the real lead trader, or a moving-average cross.

    replay sends the real Binance lead trader's fills (shared data leaders/, times converted from
    UTC+3) on 1000PEPEUSDT and ONDOUSDT, moving the exchange's simulated clock to each fill's time
    so it fills on the real candle of that moment. ma-cross buys when the fast SMA of the candle
    closes crosses above the slow one and sells when it crosses below.
    """
    import asyncio

    import httpx

    from copytrade.domain.money import to_decimal
    from copytrade.exchange.protocol import GatewayError
    from copytrade.paper import leader_bot as bot
    from copytrade.paper.client import PaperAccount

    if strategy not in ("replay", "ma-cross"):
        raise refuse(f"strategy: {strategy!r} is not replay or ma-cross")
    if kind not in ("spot", "futures"):
        raise refuse(f"kind: {kind!r} is not spot or futures")
    # Every value checked before the exchange is asked anything (exit 2, R-IN-2).
    amounts = {
        name: to_decimal(value, name)
        for name, value in (("--deposit", deposit), ("--scale", scale), ("--notional", notional))
    }
    for name, value in amounts.items():
        if value <= 0:
            raise refuse(f"{name}: {value} must be positive")
    settings = get_settings()
    base_url = url or settings.paper_url
    credentials = None
    if credentials_file:
        try:
            data = json.loads(credentials_file.read_text())
            credentials = PaperAccount(data["account_id"], data["api_key"], data["api_secret"])
        except (ValueError, TypeError, KeyError) as exc:
            raise refuse(
                f"--credentials-file: {credentials_file} is not the JSON of `paper create-account` "
                f"({type(exc).__name__})"
            ) from None
    token = _admin_token()
    try:
        if strategy == "replay":
            report = asyncio.run(
                bot.replay_leader(
                    base_url,
                    token,
                    settings.data_dir,
                    credentials=credentials,
                    deposit=amounts["--deposit"],
                    leverage=leverage,
                    scale=amounts["--scale"],
                    limit=limit,
                    max_wait=max_wait,
                    pace=pace,
                    on_fill=lambda f, status: console.print(
                        f"{f.time:%Y-%m-%d %H:%M:%S} {f.symbol} {f.action} {f.quantity} → {status}"
                    ),
                )
            )
        else:
            if candles is None:
                raise refuse(
                    "candles: ma-cross needs --candles FILE (e.g. market/spot/ETH_BTC-5m.csv)"
                )
            report = asyncio.run(
                bot.run_ma_cross(
                    base_url,
                    token,
                    candles,
                    symbol,
                    kind=kind,
                    fast=fast,
                    slow=slow,
                    notional=amounts["--notional"],
                    credentials=credentials,
                    deposit=amounts["--deposit"],
                    max_trades=max_trades,
                    max_wait=max_wait,
                    pace=pace,
                    on_trade=lambda signal, status: console.print(f"{symbol} {signal} → {status}"),
                )
            )
    except (httpx.HTTPError, GatewayError) as exc:
        err_console.print(f"[bold red]paper exchange unreachable at {base_url}:[/] {exc}")
        raise typer.Exit(EXIT_UNAVAILABLE) from None
    console.print(
        f"sent {report.sent}, filled {report.filled}, refused {report.refused}, skipped {report.skipped}"
    )
