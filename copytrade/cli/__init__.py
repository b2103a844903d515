"""The `copytrade` command. Each area's commands live in a module of this package."""

from __future__ import annotations

import typer

from copytrade.cli import (
    copies,
    db,
    engine,
    leaders,
    ledger,
    marks,
    metrics,
    paper,
    settle,
    stack,
    wallets,
)

app = typer.Typer(
    name="copytrade",
    help="Copy-trading platform: leaders, followers, the copy engine, the ledger, settlement and metrics.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.add_typer(db.app, name="db")
app.add_typer(ledger.app, name="ledger")
app.add_typer(leaders.app, name="leaders")
app.add_typer(copies.app, name="copies")
app.add_typer(wallets.app, name="wallets")
app.add_typer(paper.app, name="paper")
app.add_typer(engine.app, name="engine")
app.add_typer(metrics.app, name="metrics")
app.add_typer(marks.app, name="marks")
metrics.register(leaders.app)
app.command("settle")(settle.settle)
app.command("validate")(settle.validate)
app.command("up")(stack.up)
app.command("down")(stack.down)


def main() -> None:
    app()
