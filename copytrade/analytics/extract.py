"""Incremental extract: new ledger rows since the last watermark → the warehouse's raw sources.

DuckDB cannot attach SQLite or PostgreSQL here (its scanner extensions cannot be downloaded), so
the ledger reaches dbt through this extract. It reads the ledger (SQLite or PostgreSQL) with plain
SQL, so amounts stay the stored integer 1e-8 units, and writes one of two sinks:

* ``ParquetSink`` (DuckDB target): ``<dir>/<table>/batch_<n>_part_<k>.parquet`` files that the dbt
  sources read with ``read_parquet``, and ``<dir>/_state.json`` with the watermarks;
* ``PostgresSink`` (PostgreSQL target): ``raw_<table>`` tables in the target schema, with the
  watermarks in ``raw__extract_state`` written in the same transaction as the rows.

Three kinds of table (``TABLES``):

* ``append``: immutable rows taken by id above the watermark (fills, ledger transfers and
  postings, accounts);
* ``settling``: rows that change until they reach a final state (follower order intents, final
  once they have an outcome). Final rows above the watermark are taken; ids still in flight are
  remembered and taken once final, so every row is extracted exactly once, in its final state;
* ``snapshot``: small, mutable tables copied whole every time (portfolios, copies, mark prices).

Every extracted row carries ``_batch_id``, the number of the extract run that took it; incremental
dbt models use it to find what is new. A run is idempotent: the state is saved last, so a crashed
run is repeated with the same batch number and overwrites its own partial output.
"""

from __future__ import annotations

import io
import json
import os
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url

from copytrade.analytics.ledger_read import (
    BOOL,
    DATE,
    I32,
    I64,
    STR,
    TS,
    Source,
    empty_table,
    open_source,
)
from copytrade.config import get_settings
from copytrade.db import make_engine

Kind = Literal["append", "settling", "snapshot"]
WRITE_THREADS = 2  # Parquet parts compressed at once


@dataclass(frozen=True)
class TableSpec:
    """What to take from one ledger table and how."""

    name: str
    kind: Kind
    columns: dict[str, pa.DataType]
    final_when: str | None = None  # settling tables: SQL condition of a final row
    bounded_by: tuple[str, str] | None = (
        None  # append: (fk column, table whose watermark bounds it)
    )

    @property
    def select_list(self) -> str:
        return ", ".join(self.columns)


TABLES: tuple[TableSpec, ...] = (
    TableSpec(
        "lead_portfolios",
        "snapshot",
        {
            "id": I64,
            "leader_person_id": I64,
            "mode": STR,
            "visibility": STR,
            "nickname": STR,
            "profit_share_ratio": I64,
            "capital": I64,
            "capital_asset": STR,
            "status": STR,
            "follower_cap": I64,
            "is_listed": BOOL,
            "offline_reason": STR,
            "created_at": TS,
            "closed_at": TS,
        },
    ),
    TableSpec(
        "copies",
        "snapshot",
        {
            "id": I64,
            "portfolio_id": I64,
            "follower_person_id": I64,
            "status": STR,
            "allocation": I64,
            "sizing_mode": STR,
            "stop_reason": STR,
            "started_at": TS,
            "stopped_at": TS,
        },
    ),
    TableSpec(
        "mark_prices",
        "snapshot",
        {
            "id": I64,
            "symbol": STR,
            "market": STR,
            "marked_at": TS,
            "price": I64,
            "quote_volume": I64,
        },
    ),
    TableSpec(
        "leader_history_imports",
        "snapshot",
        {"id": I64, "portfolio_id": I64, "first_fill_at": TS, "capital_since": DATE},
    ),
    TableSpec("ledger_accounts", "append", {"id": I64, "address": STR, "asset": STR}),
    TableSpec(
        "ledger_transfers",
        "append",
        {"id": I64, "seq": I64, "code": STR, "created_at": TS},
    ),
    TableSpec(
        "ledger_postings",
        "append",
        {"id": I64, "transfer_id": I64, "account_id": I64, "asset": STR, "amount": I64},
        bounded_by=("transfer_id", "ledger_transfers"),
    ),
    TableSpec(
        "leader_fills",
        "append",
        {
            "id": I64,
            "portfolio_id": I64,
            "exchange_trade_id": STR,
            "symbol": STR,
            "side": STR,
            "position_side": STR,
            "price": I64,
            "quantity": I64,
            "fee": I64,
            "fee_asset": STR,
            "realised_pnl": I64,
            "is_opening": BOOL,
            "source": STR,
            "traded_at": TS,
            "received_at": TS,
        },
    ),
    TableSpec(
        "follower_fills",
        "append",
        {
            "id": I64,
            "order_id": I64,
            "copy_id": I64,
            "leader_fill_id": I64,
            "symbol": STR,
            "side": STR,
            "price": I64,
            "quantity": I64,
            "fee": I64,
            "realised_pnl": I64,
            "leader_price": I64,
            "slippage_bps": I64,
            "rebate": I64,
            "copy_delay_ms": I64,
            "traded_at": TS,
        },
    ),
    TableSpec(
        "follower_order_intents",
        "settling",
        {
            "id": I64,
            "leader_fill_id": I64,
            "copy_id": I64,
            "leg": I64,
            "kind": STR,
            "symbol": STR,
            "side": STR,
            "quantity": I64,
            "computed_quantity": I64,
            "outcome": STR,
            "reason": STR,
            "created_at": TS,
            "sent_at": TS,
            "acked_at": TS,
        },
        final_when="outcome is not null",
    ),
)
TABLES_BY_NAME = {t.name: t for t in TABLES}


@dataclass
class TableState:
    watermark: int = 0  # highest id taken (append) or highest id seen final-or-pending (settling)
    pending: list[int] = field(default_factory=list)  # settling: ids seen but not yet final


@dataclass
class ExtractState:
    source: str = ""  # the ledger this state belongs to (URL without password)
    batch: int = 0
    tables: dict[str, TableState] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "source": self.source,
            "batch": self.batch,
            "tables": {
                k: {"watermark": v.watermark, "pending": v.pending} for k, v in self.tables.items()
            },
        }

    @classmethod
    def from_json(cls, data: dict) -> ExtractState:
        return cls(
            source=data.get("source", ""),
            batch=int(data.get("batch", 0)),
            tables={k: TableState(**v) for k, v in data.get("tables", {}).items()},
        )


@dataclass(frozen=True)
class TableReport:
    name: str
    kind: Kind
    rows: int
    watermark: int
    pending: int


@dataclass(frozen=True)
class ExtractReport:
    batch: int
    tables: list[TableReport]
    sink: str

    @property
    def rows(self) -> int:
        return sum(t.rows for t in self.tables)


class Sink(Protocol):
    """Where extracted rows go; the state is committed last by ``finish``."""

    def load_state(self) -> ExtractState | None: ...

    def begin(self, batch: int) -> None: ...

    def write(self, spec: TableSpec, batch: int, chunks: Iterator[pa.Table]) -> int: ...

    def finish(self, state: ExtractState) -> None: ...

    def abort(self) -> None: ...

    def describe(self) -> str: ...


def _max_id(source: Source, table: str) -> int:
    return source.scalar(f"select coalesce(max(id), 0) from {table}")


def reader_engine(url: str | None = None) -> Engine:
    """Return an engine for reading the ledger without taking its write lock.

    ``copytrade.db.make_engine`` starts every SQLite transaction with BEGIN IMMEDIATE (the ledger's
    writers serialise on it); a reader must not block them, so SQLite gets a deferred BEGIN here.
    """
    url = url or get_settings().ledger_url
    if make_url(url).get_backend_name() != "sqlite":
        return make_engine(url)
    engine = create_engine(url, connect_args={"timeout": 60})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        dbapi_conn.isolation_level = None

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        conn.exec_driver_sql("BEGIN")

    return engine


def source_label(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def extract(
    sink: Sink,
    ledger_url: str | None = None,
    *,
    engine: Engine | None = None,
    full: bool = False,
    fast: bool = True,
) -> ExtractReport:
    """Take every ledger row not yet extracted into ``sink``; ``full`` starts again from zero.

    ``fast=False`` reads through SQLAlchemy rows, the reference path (``ledger_read``).
    """
    own_engine = engine is None
    engine = engine or reader_engine(ledger_url)
    label = source_label(str(engine.url))
    state = None if full else sink.load_state()
    if state is not None and state.source and state.source != label:
        raise ValueError(
            f"extract state belongs to ledger {state.source!r}, not {label!r}; "
            "run a full extract (--full) into a fresh folder or schema"
        )
    state = state or ExtractState(source=label)
    state.source = label
    batch = state.batch + 1
    reports: list[TableReport] = []
    sink.begin(batch)
    try:
        # One read transaction: every table is read from the same snapshot.
        with open_source(engine, fast=fast) as source:
            upper = {t.name: _max_id(source, t.name) for t in TABLES if t.kind == "append"}
            for spec in TABLES:
                table_state = state.tables.setdefault(spec.name, TableState())
                rows = _extract_table(source, sink, spec, table_state, state, upper, batch)
                reports.append(
                    TableReport(
                        spec.name,
                        spec.kind,
                        rows,
                        table_state.watermark,
                        len(table_state.pending),
                    )
                )
        state.batch = batch
        sink.finish(state)
    except BaseException:
        sink.abort()
        raise
    finally:
        if own_engine:
            engine.dispose()
    return ExtractReport(batch=batch, tables=reports, sink=sink.describe())


def _extract_table(source: Source, sink, spec, table_state, state, upper, batch) -> int:
    # Bounds are ids the extract computed itself, written into the SQL as integers: COPY takes no
    # bind parameters.
    name, columns = spec.name, spec.columns
    if spec.kind == "snapshot":
        return sink.write(spec, batch, source.read(name, columns, "1 = 1", batch))
    if spec.kind == "append":
        low, high = int(table_state.watermark), int(upper[name])
        if spec.bounded_by:
            fk, parent = spec.bounded_by
            # Postings are taken with their transfers: everything whose transfer is now extracted.
            bound = int(state.tables[parent].watermark)
            where = f"id > {low} and {fk} <= {bound}"
            written = sink.write(spec, batch, source.read(name, columns, where, batch))
            table_state.watermark = source.scalar(
                f"select coalesce(max(id), {low}) from {name} where {where}"
            )
            return written
        where = f"id > {low} and id <= {high}"
        written = sink.write(spec, batch, source.read(name, columns, where, batch, split=True))
        table_state.watermark = max(low, high)
        return written
    # settling
    assert spec.final_when
    high = _max_id(source, name)
    low = int(table_state.watermark)
    tables, still_pending = source.settling(
        name, columns, spec.final_when, low, high, sorted(set(table_state.pending)), batch
    )
    written = sink.write(spec, batch, tables)
    table_state.pending = sorted(still_pending)
    table_state.watermark = max(low, high)
    return written


# -- sinks -------------------------------------------------------------------------------------


class ParquetSink:
    """Parquet files per table and batch under ``root``, read by the dbt sources on DuckDB."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def describe(self) -> str:
        return f"parquet:{self.root}"

    @property
    def state_path(self) -> Path:
        return self.root / "_state.json"

    def load_state(self) -> ExtractState | None:
        if not self.state_path.exists():
            return None
        return ExtractState.from_json(json.loads(self.state_path.read_text()))

    def begin(self, batch: int) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        # Files of a batch that never committed its state belong to a crashed run: redo them.
        for path in self.root.glob("*/batch_*.parquet"):
            if int(path.name.split("_")[1]) >= batch:
                path.unlink()

    def write(self, spec: TableSpec, batch: int, chunks: Iterator[pa.Table]) -> int:
        folder = self.root / spec.name
        folder.mkdir(parents=True, exist_ok=True)
        total = 0
        if spec.kind == "snapshot":
            tables = list(chunks) or [empty_table(spec.columns)]
            _atomic_parquet(pa.concat_tables(tables), folder / "snapshot.parquet")
            return sum(t.num_rows for t in tables)
        part = 0
        # Parts are compressed on threads (Arrow releases the GIL) while the next chunk is read;
        # at most `threads + 1` chunks are held.
        with ThreadPoolExecutor(WRITE_THREADS, thread_name_prefix="extract-write") as pool:
            writing: deque = deque()
            for chunk in chunks:
                path = folder / f"batch_{batch:06d}_part_{part:04d}.parquet"
                writing.append(pool.submit(_atomic_parquet, chunk, path))
                total += chunk.num_rows
                part += 1
                if len(writing) > WRITE_THREADS:
                    writing.popleft().result()
            while writing:
                writing.popleft().result()
        if part == 0 and not any(folder.glob("*.parquet")):
            # An empty file with the schema, so the source's glob always matches.
            _atomic_parquet(
                empty_table(spec.columns), folder / f"batch_{batch:06d}_part_0000.parquet"
            )
        return total

    def abort(self) -> None:
        """Leave partial files: the next run reuses the batch number and replaces them."""

    def finish(self, state: ExtractState) -> None:
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state.to_json(), indent=1))
        os.replace(tmp, self.state_path)


def _atomic_parquet(table: pa.Table, path: Path) -> None:
    tmp = path.with_suffix(".parquet.tmp")
    # lz4, dictionaries for strings only (symbols, sides, codes repeat; ids, money and times do
    # not): a third of zstd's default CPU for files as large as lz4's, read as fast by DuckDB.
    strings = [f.name for f in table.schema if pa.types.is_string(f.type)]
    pq.write_table(table, tmp, compression="lz4", use_dictionary=strings)
    os.replace(tmp, path)


_PG_TYPES = {
    I64: "bigint",
    STR: "text",
    BOOL: "boolean",
    TS: "timestamp",
    DATE: "date",
    I32: "integer",
}


class PostgresSink:
    """``raw_<table>`` tables in one PostgreSQL schema; rows and state commit in one transaction."""

    def __init__(self, url: str, schema: str) -> None:
        self.url = url
        self.schema = schema
        self._engine = make_engine(url)
        self._conn: Connection | None = None

    def describe(self) -> str:
        return f"postgres:{source_label(self.url)}/{self.schema}"

    def _q(self, name: str) -> str:
        return f'"{self.schema}"."{name}"'

    def load_state(self) -> ExtractState | None:
        with self._engine.begin() as conn:
            self._ensure_state_table(conn)
            row = conn.execute(
                text(f"select state from {self._q('raw__extract_state')} where id = 1")
            ).first()
        return ExtractState.from_json(json.loads(row[0])) if row else None

    def _ensure_state_table(self, conn: Connection) -> None:
        conn.execute(text(f'create schema if not exists "{self.schema}"'))
        conn.execute(
            text(
                f"create table if not exists {self._q('raw__extract_state')} (id integer primary key, state text not null)"
            )
        )

    def begin(self, batch: int) -> None:
        self._conn = self._engine.connect()
        self._conn.begin()
        self._ensure_state_table(self._conn)
        for spec in TABLES:
            cols = ", ".join(f'"{c}" {_PG_TYPES[t]}' for c, t in spec.columns.items())
            self._conn.execute(
                text(
                    f"create table if not exists {self._q('raw_' + spec.name)} ({cols}, _batch_id bigint not null)"
                )
            )

    def write(self, spec: TableSpec, batch: int, chunks: Iterator[pa.Table]) -> int:
        assert self._conn is not None
        table = self._q("raw_" + spec.name)
        if spec.kind == "snapshot":
            self._conn.execute(text(f"truncate {table}"))
        names = ", ".join(f'"{n}"' for n in [*spec.columns, "_batch_id"])
        total = 0
        raw = self._conn.connection.driver_connection
        with raw.cursor() as cur:
            for chunk in chunks:
                # Arrow writes CSV in C: NULL as an empty field and every string quoted, so an
                # empty string ("") stays distinct from NULL in PostgreSQL's CSV format.
                data = io.BytesIO()
                pacsv.write_csv(chunk, data, pacsv.WriteOptions(include_header=False))
                with cur.copy(f"copy {table} ({names}) from stdin (format csv)") as copy:
                    copy.write(data.getbuffer())
                total += chunk.num_rows
        return total

    def finish(self, state: ExtractState) -> None:
        assert self._conn is not None
        payload = json.dumps(state.to_json())
        self._conn.execute(
            text(
                f"insert into {self._q('raw__extract_state')} (id, state) values (1, :s) "
                "on conflict (id) do update set state = excluded.state"
            ),
            {"s": payload},
        )
        self._conn.commit()
        self._conn.close()
        self._conn = None

    def abort(self) -> None:
        if self._conn is not None:
            self._conn.rollback()
            self._conn.close()
            self._conn = None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.rollback()
            self._conn.close()
            self._conn = None
        self._engine.dispose()
