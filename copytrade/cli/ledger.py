"""`copytrade ledger`: read balances of the double-entry ledger."""

from __future__ import annotations

import typer

from copytrade.cli.common import Table, console
from copytrade.db import session_scope
from copytrade.ledger import Ledger

app = typer.Typer(
    help="The double-entry ledger: balances and the hash chain.", no_args_is_help=True
)


@app.command()
def balances(
    prefix: str = typer.Option(None, help="Only addresses starting with this (e.g. 'follower:')."),
    include_zero: bool = typer.Option(False, help="Also list accounts whose balance is zero."),
) -> None:
    """Print every account balance (address, asset, amount)."""
    with session_scope() as session:
        rows = Ledger(session).balances(prefix)
    table = Table("address", "asset", "balance", title="Ledger balances")
    for row in rows:
        if row.amount or include_zero:
            table.add_row(row.address, row.asset, f"{row.amount:,.8f}")
    console.print(table)


@app.command("verify-chain")
def verify_chain() -> None:
    """Recompute every stream's hash chain and the root chain of anchors (R-X-4); exit 1 if
    history was edited, deleted, reordered or cut short."""
    with session_scope() as session:
        report = Ledger(session).verify_chain()
    if report.ok:
        console.print(
            f"hash chain intact: {report.checked} transfers checked in {len(report.heads)} "
            f"streams, {report.anchors} anchors"
        )
        return
    console.print(f"[bold red]hash chain broken[/]: {report.problems[0]}")
    raise typer.Exit(1)
