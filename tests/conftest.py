"""Shared fixtures: a fresh ledger database per test on SQLite and on the real PostgreSQL server.

PostgreSQL tests run in a schema of their own (created and dropped here) so that concurrent runs
on the shared ``test`` database never see each other's tables. They are skipped only when the
server is unreachable, and the skip says so.
"""

from __future__ import annotations

import gc
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

import models
from copytrade.config import get_settings
from copytrade.db import dispose_factories, make_engine

PG_URL = os.environ.get(
    "COPYTRADE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
SHARED_DATA = get_settings().data_dir


def _pg_unreachable_reason() -> str | None:
    try:
        engine = make_engine(PG_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("select 1"))
        engine.dispose()
    except Exception as exc:  # any failure to connect means "unreachable" for the skip message
        return f"PostgreSQL unreachable at {make_url(PG_URL).render_as_string(hide_password=True)}: {exc.__class__.__name__}: {str(exc).splitlines()[0]}"
    return None


_PG_REASON: str | None | bool = False


def pg_unreachable_reason() -> str | None:
    global _PG_REASON
    if _PG_REASON is False:
        _PG_REASON = _pg_unreachable_reason()
    return _PG_REASON  # type: ignore[return-value]


def _pg_schema_url(schema: str) -> str:
    url = make_url(PG_URL)
    return url.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
        hide_password=False
    )


@pytest.fixture
def pg_server_url() -> str:
    """The PostgreSQL server's URL itself (for tests that make their own schemas); skips only when
    the server is unreachable."""
    reason = pg_unreachable_reason()
    if reason:
        pytest.skip(reason)
    return PG_URL


@pytest.fixture
def pg_url() -> Iterator[str]:
    """Yield a URL of a fresh, empty PostgreSQL schema (dropped afterwards)."""
    reason = pg_unreachable_reason()
    if reason:
        pytest.skip(reason)
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = make_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'create schema "{schema}"'))
    try:
        yield _pg_schema_url(schema)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'drop schema "{schema}" cascade'))
        admin.dispose()


@pytest.fixture(autouse=True)
def _release_database_connections() -> Iterator[None]:
    """After each test: close the cached engines' pools (one per test database URL, otherwise kept
    for the whole run until PostgreSQL refuses new clients), and collect what an in-process paper
    exchange or engine froze out of the collector's sight (``gc.freeze``) so its connections go."""
    yield
    dispose_factories()
    if gc.get_freeze_count():
        gc.unfreeze()
        gc.collect()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ledger.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty ledger database URL on each backend."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("pg_url")


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """An engine on a fresh database with the whole schema created from the models."""
    eng = make_engine(db_url)
    models.Base.metadata.create_all(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def session_maker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@pytest.fixture
def session(session_maker: sessionmaker[Session]) -> Iterator[Session]:
    """A session whose changes are committed by the test (``with session.begin()``) as needed."""
    with session_maker() as s:
        yield s


@pytest.fixture
def shared_data() -> Path:
    """The read-only reference data folder; tests that need it skip with a clear message if absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"reference data folder {SHARED_DATA} is absent (set COPYTRADE_DATA_DIR)")
    return SHARED_DATA


def _tamper(engine: Engine, table: str, *statements: str) -> None:
    """Edit ledger history as an attacker with DDL rights would: lift ``table``'s append-only
    trigger, then run ``statements`` (the guard stays lifted for the rest of the test)."""
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql(f"drop trigger if exists trg_{table}__no_update")
        else:
            conn.exec_driver_sql(f"alter table {table} disable trigger user")
        for statement in statements:
            conn.exec_driver_sql(statement)


@pytest.fixture
def tamper():
    """``tamper(engine, table, *sql)``: change history behind the ledger's back (R-X-4 tests)."""
    return _tamper
