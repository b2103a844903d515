"""What every command shares: consoles, the exit codes and how refusals are shown (R-IN-2)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from typing import TypeVar

import typer
from rich.console import Console

from copytrade.domain.errors import RuleViolation

console = Console()
err_console = Console(stderr=True)

# Exit codes: 0 done; 1 the work ran and found a problem (failed validation, unmatched fills);
# 2 bad input refused (nothing changed); 3 a dependency is unreachable (database, exchange).
EXIT_OK, EXIT_PROBLEM, EXIT_BAD_INPUT, EXIT_UNAVAILABLE = 0, 1, 2, 3

F = TypeVar("F", bound=Callable)


def refuse(message: str) -> typer.Exit:
    """Print a refusal and return the exit to raise (code 2: bad input, nothing changed)."""
    err_console.print(f"[bold red]refused:[/] {message}")
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
