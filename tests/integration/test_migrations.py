"""Migrations on SQLite and PostgreSQL: they build exactly the models' schema, and go down again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.orm import Session

import models
from copytrade import migrate
from copytrade.db import make_engine
from copytrade.ledger import Ledger, Leg
from copytrade.ledger.chain import chain_hash, transfer_digest
from copytrade.ledger.rawsql import Raw


def post_single_chain(engine, key: str, legs: list[tuple[str, str, int]], at: datetime) -> None:
    """Post a transfer as the ledger did before streams (migrations 0001-0002): one chain, its
    head in the single ``ledger_chain_head`` row, ``seq`` unique over the whole ledger."""
    with Session(engine) as session, session.begin():
        raw = Raw(session)
        run = session.connection().exec_driver_sql
        m = raw.mark
        last_seq, last_hash = run("select last_seq, last_hash from ledger_chain_head").one()
        seq, digest = last_seq + 1, transfer_digest(key, "deposit", legs)
        new_hash = chain_hash(last_hash, seq, at, digest)
        run(
            "insert into ledger_transfers (seq, idempotency_key, code, memo, created_at, digest, "
            f"prev_hash, hash) values ({m}, {m}, 'deposit', '', {m}, {m}, {m}, {m})",
            (seq, key, raw.stamp(at), digest, last_hash, new_hash),
        )
        (transfer_id,) = run(f"select id from ledger_transfers where seq = {m}", (seq,)).one()
        for address, asset, units in legs:
            found = run(
                f"select id from ledger_accounts where address = {m} and asset = {m}",
                (address, asset),
            ).first()
            if found is None:
                run(
                    "insert into ledger_accounts (address, asset, allow_negative, balance, "
                    f"created_at) values ({m}, {m}, {m}, 0, {m})",
                    (address, asset, address.startswith("external:"), raw.stamp(at)),
                )
                found = run(
                    f"select id from ledger_accounts where address = {m} and asset = {m}",
                    (address, asset),
                ).first()
            run(
                "insert into ledger_postings (transfer_id, account_id, asset, amount) "
                f"values ({m}, {m}, {m}, {m})",
                (transfer_id, found[0], asset, units),
            )
            run(
                f"update ledger_accounts set balance = balance + {m} where id = {m}",
                (units, found[0]),
            )
        run(f"update ledger_chain_head set last_seq = {m}, last_hash = {m}", (seq, new_hash))


def single_chain_history(engine, n: int) -> None:
    at = datetime(2025, 1, 6, tzinfo=UTC)
    for i in range(n):
        units = (i + 1) * 100_000_000
        post_single_chain(
            engine,
            f"dep-{i}",
            [("external:deposits", "USDT", -units), (f"person:{i % 3}:spot", "USDT", units)],
            at + timedelta(seconds=i, microseconds=i),
        )


HEAD = "0003"  # 0001 → 0002 → 0004 → 0006 → 0005 → 0003 (the order the branches landed in)


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
    """0001 → 0002 → head on a ledger with history: postings stay, the chain still verifies (R-X-4)."""
    assert migrate.upgrade(db_url, "0001") == "0001"
    engine = make_engine(db_url)
    post_single_chain(
        engine,
        "d",
        [("external:deposits", "USDT", -500_000_000), ("person:1:spot", "USDT", 500_000_000)],
        datetime.now(UTC),
    )
    assert migrate.upgrade(db_url, "0002") == "0002"
    indexes = {
        ix["name"]: ix["column_names"] for ix in inspect(engine).get_indexes("ledger_postings")
    }
    assert indexes == {
        "ix_ledger_postings__transfer_id_asset_amount": ["transfer_id", "asset", "amount"],
        "ix_ledger_postings__account_id_amount": ["account_id", "amount"],
    }
    migrate.upgrade(db_url)
    with Session(engine) as session:
        assert Ledger(session).verify_chain().ok
        assert Ledger(session).balance("person:1:spot", "USDT") == D(5)
    engine.dispose()


def test_0005_makes_the_single_chain_stream_0_and_keeps_it_verifiable_R_X_4(db_url, tamper):
    """A ledger with single-chain history (0002) migrated to streams: its transfers become
    stream 0 with their stored hashes unchanged, the old head becomes stream 0's, posting goes
    on in stream 0 and in new streams, and an edit of migrated history is still detected."""
    migrate.upgrade(db_url, "0002")
    engine = make_engine(db_url)
    single_chain_history(engine, 40)
    with engine.connect() as conn:
        before = conn.exec_driver_sql(
            "select id, seq, hash from ledger_transfers order by id"
        ).all()
        head = conn.exec_driver_sql("select last_seq, last_hash from ledger_chain_head").one()
    assert migrate.upgrade(db_url) == HEAD
    with engine.connect() as conn:
        after = conn.exec_driver_sql(
            "select id, seq, hash, stream from ledger_transfers order by id"
        ).all()
        heads = conn.exec_driver_sql(
            "select stream, last_seq, last_hash from ledger_chain_heads where stream >= 0"
        ).all()
    assert [tuple(r[:3]) for r in after] == [tuple(r) for r in before]
    assert {r[3] for r in after} == {0} and heads == [(0, *head)]
    with Session(engine) as session:
        report = Ledger(session).verify_chain()
        assert report.ok and report.checked == 40 and report.heads[0] == tuple(head)
        assert Ledger(session).balance("person:0:spot", "USDT") == sum(
            D(i + 1) for i in range(40) if i % 3 == 0
        )
    for stream in (0, 3):
        with Session(engine) as session, session.begin():
            Ledger(session).post_many(
                [models_deposit(f"after-{stream}-{i}", f"person:{stream}:spot") for i in range(3)],
                stream=stream,
            )
    with Session(engine) as session, session.begin():
        Ledger(session).anchor()
    with Session(engine) as session:
        report = Ledger(session).verify_chain()
        assert report.ok and report.heads == {
            0: (43, report.heads[0][1]),
            3: (3, report.heads[3][1]),
        }
    tamper(
        engine,
        "ledger_postings",
        "update ledger_postings set amount = amount + 1 where amount > 0 and transfer_id = "
        "(select id from ledger_transfers where stream = 0 and seq = 17)",
    )
    with Session(engine) as session:
        report = Ledger(session).verify_chain()
    assert (report.first_broken_stream, report.first_broken_seq) == (0, 17)
    engine.dispose()


def test_0005_goes_down_while_every_transfer_is_in_stream_0(db_url):
    migrate.upgrade(db_url, "0002")
    engine = make_engine(db_url)
    single_chain_history(engine, 5)
    migrate.upgrade(db_url)
    with Session(engine) as session, session.begin():
        Ledger(session).post(models_deposit("later", "person:1:spot"))
    migrate.downgrade(db_url, "0002")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("select last_seq from ledger_chain_head").scalar() == 6
    migrate.upgrade(db_url)
    with Session(engine) as session, session.begin():
        Ledger(session).post(models_deposit("elsewhere", "person:2:spot"), stream=1)
    with pytest.raises(RuntimeError, match="stream 0"):
        migrate.downgrade(db_url, "0002")
    with Session(engine) as session:
        assert Ledger(session).verify_chain().ok
    engine.dispose()


def models_deposit(key: str, address: str):
    from copytrade.ledger import TransferSpec

    return TransferSpec(
        key, "deposit", (Leg("external:deposits", "USDT", D(-1)), Leg(address, "USDT", D(1)))
    )


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
    post_single_chain(
        engine,
        "d",
        [("external:deposits", "USDT", -500_000_000), ("person:1:spot", "USDT", 500_000_000)],
        datetime.now(UTC),
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
