"""One transaction per command on the configured ledger database, with refusals shown as exit 2."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal

import typer
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.orm import Session

from copytrade.cli.common import EXIT_UNAVAILABLE, err_console, refusals
from copytrade.cli.failures import database_problem
from copytrade.db import session_scope


@contextmanager
def transaction() -> Iterator[Session]:
    """Yield a session in one transaction; a refusal rolls everything back and exits with code 2."""
    try:
        with refusals(), session_scope() as session:
            yield session
    except (OperationalError, ProgrammingError) as exc:
        # The entry point says the same for any command; this also serves in-process callers.
        # One line whatever the terminal's width (soft_wrap): operators grep these.
        err_console.print(database_problem(exc), markup=False, soft_wrap=True)
        raise typer.Exit(EXIT_UNAVAILABLE) from None


def money(value: Decimal | None) -> str:
    """Return an amount for display: thousands separators, no trailing zeros."""
    if value is None:
        return "-"
    text = format(value.normalize(), ",f")
    return text


def pct(value: Decimal | None) -> str:
    return "-" if value is None else f"{money(value)} %"
