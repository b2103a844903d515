"""Turn an unreachable dependency into one line and exit 3, for every command, in one place.

A command that cannot reach the ledger database (any SQLAlchemy ``OperationalError`` or
``InterfaceError``) or an exchange (ccxt ``NetworkError``, the gateway's ``Retryable``, a refused
connection) ends with one line naming it — the database URL with its password hidden, the
exchange's URL without its query string (signatures) — and exit code 3. Anything else that
escapes a command is a bug: one line and exit 1, the traceback only with ``COPYTRADE_DEBUG=1``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from copytrade.cli.common import EXIT_PROBLEM, EXIT_UNAVAILABLE

_QUERY = re.compile(r"\?\S*")
_URL = re.compile(r"\b(?:https?|wss?)://[^\s'\"]+")


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def database_url() -> str:
    """Return the configured ledger database URL with its password hidden."""
    from sqlalchemy.engine import make_url

    from copytrade.config import get_settings

    try:
        return make_url(get_settings().ledger_url).render_as_string(hide_password=True)
    except Exception:  # a URL too broken to parse: say so without echoing it
        return "the configured database (COPYTRADE_DATABASE_URL)"


def _first_line(exc: BaseException, limit: int = 200) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return _QUERY.sub("", line)[:limit]


def database_problem(exc: BaseException) -> str:
    """Return the one line for a database error a command cannot go on from: the schema is
    missing (run `copytrade db upgrade`) or the database is unreachable."""
    from sqlalchemy.exc import ProgrammingError

    detail = _first_line(exc)
    if isinstance(exc, ProgrammingError) or "no such table" in detail:
        return f"database not migrated: {database_url()} (run `copytrade db upgrade`): {detail}"
    return f"database unreachable: {database_url()} ({detail})"


def classify(exc: BaseException) -> tuple[int, str] | None:
    """Return (exit code, message) for an unreachable dependency, or None."""
    from sqlalchemy.exc import InterfaceError, OperationalError, ProgrammingError

    for link in _chain(exc):
        if isinstance(link, OperationalError | InterfaceError) or (
            isinstance(link, ProgrammingError) and _missing_table(link)
        ):
            return EXIT_UNAVAILABLE, database_problem(link)
    for link in _chain(exc):
        if _is_exchange_failure(link):
            where = _URL.search(str(link))
            target = _QUERY.sub("", where.group(0)) if where else "the exchange"
            return EXIT_UNAVAILABLE, f"exchange unreachable: {target} ({type(link).__name__})"
    return None


def _missing_table(exc: BaseException) -> bool:
    """A schema that is not there (PostgreSQL's UndefinedTable): the database is not migrated."""
    return type(getattr(exc, "orig", None)).__name__ == "UndefinedTable" or (
        "does not exist" in _first_line(exc) and "relation" in _first_line(exc)
    )


def _is_exchange_failure(exc: BaseException) -> bool:
    from copytrade.exchange.protocol import Retryable

    if isinstance(exc, Retryable | ConnectionError | TimeoutError):
        return True
    try:
        import ccxt
    except ImportError:  # pragma: no cover - ccxt is a dependency
        return False
    if isinstance(exc, ccxt.NetworkError):
        return True
    try:
        import aiohttp
    except ImportError:  # pragma: no cover
        return False
    return isinstance(exc, aiohttp.ClientConnectionError)


@contextmanager
def reported() -> Iterator[None]:
    """Give in-process callers (the CLI runner, flows) the entry point's answer: an unreachable
    dependency is its one line and exit 3; anything else propagates."""
    import typer

    from copytrade.cli.common import err_console

    try:
        yield
    except Exception as exc:
        known = classify(exc)
        if known is None:
            raise
        code, line = known
        err_console.print(line, markup=False, highlight=False)
        raise typer.Exit(code) from None


def describe(exc: BaseException) -> tuple[int, str]:
    """Return (exit code, one line) for any exception that escaped a command."""
    known = classify(exc)
    if known is not None:
        return known
    return EXIT_PROBLEM, (
        f"unexpected error: {type(exc).__name__}: {_first_line(exc)} "
        "(set COPYTRADE_DEBUG=1 for the traceback)"
    )
