"""`copytrade demo`: the end-to-end story on a fresh demo database (logic in copytrade.demo)."""

from __future__ import annotations

import typer

from copytrade.cli.common import EXIT_PROBLEM, console


def demo(
    fast: bool = typer.Option(
        False, "--fast", help="A small slice (a few dozen fills, few followers) for tests."
    ),
) -> None:
    """Run the demo: leaders apply, followers copy real trades on the paper exchange, the ledger
    is validated and settled, metrics build, and a summary is printed (var/demo.db, recreated)."""
    from copytrade.demo import run_demo

    result = run_demo(console=console, fast=fast)
    if not result.ok:
        raise typer.Exit(EXIT_PROBLEM)
