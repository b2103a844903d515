"""The fast extract (ADBC workers on SQLite, COPY on PostgreSQL, CSV COPY into the PostgreSQL
target) gives exactly the values of the row path it replaced, on SQLite and PostgreSQL.

The row path (``fast=False``: SQLAlchemy rows → Arrow, one Python object per value) is the
reference. Both extracts run over the same ledger, in the same incremental steps (with an intent
still in flight at the first step), and every table must be equal: same Arrow types, same values,
NULLs and empty strings kept apart, money in the same integer units (R-LED-1 amounts unchanged).
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import insert, text, update
from sqlalchemy.engine import make_url

from copytrade.analytics import ledger_read
from copytrade.analytics.extract import TABLES, ParquetSink, PostgresSink, extract
from models.trading import FollowerOrderIntent
from tests.support.synthetic import SyntheticConfig, generate

# Strings the CSV paths must carry unchanged: separators, quotes, a newline, and '' beside NULL.
AWKWARD = 'comma, "quoted"\nand a new line'


@pytest.fixture
def ledger():
    return generate(SyntheticConfig(leaders=8, days=6, fills=600, copy_share=0.5, seed=11))


@pytest.fixture
def small_ranges(monkeypatch):
    """Make the SQLite fast path use its worker processes and split ranges even on a small ledger."""
    monkeypatch.setattr(ledger_read, "WORKER_MIN_IDS", 0)
    monkeypatch.setattr(ledger_read, "CHUNK_IDS", 97)


def _awkward_rows(engine, ledger) -> None:
    copy_id = int(ledger.copies["copy_id"].iloc[0])
    with engine.begin() as conn:
        conn.execute(
            text("update lead_portfolios set nickname = :n, offline_reason = :r where id = 1"),
            {"n": AWKWARD, "r": ""},
        )
        conn.execute(text("update lead_portfolios set nickname = '' where id = 2"))
        conn.execute(
            insert(FollowerOrderIntent),
            [
                {
                    "id": 900_000,
                    "leader_fill_id": None,
                    "copy_id": copy_id,
                    "client_order_id": "in-flight-1",
                    "symbol": "SYN00USDT",
                    "side": "buy",
                    "quantity": Decimal("0.00000001"),
                    "computed_quantity": Decimal("123456789.12345678"),
                    "status": "sent",
                    "created_at": datetime(2024, 1, 3, 12, 0, 0, 1, tzinfo=UTC),
                }
            ],
        )


def _settle_in_flight_intent(engine) -> None:
    with engine.begin() as conn:
        conn.execute(
            update(FollowerOrderIntent)
            .where(FollowerOrderIntent.id == 900_000)
            .values(status="done", outcome="skipped", reason=AWKWARD)
        )


def _parquet(root: Path, table: str) -> pa.Table:
    files = sorted((root / table).glob("*.parquet"))
    return pq.read_table(files).sort_by([("id", "ascending"), ("_batch_id", "ascending")])


def test_fast_extract_equals_the_row_path_R_LED_1(engine, ledger, tmp_path, small_ranges):
    ledger.write(engine, until=3)
    _awkward_rows(engine, ledger)
    fast, rows = ParquetSink(tmp_path / "fast"), ParquetSink(tmp_path / "rows")
    reports = {}
    for step in range(3):
        if step == 1:
            ledger.write(engine, since=3)
        if step == 2:
            _settle_in_flight_intent(engine)
        reports["fast", step] = extract(fast, engine=engine)
        reports["rows", step] = extract(rows, engine=engine, fast=False)
    for step in range(3):
        assert [(t.name, t.rows, t.watermark, t.pending) for t in reports["fast", step].tables] == [
            (t.name, t.rows, t.watermark, t.pending) for t in reports["rows", step].tables
        ]
    assert {t.name: t.pending for t in reports["fast", 0].tables}["follower_order_intents"] == 1
    for spec in TABLES:
        got, want = _parquet(tmp_path / "fast", spec.name), _parquet(tmp_path / "rows", spec.name)
        assert got.schema == want.schema, spec.name
        assert got.equals(want), spec.name
    fills = _parquet(tmp_path / "fast", "leader_fills")
    assert fills.num_rows == len(ledger.leader_fills) and len(set(fills["id"].to_pylist())) == len(
        ledger.leader_fills
    )
    intents = _parquet(tmp_path / "fast", "follower_order_intents").to_pylist()
    in_flight = [r for r in intents if r["id"] == 900_000]
    assert len(in_flight) == 1 and in_flight[0]["reason"] == AWKWARD  # once, in its final state
    assert in_flight[0]["quantity"] == 1 and in_flight[0]["computed_quantity"] == 12345678912345678
    portfolios = {r["id"]: r for r in _parquet(tmp_path / "fast", "lead_portfolios").to_pylist()}
    assert portfolios[1]["nickname"] == AWKWARD and portfolios[1]["offline_reason"] == ""
    assert portfolios[2]["nickname"] == "" and portfolios[3]["offline_reason"] is None


def _raw(pg_url: str, schema: str, table: str) -> pa.Table:
    from copytrade.db import make_engine

    warehouse = make_engine(pg_url)
    try:
        with warehouse.connect() as conn:
            result = conn.execute(
                text(f'select * from "{schema}"."raw_{table}" order by id, _batch_id')
            )
            names = list(result.keys())
            rows = result.fetchall()
    finally:
        warehouse.dispose()
    return pa.Table.from_pylist([dict(zip(names, r, strict=True)) for r in rows])


def test_postgres_target_holds_the_row_paths_values(engine, ledger, tmp_path, pg_url, small_ranges):
    """The PostgreSQL target's raw tables (CSV COPY from Arrow) hold what the row path extracts."""
    ledger.write(engine, until=3)
    _awkward_rows(engine, ledger)
    schema = make_url(pg_url).query["options"].split("search_path=")[1]
    sink = PostgresSink(pg_url, schema)
    try:
        extract(sink, engine=engine)
        extract(ParquetSink(tmp_path / "rows"), engine=engine, fast=False)
        ledger.write(engine, since=3)
        _settle_in_flight_intent(engine)
        extract(sink, engine=engine)
        extract(ParquetSink(tmp_path / "rows"), engine=engine, fast=False)
    finally:
        sink.close()
    for spec in TABLES:
        want = _parquet(tmp_path / "rows", spec.name)
        got = _raw(pg_url, schema, spec.name)
        if spec.kind == "snapshot":  # the target keeps the last copy only
            want = want.filter(pa.compute.equal(want["_batch_id"], 2))
        assert got.num_rows == want.num_rows, spec.name
        if got.num_rows:
            assert got.cast(want.schema).equals(want.select(got.column_names)), spec.name
