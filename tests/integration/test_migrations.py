"""Migrations on SQLite and PostgreSQL: they build exactly the models' schema, and go down again."""

from __future__ import annotations

from decimal import Decimal as D

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.orm import Session

import models
from copytrade import migrate
from copytrade.db import make_engine
from copytrade.ledger import Ledger, Leg


def test_upgrade_matches_models_and_ledger_works(db_url):
    assert migrate.upgrade(db_url) == "0002"
    engine = make_engine(db_url)
    with engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), models.Base.metadata
        )
    assert diff == [], f"migrations and models differ: {diff}"
    with Session(engine) as session, session.begin():
        ledger = Ledger(session)
        ledger.transfer(
            "d",
            "deposit",
            [Leg("external:deposits", "USDT", D(-5)), Leg("person:1:spot", "USDT", D(5))],
        )
    with Session(engine) as session:
        assert Ledger(session).verify_chain().ok
    engine.dispose()


def test_upgrade_is_idempotent_and_downgrade_removes_everything(db_url):
    migrate.upgrade(db_url)
    assert migrate.upgrade(db_url) == "0002"
    migrate.downgrade(db_url, "base")
    engine = make_engine(db_url)
    tables = set(inspect(engine).get_table_names()) - {"alembic_version"}
    engine.dispose()
    assert tables == set()


def test_0002_keeps_a_populated_ledger_and_swaps_the_posting_indexes(db_url):
    """0001 → 0002 on a ledger with history: postings stay, the chain still verifies (R-X-4)."""
    assert migrate.upgrade(db_url, "0001") == "0001"
    engine = make_engine(db_url)
    with Session(engine) as session, session.begin():
        Ledger(session).transfer(
            "d",
            "deposit",
            [Leg("external:deposits", "USDT", D(-5)), Leg("person:1:spot", "USDT", D(5))],
        )
    assert migrate.upgrade(db_url) == "0002"
    indexes = {
        ix["name"]: ix["column_names"] for ix in inspect(engine).get_indexes("ledger_postings")
    }
    assert indexes == {
        "ix_ledger_postings__transfer_id_asset_amount": ["transfer_id", "asset", "amount"],
        "ix_ledger_postings__account_id_amount": ["account_id", "amount"],
    }
    with Session(engine) as session:
        assert Ledger(session).verify_chain().ok
        assert Ledger(session).balance("person:1:spot", "USDT") == D(5)
    engine.dispose()
