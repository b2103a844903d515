"""Shards of the copy engine: which process owns which lead portfolio, and the lock that says so.

A lead portfolio belongs to shard ``blake2b(portfolio id) mod N``, and every copy of it comes
along (one writer per follower account: a follower's cash is only debited by its leader's shard).
The hash is stable across processes, hosts and Python versions (unlike ``hash()``), so a portfolio
keeps its shard for as long as N does not change; changing N is resharding (docs/operations.md).

On PostgreSQL a shard holds two session-level advisory locks for as long as it runs (keyed by the
ledger's schema, since locks are per database): an exclusive one on its index, so a second
process for the same shard is refused at once, and a shared one on its layout N, so that
processes started with another N (whose shards would overlap these) are refused too; a starting
shard reads the others' layouts from ``pg_locks``. The locks go with the connection: a process killed with ``kill -9`` frees its shard
as soon as PostgreSQL notices the connection is gone. On SQLite there is one writer per ledger
file anyway: one engine process at a time, held by an ``flock`` on a file next to the database.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
from dataclasses import dataclass
from hashlib import blake2b
from pathlib import Path

from sqlalchemy import create_engine
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.pool import NullPool

# Large enough for any fleet.
MAX_SHARDS = 64
SHARD_RULE = f"I/N with 0 ≤ I < N ≤ {MAX_SHARDS}, e.g. 0/2"
_FORM = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


def lock_space(schema: str, what: str) -> int:
    """The first int4 of ``pg_try_advisory_lock(int4, int4)`` for ``what`` (shard | layout) of the
    ledger in ``schema``: advisory locks are per database, and one database may hold several
    ledgers (one per schema), each with its own shards."""
    digest = blake2b(f"copytrade engine {what} {schema}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big") & 0x7FFFFFFF


def shard_of(portfolio_id: int, count: int) -> int:
    """Return the shard of ``portfolio_id`` among ``count`` shards (stable everywhere)."""
    digest = blake2b(str(int(portfolio_id)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count


@dataclass(frozen=True, slots=True)
class Shard:
    """Shard ``index`` of ``count``; ``Shard(0, 1)`` is the whole platform (no sharding)."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if not (1 <= self.count <= MAX_SHARDS and 0 <= self.index < self.count):
            raise ValueError(f"--shard {self.index}/{self.count}: a shard is {SHARD_RULE}")

    @classmethod
    def parse(cls, value: str) -> Shard:
        """Parse ``I/N``; a ValueError names the option, the value and the rule."""
        found = _FORM.match(value or "")
        if found is None:
            raise ValueError(f"--shard {value!r}: a shard is {SHARD_RULE}")
        return cls(int(found[1]), int(found[2]))

    def owns(self, portfolio_id: int) -> bool:
        return self.count == 1 or shard_of(portfolio_id, self.count) == self.index

    @property
    def stream(self) -> int:
        """The ledger stream this shard posts to: its index (``Ledger.post_many``'s ``stream``)."""
        return self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


class ShardBusy(RuntimeError):
    """Another process holds this shard (or runs another layout): the CLI exits 3 with this line."""


class ShardLock:
    """Hold ``shard`` for this process: advisory locks on PostgreSQL, a lock file on SQLite."""

    def __init__(self, database_url: str, shard: Shard) -> None:
        self.url = make_url(database_url)
        self.shard = shard
        self._conn: Connection | None = None
        self._file: int | None = None

    def acquire(self) -> ShardLock:
        """Take the shard or raise ``ShardBusy``; an unreachable database raises as it is."""
        backend = self.url.get_backend_name()
        if backend == "postgresql":
            self._acquire_pg()
        elif backend == "sqlite":
            self._acquire_sqlite()
        return self

    def _acquire_pg(self) -> None:
        # Its own connection, outside every pool, open for the life of the process: the locks
        # are the connection's, and a pooled connection could be recycled under them.
        engine = create_engine(self.url, poolclass=NullPool)
        conn = engine.connect()
        conn.execution_options(isolation_level="AUTOCOMMIT")
        self._conn = conn
        one = conn.exec_driver_sql
        try:
            schema = one("select current_schema()").scalar()
            shards, layouts = lock_space(schema, "shard"), lock_space(schema, "layout")
            one("select pg_advisory_lock_shared(%s::int, %s::int)", (layouts, self.shard.count))
            # Read, never probe: an exclusive try on another layout would make two shards
            # starting together see each other's probe as a running engine. Each takes its own
            # layout before it reads, so of two starters with different N one sees the other.
            others = _held(conn, schema).layouts - {self.shard.count}
            if others:
                raise ShardBusy(
                    f"copy engine shard {self.shard}: engines with {min(others)} shards are "
                    "running on this ledger; stop every shard before resharding "
                    "(docs/operations.md)"
                )
            got = one(
                "select pg_try_advisory_lock(%s::int, %s::int)", (shards, self.shard.index)
            ).scalar()
            if not got:
                holder = _held(conn, schema).shards.get(self.shard.index)
                raise ShardBusy(
                    f"copy engine shard {self.shard} is already running (PostgreSQL advisory "
                    f"lock held by backend pid {holder})"
                )
        except BaseException:
            self.release()
            raise

    def _acquire_sqlite(self) -> None:
        if self.shard.count > 1:
            raise ValueError(
                f"--shard {self.shard}: a SQLite ledger has one writer, so one engine; "
                "shards need a PostgreSQL ledger (COPYTRADE_DATABASE_URL)"
            )
        path = _sqlite_lock_file(self.url)
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ShardBusy(
                f"copy engine: another engine process holds the SQLite ledger {self.url.database} "
                f"(lock file {path}); SQLite has one writer, shards need PostgreSQL"
            ) from None
        self._file = fd

    def release(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()  # closing the session frees its advisory locks
                self._conn.engine.dispose()
            self._conn = None
        if self._file is not None:
            os.close(self._file)  # closing the descriptor frees the flock
            self._file = None

    def __enter__(self) -> ShardLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


@dataclass(frozen=True, slots=True)
class Fleet:
    """The engine shards running on a ledger now (read from PostgreSQL's lock table, or the
    SQLite lock file): what the one-off ``engine reconcile`` must leave to them."""

    count: int | None = None  # the running layout's N; None when no engine runs
    running: frozenset[int] = frozenset()

    def free(self) -> list[Shard]:
        """The shards of the running layout that no process holds (none when nothing runs)."""
        if self.count is None:
            return []
        return [Shard(i, self.count) for i in range(self.count) if i not in self.running]

    def __str__(self) -> str:
        return ", ".join(str(Shard(i, self.count or 1)) for i in sorted(self.running)) or "none"


def running_engines(database_url: str) -> Fleet:
    """Return which engine shards hold their lock on this ledger now, without taking any lock."""
    url = make_url(database_url)
    backend = url.get_backend_name()
    if backend == "sqlite":
        return _running_sqlite(url)
    if backend != "postgresql":
        return Fleet()
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            held = _held(conn, conn.exec_driver_sql("select current_schema()").scalar())
    finally:
        engine.dispose()
    if not held.shards:
        return Fleet()
    return Fleet(max(held.layouts) if held.layouts else None, frozenset(held.shards))


@dataclass(frozen=True, slots=True)
class _Held:
    layouts: frozenset[int]  # the N of every layout held (shared) by a running engine
    shards: dict[int, int]  # shard index → backend pid of the process holding it


def _held(conn: Connection, schema: str) -> _Held:
    """The engine locks granted on the ledger in ``schema`` now, read from ``pg_locks``."""
    layout, shard = lock_space(schema, "layout"), lock_space(schema, "shard")
    rows = conn.exec_driver_sql(
        "select classid::bigint, objid::bigint, pid from pg_locks where locktype = 'advisory' "
        "and objsubid = 2 and granted and classid::bigint in (%s, %s)",
        (layout, shard),
    ).all()
    return _Held(
        frozenset(n for space, n, _ in rows if space == layout),
        {i: pid for space, i, pid in rows if space == shard},
    )


def _sqlite_lock_file(url) -> Path | None:
    """The lock file of a SQLite ledger's one engine (none for an in-memory database)."""
    database = url.database
    return Path(f"{database}.engine.lock") if database and database != ":memory:" else None


def _running_sqlite(url) -> Fleet:
    path = _sqlite_lock_file(url)
    if path is None or not path.exists():
        return Fleet()
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return Fleet(1, frozenset({0}))
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return Fleet()
    finally:
        os.close(fd)
