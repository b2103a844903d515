"""`copytrade copies`: start, stop and list copies of lead portfolios."""

from __future__ import annotations

import typer
from rich.table import Table

from copytrade.cli.common import console
from copytrade.cli.platform_db import money, transaction
from copytrade.platform import copies

app = typer.Typer(help="Copies of lead portfolios: start, stop, list.", no_args_is_help=True)


@app.command()
def start(
    handle: str = typer.Option(..., help="The follower's handle."),
    portfolio: int = typer.Option(..., help="Lead portfolio id to copy."),
    allocation: str = typer.Option(..., help="USDT moved from the spot wallet into the copy."),
    code: str = typer.Option(None, help="Invitation code (private portfolios)."),
    sizing: str = typer.Option("fixed_ratio", help="fixed_ratio (proportional) or fixed_amount."),
    fixed_amount: str = typer.Option(
        None, help="Notional per copied opening order (fixed_amount)."
    ),
    below_min: str = typer.Option("skip", help="Below-minimum policy: skip, round_up, accumulate."),
    stop_loss: str = typer.Option(None, help="Copy stop-loss, % of the allocation (e.g. 20)."),
    take_profit: str = typer.Option(None, help="Copy take-profit, % of the allocation."),
    max_cost: str = typer.Option(None, help="Maximum cost per copied order (USDT)."),
    slippage: str = typer.Option(
        None, help="Entry slippage limit in % (default 0.5 for BTC/ETH, else 1.5)."
    ),
    position_take_profit: str = typer.Option(None, help="Per-position take-profit, %."),
    position_stop_loss: str = typer.Option(None, help="Per-position stop-loss, %."),
    leverage: str = typer.Option("1", help="Futures leverage 1-10 (spot: 1)."),
    symbol: list[str] = typer.Option(None, help="Allow-list symbol (repeat); default: all."),
    daily_loss_limit: str = typer.Option(None, help="Daily loss limit (USDT); pauses for the day."),
    close_only: bool = typer.Option(False, "--close-only", help="Follow reductions only."),
) -> None:
    """Start copying a portfolio (R-COPY-2, R-ACC-2/3, settings R-COPY-1/3/6/12, R-X-3)."""
    with transaction() as session:
        copy = copies.start(
            session,
            handle,
            portfolio,
            allocation,
            invitation_code=code,
            sizing_mode=sizing,
            fixed_amount=fixed_amount,
            below_min_policy=below_min,
            stop_loss_pct=stop_loss,
            take_profit_pct=take_profit,
            max_cost_per_order=max_cost,
            slippage_limit_pct=slippage,
            position_take_profit_pct=position_take_profit,
            position_stop_loss_pct=position_stop_loss,
            leverage=leverage,
            symbols=symbol or None,
            daily_loss_limit=daily_loss_limit,
            close_only=close_only,
        )
        console.print(
            f"copy [bold]{copy.id}[/]: {handle} copies portfolio {portfolio} with "
            f"{money(copy.allocation)} USDT ({copy.sizing_mode})"
        )


@app.command()
def stop(
    copy_id: int = typer.Argument(..., help="Copy id."),
    handle: str = typer.Option(..., help="The follower's handle."),
) -> None:
    """Stop copying (R-COPY-5); settlement (R-SET-5) follows."""
    with transaction() as session:
        copy = copies.stop(session, copy_id, handle)
        console.print(f"copy {copy.id} stopped ({copy.stop_reason}); awaiting settlement")


@app.command("list")
def list_(
    handle: str = typer.Option(None, help="Only this follower's copies."),
    portfolio: int = typer.Option(None, help="Only copies of this portfolio."),
    all_: bool = typer.Option(False, "--all", help="Include stopped copies."),
) -> None:
    """List copies with their allocation and cash."""
    with transaction() as session:
        rows = copies.list_copies(session, handle, portfolio, include_stopped=all_)
    table = Table(
        "id",
        "follower",
        "portfolio",
        "sizing",
        "lev",
        "allocation",
        "cash",
        "status",
        title="Copies",
    )
    for r in rows:
        status = r.status if not r.stop_reason else f"{r.status} ({r.stop_reason})"
        table.add_row(
            str(r.id),
            r.follower,
            f"{r.portfolio_id} {r.nickname}",
            r.sizing_mode,
            f"{r.leverage}x",
            money(r.allocation),
            money(r.cash),
            status,
        )
    console.print(table)


# The copy engine owns these commands (copytrade/cli/engine.py); listed here where users look.
from copytrade.cli import engine as _engine  # noqa: E402

app.command("resync")(_engine.resync)
app.command("close-position")(_engine.close_position)
