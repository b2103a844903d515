"""Ledger rows straight into Arrow: the extract's read path, without a Python object per value.

A full extract reads every fill (10 M at the benchmark's scale). Fetching them as Python rows and
building Arrow arrays from them cost about 1 µs per value; the readers here keep values in C until
they are Arrow arrays, and produce the same arrays the row path does (tests compare them):

* ``SqliteSource``: the ADBC SQLite driver (``adbc-driver-sqlite``) reads result sets into Arrow
  batches. Large id ranges are split and read on several connections at once (two cores): an
  append-only row with an id at or below the snapshot's maximum never changes, and SQLite commits
  ids in order (one writer), so every connection sees the same rows of such a range.
* ``PostgresSource``: ``COPY (query) TO STDOUT`` as CSV on the extract's own connection (the same
  REPEATABLE READ snapshot as every other table), parsed by Arrow's CSV reader with the column
  types given, so integers stay exact 1e-8 units.
* ``RowSource``: the previous path (SQLAlchemy rows → Arrow), kept as the reference the two fast
  readers are tested against, and for SQLite databases with no file (``:memory:``).

Every source yields tables with the columns of the spec and ``_batch_id``; timestamps are naive
UTC microseconds, booleans are booleans, money is int64 units.
"""

from __future__ import annotations

import io
import os
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC
from typing import TYPE_CHECKING, Protocol

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

if TYPE_CHECKING:  # SQLAlchemy is not imported by the SQLite worker processes (start-up time)
    from sqlalchemy import Connection, Engine

I64, STR, BOOL, TS, DATE, I32 = (
    pa.int64(),
    pa.string(),
    pa.bool_(),
    pa.timestamp("us"),
    pa.date32(),
    pa.int32(),
)
Columns = dict[str, pa.DataType]

CHUNK_ROWS = 500_000  # rows per Parquet part written by the row and COPY paths
CHUNK_IDS = 500_000  # ids per range read by one SQLite connection
READ_WORKERS = max(2, min(4, os.cpu_count() or 2))  # SQLite worker processes reading ranges


class Source(Protocol):
    """Reads one snapshot of the ledger: small control queries and tables as Arrow."""

    def scalar(self, sql: str) -> int: ...

    def ids(self, sql: str) -> set[int]: ...

    def read(
        self, table: str, columns: Columns, where: str, batch: int, *, split: bool = False
    ) -> Iterator[pa.Table]:
        """Yield the rows of ``table`` matching ``where`` in the spec's schema (not always in id order).

        ``split``: the rows are append-only and ``where`` bounds their ids by the snapshot's
        maximum, so the source may read id ranges on other connections.
        """
        ...

    def settling(
        self, table: str, columns: Columns, final: str, low: int, high: int, pending, batch: int
    ) -> tuple[Iterator[pa.Table], set[int]]: ...


def schema(columns: Columns) -> pa.Schema:
    return pa.schema([*((name, typ) for name, typ in columns.items()), ("_batch_id", I64)])


def empty_table(columns: Columns) -> pa.Table:
    return schema(columns).empty_table()


def _with_batch(arrays: list[pa.Array], columns: Columns, batch: int, rows: int) -> pa.Table:
    arrays.append(pa.repeat(pa.scalar(batch, I64), rows))
    return pa.Table.from_arrays(arrays, schema=schema(columns))


def _select(
    table: str,
    columns: Columns,
    where: str,
    expressions: dict[str, str] | None = None,
    ordered: bool = True,
) -> str:
    exprs = expressions or {}
    cols = ", ".join(exprs.get(name, name) for name in columns)
    return f"select {cols} from {table} where {where}" + (" order by id" if ordered else "")


# -- the row path (reference) ------------------------------------------------------------------


class RowSource:
    """SQLAlchemy rows → Arrow arrays, one Python object per value (the previous extract path)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def scalar(self, sql: str) -> int:
        return int(self.conn.exec_driver_sql(sql).scalar_one())

    def ids(self, sql: str) -> set[int]:
        return {int(r[0]) for r in self.conn.exec_driver_sql(sql)}

    def read(self, table, columns, where, batch, *, split=False) -> Iterator[pa.Table]:
        result = self.conn.exec_driver_sql(_select(table, columns, where))
        while rows := result.fetchmany(CHUNK_ROWS):
            yield rows_to_arrow(columns, rows, batch)

    def settling(self, table, columns, final, low, high, pending, batch):
        return settling_rows(self, table, columns, final, low, high, pending, batch)


_IN_CHUNK = 500


def settling_rows(
    source, table: str, columns: Columns, final: str, low: int, high: int, pending, batch: int
) -> tuple[Iterator[pa.Table], set[int]]:
    """Rows of a settling table that are final (ids in (low, high] or seen pending before), and
    the ids still not final, both from the one snapshot of ``source``.

    The rows are read in full before returning (a list), so the pending ids are known with them.
    """
    in_lists = [
        ", ".join(str(int(i)) for i in pending[k : k + _IN_CHUNK])
        for k in range(0, len(pending), _IN_CHUNK)
    ]
    tables = list(source.read(table, columns, f"id > {low} and id <= {high} and {final}", batch))
    for ids in in_lists:
        tables += source.read(table, columns, f"{final} and id in ({ids})", batch)
    still = source.ids(
        f"select id from {table} where id > {low} and id <= {high} and not ({final})"
    )
    for ids in in_lists:
        still |= source.ids(f"select id from {table} where not ({final}) and id in ({ids})")
    return iter(tables), still


def rows_to_arrow(columns: Columns, rows: list, batch: int) -> pa.Table:
    values = list(zip(*rows, strict=True)) if rows else [[] for _ in columns]
    arrays = []
    for typ, column in zip(columns.values(), values, strict=True):
        if typ == TS:
            arrays.append(_timestamps(column))
        elif typ == DATE:
            arrays.append(_dates(column))
        elif typ == BOOL:
            arrays.append(pa.array([None if v is None else bool(v) for v in column], BOOL))
        else:
            arrays.append(pa.array(column, typ))
    return _with_batch(arrays, columns, batch, len(rows))


def _timestamps(values) -> pa.Array:
    """Return naive UTC timestamps from SQLite text or PostgreSQL timezone-aware datetimes."""
    sample = next((v for v in values if v is not None), None)
    if isinstance(sample, str):
        return pa.array(values, STR).cast(TS)
    return pa.array(
        [
            None if v is None else (v.astimezone(UTC).replace(tzinfo=None) if v.tzinfo else v)
            for v in values
        ],
        TS,
    )


def _dates(values) -> pa.Array:
    sample = next((v for v in values if v is not None), None)
    if isinstance(sample, str):
        return pa.array(values, STR).cast(TS).cast(DATE)
    return pa.array(values, DATE)


# -- SQLite through ADBC, in worker processes ----------------------------------------------------

# The ADBC driver carries its own SQLite library. Two SQLite libraries in one process must not
# open the same file (each drops the other's POSIX locks: "disk I/O error", and worse for a
# writer), so the driver runs only in worker processes (`python -m
# copytrade.analytics.ledger_read`, which imports Arrow and the driver, not the application),
# which write each range to an Arrow IPC file that this process maps. They also give the read
# both cores.
#
# SQLite columns have no fixed type: the driver infers each column's Arrow type from the first
# batch of the result, and a column that is NULL throughout it would become int64 and then fail
# on the first string. A typed first row (dropped again) fixes every column's type. A value of
# another type later (a real in an integer column) still fails the read, which is what exact
# money needs.
_SENTINEL = {I64: "0", I32: "0", BOOL: "0", STR: "''", TS: "''", DATE: "''"}
_SENTINEL_ID = -1
_TYPES = {str(t): t for t in (I64, STR, BOOL, TS, DATE, I32)}
WORKER_MIN_IDS = 50_000  # below this many ids, the row path is quicker than starting workers


class SqliteSource(RowSource):
    """The row path on the snapshot connection, with large reads handed to ADBC worker processes.

    Append-only ranges (``split``) are read in ``CHUNK_IDS`` ranges by the workers: a row with an
    id at or below the snapshot's maximum never changes, and SQLite commits ids in order (one
    writer), so a worker's later snapshot holds the same rows. A large settling table is read by
    one worker in one snapshot of its own, rows and still-pending ids together.
    """

    def __init__(self, conn: Connection, path: str, workers: int = READ_WORKERS) -> None:
        super().__init__(conn)
        self.path = path
        self.workers = workers
        self._procs: list = []
        self._scratch = None
        self._jobs = 0

    def close(self) -> None:
        for proc in self._procs:
            proc.stdin.close()
        for proc in self._procs:
            proc.wait(timeout=60)
            proc.stdout.close()
        self._procs = []
        if self._scratch is not None:
            self._scratch.cleanup()

    def _start(self) -> None:
        import subprocess
        import sys
        import tempfile

        # Scratch files in memory where there is a tmpfs: they are written once and mapped once.
        shm = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
        self._scratch = tempfile.TemporaryDirectory(prefix="extract-", dir=shm)
        # The workers import this package from where this process found it (installed or not).
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
        for _ in range(self.workers):
            self._procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "copytrade.analytics.ledger_read", self.path],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                    bufsize=1,
                    env={**os.environ, "PYTHONPATH": path},
                )
            )

    def _submit(self, job: dict):
        """Send a job to the next worker (round robin); return a function that waits for it.

        Each worker answers its jobs in order, so answers taken in submission order match.
        """
        if not self._procs:
            self._start()
        proc = self._procs[self._jobs % len(self._procs)]
        out = os.path.join(self._scratch.name, f"{self._jobs}.arrow")
        self._jobs += 1
        import json

        proc.stdin.write(json.dumps({**job, "out": out}) + "\n")
        proc.stdin.flush()

        def answer() -> dict:
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError(f"extract worker for {self.path} exited (code {proc.poll()})")
            reply = json.loads(line)
            if "error" in reply:
                raise RuntimeError(f"extract worker: {reply['error']}")
            return {**reply, "out": out}

        return answer

    def read(self, table, columns, where, batch, *, split=False) -> Iterator[pa.Table]:
        low, high = _id_bounds(self, table, where) if split else (0, 0)
        if not split or high - low < WORKER_MIN_IDS:
            yield from super().read(table, columns, where, batch)
            return
        types = [[name, str(typ)] for name, typ in columns.items()]
        # A window of ranges in flight, taken in order: the parts come out in id order and at
        # most `workers + 1` ranges wait in scratch files.
        pending: deque = deque()
        for a in range(low, high, CHUNK_IDS):
            b = min(a + CHUNK_IDS, high)
            sql = _select(table, columns, f"({where}) and id > {a} and id <= {b}")
            pending.append(
                self._submit({"op": "read", "sql": sql, "columns": types, "batch": batch})
            )
            if len(pending) > self.workers:
                yield from _mapped(pending.popleft()()["out"])
        while pending:
            yield from _mapped(pending.popleft()()["out"])

    def settling(self, table, columns, final, low, high, pending, batch):
        if high - low < WORKER_MIN_IDS and len(pending) < WORKER_MIN_IDS:
            return super().settling(table, columns, final, low, high, pending, batch)
        job = {
            "op": "settling",
            "table": table,
            "columns": [[name, str(typ)] for name, typ in columns.items()],
            "final": final,
            "low": low,
            "high": high,
            "pending": list(pending),
            "batch": batch,
        }
        reply = self._submit(job)()
        return _mapped(reply["out"]), set(reply["pending"])


def _id_bounds(source: Source, table: str, where: str) -> tuple[int, int]:
    low = source.scalar(f"select coalesce(min(id), 1) - 1 from {table} where {where}")
    high = source.scalar(f"select coalesce(max(id), 0) from {table} where {where}")
    return low, high


def _mapped(path: str) -> Iterator[pa.Table]:
    """Yield the table of a worker's IPC file (memory-mapped, no copy) and remove the file."""
    with pa.memory_map(path) as source:
        table = pa.ipc.open_file(source).read_all()
    os.unlink(path)  # the mapping stays valid until the table is released
    if table.num_rows:
        yield table


class _AdbcSqlite:
    """In a worker: one ADBC connection, one read transaction (autocommit off)."""

    def __init__(self, path: str) -> None:
        import adbc_driver_sqlite.dbapi

        self.conn = adbc_driver_sqlite.dbapi.connect(path)

    def close(self) -> None:
        self.conn.rollback()
        self.conn.close()

    def scalar(self, sql: str) -> int:
        return int(next(iter(self.ids_rows(sql)))[0])

    def ids_rows(self, sql: str) -> list[tuple]:
        with self.conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchall()

    def ids(self, sql: str) -> set[int]:
        return {int(r[0]) for r in self.ids_rows(sql)}

    def read(self, table, columns, where, batch, *, split=False) -> Iterator[pa.Table]:
        yield from self.read_sql(_select(table, columns, where), columns, batch)

    def read_sql(self, sql: str, columns: Columns, batch: int) -> Iterator[pa.Table]:
        assert next(iter(columns)) == "id", "the typed first row is found by its id"
        first = ", ".join(
            f"{_SENTINEL_ID if name == 'id' else _SENTINEL[typ]} as {name}"
            for name, typ in columns.items()
        )
        with self.conn.cursor() as cur:
            cur.adbc_statement.set_options(**{"adbc.sqlite.query.batch_rows": "131072"})
            cur.execute(f"select {first} union all select * from ({sql}) order by 1")
            seen_first = False
            for record_batch in cur.fetch_record_batch():
                if not seen_first and record_batch.num_rows:
                    if record_batch.column(0)[0].as_py() != _SENTINEL_ID:
                        raise RuntimeError(f"the typed first row is missing: {sql}")
                    record_batch = record_batch.slice(1)
                    seen_first = True
                if record_batch.num_rows:
                    yield _from_sqlite(record_batch, columns, batch)


def _write_ipc(tables: Iterator[pa.Table], columns: Columns, out: str) -> None:
    with pa.OSFile(out, "wb") as sink, pa.ipc.new_file(sink, schema(columns)) as writer:
        for table in tables:
            writer.write_table(table)


def _serve(path: str) -> None:
    """A worker: answer JSON jobs from stdin, one line each, until stdin closes."""
    import json
    import sys

    for line in sys.stdin:
        job = json.loads(line)
        columns = {name: _TYPES[typ] for name, typ in job["columns"]}
        reader = _AdbcSqlite(path)  # one read transaction per job
        try:
            if job["op"] == "read":
                _write_ipc(reader.read_sql(job["sql"], columns, job["batch"]), columns, job["out"])
                reply: dict = {"ok": True}
            else:
                tables, still = settling_rows(
                    reader,
                    job["table"],
                    columns,
                    job["final"],
                    job["low"],
                    job["high"],
                    job["pending"],
                    job["batch"],
                )
                _write_ipc(tables, columns, job["out"])
                reply = {"ok": True, "pending": sorted(still)}
        except Exception as exc:  # reported to the extract, which raises it
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        finally:
            reader.close()
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


def _from_sqlite(record_batch: pa.RecordBatch, columns: Columns, batch: int) -> pa.Table:
    arrays = []
    for (name, typ), column in zip(columns.items(), record_batch.columns, strict=True):
        if typ == TS:
            column = column.cast(STR).cast(TS)
        elif typ == DATE:
            column = column.cast(STR).cast(TS).cast(DATE)
        elif typ == BOOL:
            column = pc.not_equal(column, 0)
        elif column.type != typ:
            raise TypeError(f"{name}: SQLite returned {column.type}, the extract expects {typ}")
        arrays.append(column)
    return _with_batch(arrays, columns, batch, record_batch.num_rows)


# -- PostgreSQL through COPY -------------------------------------------------------------------


class PostgresSource:
    """Control queries and COPY … TO STDOUT on the extract's snapshot connection."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        # Timestamps leave as `at time zone 'UTC'` text; ISO output whatever the server default.
        conn.exec_driver_sql("set local datestyle to 'ISO, YMD'")

    def scalar(self, sql: str) -> int:
        return int(self.conn.exec_driver_sql(sql).scalar_one())

    def ids(self, sql: str) -> set[int]:
        return {int(r[0]) for r in self.conn.exec_driver_sql(sql)}

    def settling(self, table, columns, final, low, high, pending, batch):
        return settling_rows(self, table, columns, final, low, high, pending, batch)

    def read(self, table, columns, where, batch, *, split=False) -> Iterator[pa.Table]:
        exprs = {name: f"({name} at time zone 'UTC')" for name, typ in columns.items() if typ == TS}
        # No `order by id`: over a whole table PostgreSQL plans a sort of every row (to disk at
        # the default work_mem), which costs more than the read; nothing downstream needs the
        # parts in id order (SQLite reads in id order at no cost, so it keeps it).
        sql = _select(table, columns, where, exprs, ordered=False)
        cursor = self.conn.connection.driver_connection.cursor()
        try:
            with cursor.copy(f"copy ({sql}) to stdout (format csv)") as copy:
                stream = _CopyStream(copy)
                if stream.at_end():  # no rows: Arrow refuses an empty CSV file
                    return
                reader = pacsv.open_csv(
                    stream,
                    read_options=pacsv.ReadOptions(column_names=list(columns), block_size=16 << 20),
                    parse_options=pacsv.ParseOptions(newlines_in_values=True),
                    convert_options=pacsv.ConvertOptions(
                        column_types=dict(columns),
                        null_values=[""],
                        strings_can_be_null=True,
                        quoted_strings_can_be_null=False,  # "" is an empty string, not NULL
                        true_values=["t"],
                        false_values=["f"],
                    ),
                )
                held: list[pa.RecordBatch] = []
                rows = 0
                for record_batch in reader:
                    held.append(record_batch)
                    rows += record_batch.num_rows
                    if rows >= CHUNK_ROWS:
                        yield _from_batches(held, columns, batch)
                        held, rows = [], 0
                if rows:
                    yield _from_batches(held, columns, batch)
        finally:
            cursor.close()


def _from_batches(held: list[pa.RecordBatch], columns: Columns, batch: int) -> pa.Table:
    table = pa.Table.from_batches(held)
    arrays = [table.column(name).combine_chunks() for name in columns]
    return _with_batch(arrays, columns, batch, table.num_rows)


class _CopyStream(io.RawIOBase):
    """A readable file over psycopg's COPY blocks, for Arrow's streaming CSV reader."""

    def __init__(self, copy) -> None:
        self._blocks = iter(copy)
        self._left = memoryview(b"")

    def readable(self) -> bool:
        return True

    def at_end(self) -> bool:
        while not self._left:
            block = next(self._blocks, None)
            if block is None:
                return True
            self._left = memoryview(block)
        return False

    def readinto(self, buffer) -> int:
        # Fill the whole buffer: Arrow asks for blocks of megabytes, and the server sends COPY
        # data a row per message; a short read per message would cost a block's allocation each.
        view = memoryview(buffer).cast("B")
        filled = 0
        while filled < len(view) and not self.at_end():
            n = min(len(view) - filled, len(self._left))
            view[filled : filled + n] = self._left[:n]
            self._left = self._left[n:]
            filled += n
        return filled


# -- choosing the source -----------------------------------------------------------------------


@contextmanager
def open_source(engine: Engine, *, fast: bool = True) -> Iterator[Source]:
    """Yield a source reading one snapshot of the ledger behind ``engine``.

    ``fast=False`` reads through SQLAlchemy rows only (the reference path).
    """
    postgres = engine.dialect.name == "postgresql"
    path = engine.url.database if engine.dialect.name == "sqlite" else None
    options = {"isolation_level": "REPEATABLE READ"} if postgres else {}
    with engine.connect().execution_options(**options) as conn, conn.begin():
        if fast and postgres:
            yield PostgresSource(conn)
        elif fast and path and path != ":memory:":
            source = SqliteSource(conn, path)
            try:
                yield source
            finally:
                source.close()
        else:
            yield RowSource(conn)


if __name__ == "__main__":
    import sys

    _serve(sys.argv[1])
