"""Migrations on SQLite and PostgreSQL: they build exactly the models' schema, and go down again."""

from __future__ import annotations

from decimal import Decimal as D
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.orm import Session

import models
from copytrade import migrate
from copytrade.db import make_engine
from copytrade.ledger import Ledger, Leg

HEAD = "0003"  # 0003 (ingest) re-chained after 0006 until the merger renumbers


def test_upgrade_matches_models_and_ledger_works(db_url):
    assert migrate.upgrade(db_url) == HEAD
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
    assert migrate.upgrade(db_url) == HEAD
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
    assert migrate.upgrade(db_url) == HEAD
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


def test_0004_keeps_daily_marks_as_minute_marks_and_goes_back(db_url):
    """0002 → 0004 on a ledger with daily marks: each becomes its day's 23:59 mark; down again."""
    from datetime import UTC, date, datetime

    from sqlalchemy import text

    from copytrade.marks.store import daily_closes

    assert migrate.upgrade(db_url, "0002") == "0002"
    engine = make_engine(db_url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "insert into mark_prices (symbol, price_date, price, quote_volume, candles, source,"
                " loaded_at) values ('ONDOUSDT', :d, 123456789, 500000000000, 288, 'ONDOUSDT-5m.csv',"
                " :t), ('ETHBTC', :d, 9947000, 0, 288, 'ETH_BTC-5m.csv', :t)"
            ),
            {"d": date(2025, 3, 1), "t": datetime(2025, 3, 2, tzinfo=UTC)},
        )
    assert migrate.upgrade(db_url) == HEAD
    with Session(engine) as session:
        (ondo,) = daily_closes(session, "ONDOUSDT", "usdm")
        (eth,) = daily_closes(session, "ETHBTC", "spot")
    assert (ondo.day, ondo.price, ondo.quote_volume) == (date(2025, 3, 1), D("1.23456789"), D(5000))
    assert ondo.marked_at == datetime(2025, 3, 1, 23, 59, tzinfo=UTC)
    assert eth.price == D("0.09947")
    migrate.downgrade(db_url, "0002")
    with engine.connect() as conn:
        rows = conn.execute(
            text("select symbol, price_date, price, quote_volume from mark_prices order by symbol")
        ).all()
    assert [(r[0], str(r[1]), r[2], r[3]) for r in rows] == [
        ("ETHBTC", "2025-03-01", 9947000, 0),
        ("ONDOUSDT", "2025-03-01", 123456789, 500000000000),
    ]


def test_0006_adds_leverage_violations_to_a_ledger_with_history_R_LEAD_8(db_url):
    """0002 → 0006 keeps the ledger and its chain; the new table starts empty and goes down again."""
    assert migrate.upgrade(db_url, "0002") == "0002"
    engine = make_engine(db_url)
    with Session(engine) as session, session.begin():
        Ledger(session).transfer(
            "d",
            "deposit",
            [Leg("external:deposits", "USDT", D(-5)), Leg("person:1:spot", "USDT", D(5))],
        )
    assert migrate.upgrade(db_url) == HEAD
    assert "leader_leverage_violations" in inspect(engine).get_table_names()
    with Session(engine) as session:
        assert Ledger(session).verify_chain().ok
        assert Ledger(session).balance("person:1:spot", "USDT") == D(5)
    migrate.downgrade(db_url, "0002")
    assert "leader_leverage_violations" not in inspect(engine).get_table_names()
    engine.dispose()


def test_0003_baselines_a_leader_with_history_so_the_derived_position_is_unchanged(db_url):
    """0002 → 0003 on a ledger with leader fills: each watermark's baseline goes just below the
    oldest stored live fill, so the position derived from the fills equals the stored one and a
    late older fill is still accepted (R-IN-3)."""
    from sqlalchemy import text

    from copytrade.engine.history import derive_positions
    from tests.support.engine_world import make_world

    assert migrate.upgrade(db_url, "0002") == "0002"
    engine = make_engine(db_url)
    with Session(engine) as session, session.begin():
        # make_world writes platform rows only, which 0002 and 0003 share
        world = make_world(session, mode="futures", copies=[])
        pid = world.portfolio_id
        for trade_id, side, qty in (("105", "buy", 3), ("110", "sell", 1), ("7", "buy", 9)):
            session.execute(
                text(
                    "INSERT INTO leader_fills (portfolio_id, exchange_trade_id, symbol, side, "
                    "price, quantity, fee, traded_at, is_opening, position_before, source, "
                    "received_at) VALUES (:p, :t, 'BTCUSDT', :s, 5000000000000, :q, 0, "
                    "'2026-01-01 00:00:00', true, 0, :src, '2026-01-01 00:00:00')"
                ),
                {
                    "p": pid,
                    "t": trade_id,
                    "s": side,
                    "q": qty * 10**8,
                    "src": "import" if trade_id == "7" else "stream",
                },
            )
        session.execute(
            text(
                "INSERT INTO leader_watermarks (portfolio_id, symbol, last_trade_id, position, "
                "updated_at) VALUES (:p, 'BTCUSDT', 110, 700000000, '2026-01-01 00:00:00')"
            ),
            {"p": pid},
        )
    assert migrate.upgrade(db_url) == HEAD
    with Session(engine) as session:
        positions, baselines = derive_positions(session, pid, "futures")
    assert baselines == {"BTCUSDT": 104}  # the imported #7 is history, not a live fill
    assert positions == {"BTCUSDT": D(7)}  # baseline 5 + 3 − 1, as stored before
    migrate.downgrade(db_url, "0002")
    assert "ingest_gaps" not in inspect(engine).get_table_names()
    engine.dispose()


def test_new_revision_numbers_the_next_file_and_finds_no_drift(tmp_path, monkeypatch):
    """`copytrade db revision`: the models equal head, so the autogenerated step is empty."""
    import shutil

    copy = tmp_path / "migrations"
    shutil.copytree(migrate.MIGRATIONS, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(migrate, "MIGRATIONS", copy)
    path = Path(migrate.new_revision("nothing changed"))
    assert path.parent == copy / "versions"
    expected = 1 + max(int(p.name[:4]) for p in (copy / "versions").glob("[0-9]*.py") if p != path)
    assert path.name == f"{expected:04d}_nothing_changed.py"
    body = path.read_text()
    assert (
        "def upgrade() -> None:\n    # ### commands auto generated by Alembic - please adjust! ###\n    pass"
        in body
    )
