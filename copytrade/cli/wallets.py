"""`copytrade wallets`: deposits into a person's spot wallet (person:<id>:spot)."""

from __future__ import annotations

import typer

from copytrade.cli.common import console
from copytrade.cli.platform_db import money, transaction
from copytrade.platform import wallets

app = typer.Typer(help="Spot wallets of people: deposits.", no_args_is_help=True)


@app.command()
def deposit(
    handle: str = typer.Option(..., help="The person's handle (created if new)."),
    amount: str = typer.Option(..., help="Amount to credit, e.g. 1000 or 1000.5."),
    asset: str = typer.Option(wallets.ASSET, help="Asset code."),
    key: str = typer.Option(
        None, help="Idempotency key: repeating a deposit with it changes nothing."
    ),
) -> None:
    """Credit AMOUNT to HANDLE's spot wallet from external:deposits."""
    with transaction() as session:
        result = wallets.deposit(session, handle, amount, key=key, asset=asset)
    note = "" if result.created else " (already recorded under this key; nothing changed)"
    console.print(
        f"deposited {money(result.amount)} {asset.upper()} to {handle}: "
        f"spot balance {money(result.balance)}{note}"
    )
