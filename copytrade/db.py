"""Database engines and sessions for the ledger (SQLite embedded default, PostgreSQL in production)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, Table, bindparam, create_engine, event, update
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from copytrade.config import get_settings


def make_engine(url: str | None = None, **kwargs) -> Engine:
    """Create an engine; SQLite gets WAL, foreign keys and write-locking transactions."""
    url = url or get_settings().ledger_url
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        kwargs.setdefault("pool_pre_ping", True)
        return create_engine(url, **kwargs)
    if parsed.database and parsed.database != ":memory:":
        # A folder that cannot be made (a file in the path, no permission): SQLite's own "unable
        # to open database file" on connecting says so, an unreachable database (exit 3).
        with contextlib.suppress(OSError):
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": 60}, **kwargs)
    _configure_sqlite(engine)
    return engine


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):  # pragma: no cover - exercised through every test
        # Let SQLAlchemy emit BEGIN itself (pysqlite's implicit transactions are off).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=60000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):  # pragma: no cover - exercised through every test
        # BEGIN IMMEDIATE takes the write lock up front, so two writers serialise instead of
        # failing on a stale snapshot: the ledger's hash chain needs strict order (R-X-4).
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def is_postgres(engine_or_session: Engine | Session) -> bool:
    bind = (
        engine_or_session.get_bind()
        if isinstance(engine_or_session, Session)
        else engine_or_session
    )
    return bind.dialect.name == "postgresql"


_factories: dict[str, sessionmaker[Session]] = {}


def session_factory(url: str | None = None) -> sessionmaker[Session]:
    """Return a cached session factory for ``url`` (default: the configured ledger)."""
    url = url or get_settings().ledger_url
    if url not in _factories:
        _factories[url] = sessionmaker(make_engine(url), expire_on_commit=False)
    return _factories[url]


def dispose_factories() -> None:
    """Close the pooled connections of every cached session factory and forget them.

    A long-lived process keeps one factory per database URL; one that moves between databases
    (the test suite: a fresh PostgreSQL schema per test) calls this so each schema's pool does
    not hold its connections until the server runs out of them.
    """
    for factory in _factories.values():
        bind = factory.kw.get("bind")
        if bind is not None:
            bind.dispose()
    _factories.clear()


@contextmanager
def session_scope(url: str | None = None) -> Iterator[Session]:
    """Yield a session in a transaction: commit on success, roll back on any error."""
    with session_factory(url)() as session, session.begin():
        yield session


def update_rows(
    session: Session,
    table: Table,
    rows: Sequence[dict],
    *,
    key: str,
    key_param: str,
    columns: Sequence[str],
) -> None:
    """One executemany ``UPDATE table SET col = :col … WHERE key = :key_param`` over ``rows``.

    Each row holds the new value of every column in ``columns`` and the key under ``key_param``
    (SQLAlchemy reserves a column's own name for its SET clause, so the key's name must differ).
    """
    if not rows:
        return
    session.execute(
        update(table)
        .where(table.c[key] == bindparam(key_param))
        .values({column: bindparam(column) for column in columns}),
        rows,
        execution_options={"synchronize_session": False},
    )
