"""`copytrade copies`: start, stop and list copies of lead portfolios."""

from __future__ import annotations

import typer

from copytrade.cli.common import (
    EXIT_PROBLEM,
    Table,
    check_id,
    console,
    err_console,
    refusals,
    refuse,
)
from copytrade.cli.platform_db import money, transaction
from copytrade.platform import copies, copy_funds
from copytrade.platform.copy_statement import copy_statements

app = typer.Typer(
    help="Copies of lead portfolios: start, edit, add funds, withdraw profit, show, stop, list.",
    no_args_is_help=True,
)


@app.command()
def start(
    handle: str = typer.Option(..., help="The follower's handle."),
    portfolio: int = typer.Option(..., help="Lead portfolio id to copy.", callback=check_id),
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
    api_key: str = typer.Option(
        None, help="API key id of the exchange account the copy trades on (with --credentials-ref)."
    ),
    credentials_ref: str = typer.Option(
        None,
        help="Where that key's secret lives: env:NAME, file:PATH or prefect:BLOCK (never the "
        "secret itself).",
    ),
) -> None:
    """Start copying a portfolio (R-COPY-2, R-ACC-2/3, settings R-COPY-1/3/6/12, R-X-3).

    With --api-key/--credentials-ref the copy is linked to the follower's exchange account and
    the running engine starts copying it within seconds; without, it waits for an account.
    """
    if (api_key is None) != (credentials_ref is None):
        raise refuse(
            f"{'credentials_ref' if api_key else 'api_key'}: missing; --api-key and "
            "--credentials-ref go together (R-IN-2)"
        )
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
            exchange_key=(api_key, credentials_ref) if api_key else None,
        )
        console.print(
            f"copy [bold]{copy.id}[/]: {handle} copies portfolio {portfolio} with "
            f"{money(copy.allocation)} USDT ({copy.sizing_mode})"
        )
        for line in copies.start_advice(session, copy):
            console.print(f"advice: {line}")


@app.command()
def stop(
    copy_id: int = typer.Argument(..., help="Copy id.", callback=check_id),
    handle: str = typer.Option(..., help="The follower's handle."),
) -> None:
    """Stop copying (R-COPY-5); settlement (R-SET-5) follows."""
    with transaction() as session:
        copy = copies.stop(session, copy_id, handle)
        console.print(f"copy {copy.id} stopped ({copy.stop_reason}); awaiting settlement")


@app.command()
def edit(
    copy_id: int = typer.Argument(..., help="Copy id.", callback=check_id),
    handle: str = typer.Option(..., help="The follower's handle."),
    stop_loss: str = typer.Option(
        None, help="Copy stop-loss, % of the principal; 'off' removes it."
    ),
    take_profit: str = typer.Option(None, help="Copy take-profit, %; 'off' removes it."),
    max_cost: str = typer.Option(None, help="Maximum cost per copied order (USDT); 'off'."),
    slippage: str = typer.Option(
        None, help="Entry slippage limit in %; 'off' goes back to the pair's default."
    ),
    leverage: str = typer.Option(
        None, help="Futures leverage 1-10 (5 at most from 100,000 USD AUM)."
    ),
    symbol: list[str] = typer.Option(
        None, help="Allow-list symbol (repeat; replaces the list); 'off' allows every symbol."
    ),
    below_min: str = typer.Option(None, help="Below-minimum policy: skip, round_up, accumulate."),
) -> None:
    """Change a running copy's settings (R-COPY-3/6/12, R-LEAD-8); recorded in the audit log."""
    with transaction() as session:
        changed = copies.edit(
            session,
            copy_id,
            handle,
            stop_loss_pct=stop_loss,
            take_profit_pct=take_profit,
            max_cost_per_order=max_cost,
            slippage_limit_pct=slippage,
            leverage=leverage,
            symbols=symbol or None,
            below_min_policy=below_min,
        )
    for field, (old, new) in changed.items():
        console.print(f"copy {copy_id}: {field} {old or '-'} → {new or '-'}", markup=False)


@app.command("add-funds")
def add_funds(
    copy_id: int = typer.Argument(..., help="Copy id.", callback=check_id),
    handle: str = typer.Option(..., help="The follower's handle."),
    amount: str = typer.Option(..., help="USDT moved from the spot wallet into the copy."),
    key: str = typer.Option(None, help="Idempotency key: repeating with it changes nothing."),
) -> None:
    """Add funds to a running copy from the spot wallet (R-COPY-2); the principal grows."""
    with transaction() as session:
        copy = copy_funds.add_funds(session, copy_id, handle, amount, key=key)
        console.print(f"copy {copy.id}: principal {money(copy.allocation)} USDT")


@app.command("withdraw-profit")
def withdraw_profit(
    copy_id: int = typer.Argument(..., help="Copy id.", callback=check_id),
    handle: str = typer.Option(..., help="The follower's handle."),
    amount: str = typer.Option(None, help="USDT to withdraw (default: all that is withdrawable)."),
    ref: str = typer.Option(
        None, help="Withdrawal reference (A-Z a-z 0-9 . _ : -); repeating it pays nothing twice."
    ),
    mark: list[str] = typer.Option(
        [], "--mark", help="Mark price SYMBOL=PRICE of an open position (repeatable)."
    ),
) -> None:
    """Settle the copy (R-SET-5), then move its withdrawable profit to the spot wallet.

    Withdrawable: profit above the principal after the leader's share, not held by open positions.
    """
    from copytrade import clock
    from copytrade.cli.settle import _parse_marks
    from copytrade.config import get_settings
    from copytrade.db import session_factory
    from copytrade.settlement import SettlementBlocked, SettlementService, ledger_integrity_gate

    url = get_settings().ledger_url
    sessions = session_factory(url)
    with refusals():
        marks = _parse_marks(mark, None, sessions)
    if not mark:  # the recorded marks, read before the withdrawal's transaction opens
        marks.preload(clock.now())
    service = SettlementService(sessions, gate=ledger_integrity_gate(url), marks=marks)

    def settle(cid: int, trigger: str, reference: str):
        return service.settle_copy(cid, trigger, ref=reference)

    try:
        with transaction():  # exit codes: refusal 2, database unavailable 3
            result = copy_funds.withdraw_profit(
                sessions, copy_id, handle, amount, settle=settle, marks=marks, ref=ref
            )
    except SettlementBlocked as blocked:
        err_console.print(
            f"[bold red]blocked:[/] {blocked.report.blocked_reason} — nothing was paid or moved "
            "(R-LED-7)"
        )
        raise typer.Exit(EXIT_PROBLEM) from None
    if result.repeated:
        console.print(
            f"withdrawal {result.ref} of copy {copy_id} was already made "
            f"({money(result.amount)} USDT); nothing changed"
        )
        return
    console.print(
        f"copy {copy_id} settled (profit share paid {money(result.share_settled)} USDT); "
        f"withdrew {money(result.amount)} USDT to {handle}'s spot wallet (ref {result.ref}); "
        f"spot balance {money(result.spot_balance)}"
    )


@app.command()
def show(
    copy_id: int = typer.Argument(..., help="Copy id.", callback=check_id),
    mark: list[str] = typer.Option(
        [],
        "--mark",
        help="Mark price SYMBOL=PRICE (repeatable; default: the marks the engine records); "
        "unmarked positions show 'no mark'.",
    ),
) -> None:
    """Show a copy: equity, realised and unrealised PnL, shares paid, positions, withdrawable."""
    from copytrade import clock
    from copytrade.cli.settle import _parse_marks
    from copytrade.marks.store import StoredMarks

    with refusals():
        marks = _parse_marks(mark, None)
    with transaction() as session:
        if not mark:  # the marks the engine records, read in this session (R-SET-3)
            marks = StoredMarks(session, "usdm", fallback_market="spot")
        copy = copies.get_copy(session, copy_id)
        st = copy_statements(session, [copy.id], clock.now(), marks)[copy.id]
        rows = copies.list_copies(session, portfolio_id=copy.portfolio_id, include_stopped=True)
    row = next(r for r in rows if r.id == copy.id)
    status = row.status if not row.stop_reason else f"{row.status} ({row.stop_reason})"
    no_mark = f"no mark ({', '.join(st.missing_marks)})"
    lines = [
        (
            "copy",
            f"{st.copy_id}: {row.follower} copies {row.portfolio_id} {row.nickname} ({st.mode})",
        ),
        ("status", status),
        ("principal", f"{money(st.principal)} {st.asset}"),
        (
            "cash",
            f"{money(st.cash)} {st.asset}"
            + "".join(f", {money(v)} {a}" for a, v in st.coins.items()),
        ),
        ("equity", no_mark if st.equity is None else f"{money(st.equity)} {st.asset}"),
        (
            "realised PnL",
            f"{money(st.realised_net)} {st.asset} (fills {money(st.realised)}, "
            f"fees {money(st.fees)}, funding {money(st.funding)})",
        ),
        (
            "unrealised PnL",
            no_mark if st.unrealised is None else f"{money(st.unrealised)} {st.asset}",
        ),
        (
            "shares paid",
            f"{money(st.shares_paid)} {st.asset}"
            + (f" (outstanding {money(st.share_outstanding)})" if st.share_outstanding else ""),
        ),
        (
            "result after fees and shares",
            "unknown: " + no_mark
            if st.result is None
            else f"{money(st.result)} {st.asset} (R-COPY-3)",
        ),
    ]
    if st.status == "active":
        w = st.withdrawable()
        lines.append(("withdrawable now", no_mark if w is None else f"{money(w)} {st.asset}"))
    for label, value in lines:
        console.print(f"{label}: {value}", markup=False)
    if st.positions:
        table = Table(
            "symbol", "quantity", "average price", "mark", "unrealised", title="Positions"
        )
        for p in st.positions:
            table.add_row(
                p.symbol,
                money(p.quantity),
                money(p.average_price),
                "no mark" if p.mark is None else money(p.mark),
                "-" if p.unrealised is None else money(p.unrealised),
            )
        console.print(table)
    else:
        console.print("positions: none open")


@app.command("list")
def list_(
    handle: str = typer.Option(None, help="Only this follower's copies."),
    portfolio: int = typer.Option(None, help="Only copies of this portfolio.", callback=check_id),
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
