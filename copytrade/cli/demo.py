"""`copytrade demo`: the end-to-end story on a fresh demo database (logic in copytrade.demo)."""

from __future__ import annotations

import typer

from copytrade.cli.common import EXIT_PROBLEM, console


def demo(
    fast: bool = typer.Option(
        False, "--fast", help="Shortest run (accepted; the first version is already short)."
    ),
) -> None:
    """Run the demo: leaders, followers, trades, fees and rebates, balances (on var/demo.db, recreated)."""
    from copytrade.demo import run_demo

    result = run_demo(console=console, fast=fast)
    if not result.chain_ok:
        raise typer.Exit(EXIT_PROBLEM)
