"""What every command shares: consoles, the exit codes and how refusals are shown (R-IN-2)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from typing import TypeVar

import typer
from rich import table as rich_table
from rich.console import Console
from rich.markup import escape
from rich.text import Text

from copytrade.domain.errors import RuleViolation

console = Console()
# Errors are one line whatever the terminal's width (operators grep them, R-IN-2): never wrapped.
err_console = Console(stderr=True, soft_wrap=True)

# Exit codes: 0 done; 1 the work ran and found a problem (failed validation, unmatched fills);
# 2 bad input refused (nothing changed); 3 a dependency is unreachable (database, exchange).
EXIT_OK, EXIT_PROBLEM, EXIT_BAD_INPUT, EXIT_UNAVAILABLE = 0, 1, 2, 3

# The largest id a ledger row can have (PostgreSQL INTEGER); a larger one is refused as bad input
# instead of overflowing the database driver.
ID_MAX = 2**31 - 1

F = TypeVar("F", bound=Callable)


class Table(rich_table.Table):
    """rich's table whose text cells are shown as they are: a stored nickname, description or
    symbol like "[/]" is text, not rich markup (a MarkupError would end the listing, for every
    user who lists it). A cell meant as markup is passed as ``Text.from_markup(...)``."""

    def add_row(self, *renderables, **kwargs) -> None:
        cells = (Text(cell) if isinstance(cell, str) else cell for cell in renderables)
        super().add_row(*cells, **kwargs)


def refuse(message: str) -> typer.Exit:
    """Print a refusal and return the exit to raise (code 2: bad input, nothing changed).

    The message carries the user's value verbatim: it is escaped, never read as rich markup."""
    err_console.print(f"[bold red]refused:[/] {escape(message)}")
    return typer.Exit(EXIT_BAD_INPUT)


@contextmanager
def refusals() -> Iterator[None]:
    """Turn rule violations and bad values into a clear message and exit code 2 (R-IN-2)."""
    try:
        yield
    except RuleViolation as exc:
        raise refuse(str(exc)) from None
    except (ValueError, TypeError) as exc:
        raise refuse(str(exc)) from None


def handles_refusals(func: F) -> F:
    @wraps(func)
    def wrapper(*args, **kwargs):
        with refusals():
            return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def check_id(ctx: typer.Context, param: typer.CallbackParam, value: int | None) -> int | None:
    """Option/argument callback: refuse an id that is not 1…ID_MAX (exit 2, R-IN-2)."""
    if value is not None and not 1 <= value <= ID_MAX:
        name = param.opts[0] if param.opts and param.opts[0].startswith("-") else param.name
        raise typer.BadParameter(f"{name} {value} must be a positive id ≤ {ID_MAX} (R-IN-2)")
    return value


def finite(minimum: float = 0.0, *, above: bool = False):
    """Return an option callback refusing NaN, ±inf and numbers below ``minimum`` (or not above
    it, with ``above``): seconds and speeds must be real numbers (exit 2, R-IN-2)."""

    def check(ctx: typer.Context, param: typer.CallbackParam, value: float | None):
        if value is None:
            return value
        low = value > minimum if above else value >= minimum
        if not (math.isfinite(value) and low):
            rule = f"{'>' if above else '≥'} {minimum:g}"
            raise typer.BadParameter(f"{param.opts[0]} {value} must be a finite number {rule}")
        return value

    return check
