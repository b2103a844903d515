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


EXIT_CODES = (
    "Exit codes: 0 done; 1 the work ran and found a problem; 2 bad input, refused and nothing "
    "changed; 3 the database or the exchange cannot be reached (one line naming it)."
)


def _document_exit_codes(typer_app: typer.Typer) -> None:
    """Give every command without its own epilog the shared exit-code epilog (its --help)."""
    for command in typer_app.registered_commands:
        if not command.epilog:
            command.epilog = EXIT_CODES
    for group in typer_app.registered_groups:
        if group.typer_instance is not None:
            _document_exit_codes(group.typer_instance)


_document_exit_codes(app)


def main() -> None:
    """Run a command; an unreachable database or exchange is one line and exit 3, never a
    traceback (see ``copytrade.cli.failures``)."""
    import os
    import sys

    from copytrade.cli.common import err_console
    from copytrade.cli.failures import describe

    try:
        app()
    except SystemExit:
        raise
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:
        if os.environ.get("COPYTRADE_DEBUG"):
            raise
        code, line = describe(exc)
        err_console.print(line, markup=False, highlight=False, soft_wrap=True)
        sys.exit(code)
