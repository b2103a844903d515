"""One transaction per command on the configured ledger database, with refusals shown as exit 2."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal

import typer
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.orm import Session

from copytrade.cli.common import EXIT_UNAVAILABLE, err_console, refusals
from copytrade.cli.failures import database_url
from copytrade.db import session_scope


@contextmanager
def transaction() -> Iterator[Session]:
    """Yield a session in one transaction; a refusal rolls everything back and exits with code 2."""
    try:
        with refusals(), session_scope() as session:
            yield session
    except (OperationalError, ProgrammingError) as exc:
        detail = str(exc.orig).splitlines()[0] if exc.orig else str(exc)
        missing_table = isinstance(exc, ProgrammingError) or "no such table" in detail
        what = "database not migrated" if missing_table else "database unreachable"
        hint = " (run `copytrade db upgrade`)" if missing_table else ""
        # One line whatever the terminal's width (soft_wrap): operators grep these.
        err_console.print(f"[bold red]{what}[/]: {database_url()}{hint}: {detail}", soft_wrap=True)
        raise typer.Exit(EXIT_UNAVAILABLE) from None


def money(value: Decimal | None) -> str:
    """Return an amount for display: thousands separators, no trailing zeros."""
    if value is None:
        return "-"
    text = format(value.normalize(), ",f")
    return text


def pct(value: Decimal | None) -> str:
    return "-" if value is None else f"{money(value)} %"
