"""The ledger → warehouse extract: incremental, idempotent, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pyarrow.parquet as pq
import pytest
from sqlalchemy import insert, update

from copytrade.analytics.extract import ParquetSink, PostgresSink, extract
from models.trading import FollowerOrderIntent
from tests.support.synthetic import SyntheticConfig, generate


def _read(root, table):
    files = sorted((root / table).glob("*.parquet"))
    return pq.read_table(files).to_pandas() if files else None


@pytest.fixture
def ledger():
    return generate(SyntheticConfig(leaders=6, days=6, fills=300, copy_share=0.5, seed=3))


def test_extract_is_incremental_and_idempotent(engine, ledger, tmp_path):
    ledger.write(engine, until=4)
    sink = ParquetSink(tmp_path)
    first = extract(sink, engine=engine)
    again = extract(sink, engine=engine)
    assert first.batch == 1 and again.batch == 2
    appended = {t.name: t.rows for t in again.tables if t.kind != "snapshot"}
    assert set(appended.values()) == {0}, appended
    ledger.write(engine, since=4)
    third = extract(sink, engine=engine)
    fills = _read(tmp_path, "leader_fills")
    assert len(fills) == len(ledger.leader_fills) == fills["id"].nunique()
    assert set(fills["_batch_id"]) == {1, 3}
    assert {t.name: t.rows for t in third.tables}["leader_fills"] == int(
        (ledger.leader_fills["traded_at"] >= ledger.day_start(4)).sum()
    )
    # amounts stay integer units, timestamps naive UTC
    first_fill = ledger.leader_fills.iloc[0]
    row = fills.set_index("id").loc[int(first_fill["id"])]
    assert row["price"] == first_fill["price"]
    assert row["traded_at"] == first_fill["traded_at"].tz_convert("UTC").tz_localize(None)
    postings = _read(tmp_path, "ledger_postings")
    transfers = _read(tmp_path, "ledger_transfers")
    assert set(postings["transfer_id"]) == set(transfers["id"])
    assert postings.groupby("transfer_id")["amount"].sum().eq(0).all()  # R-LED-1 carried over


def test_intent_is_extracted_once_in_its_final_state_R_COPY_7(engine, ledger, tmp_path):
    ledger.write(engine)
    with engine.begin() as conn:
        conn.execute(
            insert(FollowerOrderIntent),
            [
                {
                    "id": 900_000,
                    "leader_fill_id": None,
                    "copy_id": int(ledger.copies["copy_id"].iloc[0]),
                    "client_order_id": "pending-1",
                    "symbol": "SYN00USDT",
                    "side": "buy",
                    "quantity": Decimal(1),
                    "computed_quantity": Decimal(1),
                    "status": "sent",
                    "created_at": datetime(2024, 1, 3, tzinfo=UTC),
                }
            ],
        )
    sink = ParquetSink(tmp_path)
    report = extract(sink, engine=engine)
    assert {t.name: t.pending for t in report.tables}["follower_order_intents"] == 1
    assert 900_000 not in set(_read(tmp_path, "follower_order_intents")["id"])
    with engine.begin() as conn:
        conn.execute(
            update(FollowerOrderIntent)
            .where(FollowerOrderIntent.id == 900_000)
            .values(status="done", outcome="skipped", reason="below_min_notional")
        )
    extract(sink, engine=engine)
    extract(sink, engine=engine)
    intents = _read(tmp_path, "follower_order_intents")
    assert intents["id"].is_unique
    final = intents.set_index("id").loc[900_000]
    assert final["outcome"] == "skipped" and final["reason"] == "below_min_notional"


def test_crashed_run_is_redone_with_the_same_batch(engine, ledger, tmp_path):
    ledger.write(engine)
    sink = ParquetSink(tmp_path)

    class Crash(ParquetSink):
        def finish(self, state):
            raise RuntimeError("crash before the state is saved")

    with pytest.raises(RuntimeError):
        extract(Crash(tmp_path), engine=engine)
    report = extract(sink, engine=engine)
    assert report.batch == 1
    fills = _read(tmp_path, "leader_fills")
    assert len(fills) == len(ledger.leader_fills) == fills["id"].nunique()


def test_state_of_another_ledger_is_refused(engine, ledger, tmp_path):
    from copytrade.db import make_engine

    ledger.write(engine)
    extract(ParquetSink(tmp_path / "extract"), engine=engine)
    other = make_engine(f"sqlite:///{tmp_path / 'other.db'}")
    with pytest.raises(ValueError, match="belongs to ledger"):
        extract(ParquetSink(tmp_path / "extract"), engine=other)
    other.dispose()


def test_postgres_sink_loads_raw_tables_in_one_transaction(engine, ledger, pg_url):
    from sqlalchemy import text

    from copytrade.db import make_engine

    ledger.write(engine, until=4)
    schema = _schema_of(pg_url)
    sink = PostgresSink(pg_url, schema)
    try:
        extract(sink, engine=engine)
        ledger.write(engine, since=4)
        report = extract(sink, engine=engine)
    finally:
        sink.close()
    assert report.batch == 2
    warehouse = make_engine(pg_url)
    with warehouse.connect() as conn:
        count = conn.execute(
            text(f'select count(*), count(distinct id) from "{schema}".raw_leader_fills')
        ).one()
        portfolios = conn.execute(
            text(f'select count(*) from "{schema}".raw_lead_portfolios')
        ).scalar_one()
    warehouse.dispose()
    assert count[0] == count[1] == len(ledger.leader_fills)
    assert portfolios == len(ledger.portfolios)


def _schema_of(url: str) -> str:
    from sqlalchemy.engine import make_url

    options = make_url(url).query["options"]
    return options.split("search_path=")[1]
