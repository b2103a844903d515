"""The ledger's bulk statements: a handful per ``post_many`` call, on SQLite and PostgreSQL.

``Ledger.post_many`` decides what to write (rules, idempotency, the chain); this module writes it.
Transfer ids are allocated up front — SQLite: after ``MAX(id)`` under the write lock that
``BEGIN IMMEDIATE`` took; PostgreSQL: from the id sequence — so transfers and postings are plain
bulk inserts (``executemany`` / ``COPY``) without ``RETURNING``, which SQLAlchemy runs one row at a
time on SQLite (measured ≈ 155 µs per transfer). Values are given as stored: integer 1e-8 units,
timestamps through ``Raw.stamp``, JSON text.

Everything a call locks belongs to its stream: the stream's head row, the accounts the stream's
owner posts to, and the stream's stripe of each shared account (stream 0's stripe is the account
row itself). An anchor is appended under the root chain's head row (``ROOT_STREAM`` in
``ledger_chain_heads``), which a poster only tries to lock (``FOR UPDATE SKIP LOCKED``): it never
waits for another writer's anchor.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy.orm import Session

from copytrade.ledger.chain import (
    ROOT_STREAM,
    anchor_heads_text,
    chain_stamp,
    hash_from_stamp,
    stream_genesis,
)
from copytrade.ledger.rawsql import Raw
from models.ledger import GENESIS_HASH

TRANSFER_COLUMNS = (
    "id",
    "stream",
    "seq",
    "idempotency_key",
    "code",
    "memo",
    "refs",
    "created_at",
    "digest",
    "prev_hash",
    "hash",
)
POSTING_COLUMNS = ("transfer_id", "account_id", "asset", "amount")


class LedgerStore:
    """Bulk reads and writes of the ledger tables inside the session's transaction."""

    def __init__(self, session: Session) -> None:
        self.raw = Raw(session)
        self.session = session

    def _cursor_rows(self, sql: str, params: Sequence = ()) -> list[tuple]:
        return self.raw.rows(sql, params)

    def lock_head(self, stream: int) -> tuple[int, str]:
        """Lock ``stream``'s head (PostgreSQL; SQLite's write lock is already held) and read it.

        A stream's first writer creates its head row at the stream's genesis.
        """
        lock = " FOR UPDATE" if self.raw.postgres else ""
        sql = f"SELECT last_seq, last_hash FROM ledger_chain_heads WHERE stream = ?{lock}"
        rows = self._cursor_rows(sql, (stream,))
        if not rows:
            self._cursor_rows(
                "INSERT INTO ledger_chain_heads (stream, last_seq, last_hash) VALUES (?, 0, ?) "
                "ON CONFLICT (stream) DO NOTHING RETURNING stream",
                (stream, stream_genesis(stream)),
            )
            rows = self._cursor_rows(sql, (stream,))
        return rows[0][0], rows[0][1]

    def existing(
        self, keys: Iterable[str], ids: int = 0
    ) -> tuple[dict[str, tuple[int, str]], list[int]]:
        """Return ``key → (transfer id, digest)`` of the keys already posted, and ``ids`` new
        transfer ids (the caller holds its stream's head, so within a stream ids grow with seq).

        On PostgreSQL both come in one round trip; ids not used are a harmless gap.
        """
        wanted = list(dict.fromkeys(keys))
        if not self.raw.postgres:
            rows = self.raw.select_matching(
                "SELECT idempotency_key, id, digest FROM ledger_transfers "
                "WHERE idempotency_key IN ({in_})",
                "idempotency_key",
                wanted,
                "text",
            )
            ((last,),) = self._cursor_rows("SELECT COALESCE(MAX(id), 0) FROM ledger_transfers")
            return {k: (t, d) for k, t, d in rows}, list(range(last + 1, last + 1 + ids))
        rows = self.raw.rows(
            "SELECT t.idempotency_key, t.id, t.digest FROM ledger_transfers t "
            "JOIN unnest(?::text[]) AS wanted(v) ON t.idempotency_key = wanted.v "
            "UNION ALL SELECT NULL, nextval(pg_get_serial_sequence('ledger_transfers', 'id')), "
            "NULL FROM generate_series(1, ?)",
            (wanted, ids),
        )
        found = {k: (t, d) for k, t, d in rows if k is not None}
        return found, sorted(t for k, t, _ in rows if k is None)

    def account_ids(
        self, wanted: set[tuple[str, str]], policies: dict[str, bool], now: datetime
    ) -> dict[tuple[str, str], int]:
        """Return the ids of ``wanted`` (address, asset) accounts, opening the missing ones."""
        ids = self._lookup(wanted)
        missing = wanted - ids.keys()
        if missing:
            stamp = self.raw.stamp(now)
            # ON CONFLICT: two streams may open the same shared account at the same moment
            self.raw.insert(
                "ledger_accounts",
                ("address", "asset", "allow_negative", "balance", "created_at"),
                [(a, s, policies[a], 0, stamp) for a, s in sorted(missing)],
                suffix=" ON CONFLICT (address, asset) DO NOTHING",
            )
            ids.update(self._lookup(missing))
        return ids

    def _lookup(self, wanted: set[tuple[str, str]]) -> dict[tuple[str, str], int]:
        rows = self.raw.select_matching(
            "SELECT address, asset, id FROM ledger_accounts WHERE address IN ({in_})",
            "address",
            sorted({a for a, _ in wanted}),
            "text",
        )
        return {(a, s): i for a, s, i in rows if (a, s) in wanted}

    def balances(self, account_ids: Iterable[int]) -> dict[int, int]:
        """Lock and return the stored balances (integer units) of ``account_ids``' rows.

        Locked (PostgreSQL) because another stream may post to the same guarded account: the
        balance checked must be the one updated. These rows are updated later in the
        transaction anyway, so the lock adds no waiting.
        """
        lock = " ORDER BY id FOR UPDATE OF ledger_accounts" if self.raw.postgres else ""
        return dict(
            self.raw.select_matching(
                "SELECT id, balance FROM ledger_accounts WHERE id IN ({in_})" + lock,
                "id",
                sorted(account_ids),
                "bigint",
            )
        )

    def stripes(self, account_ids: Iterable[int], stream: int) -> dict[int, int]:
        """Return ``stream``'s part (integer units) of the shared accounts ``account_ids``."""
        wanted = sorted(account_ids)
        rows = self.raw.select_matching(
            "SELECT account_id, balance FROM ledger_balance_stripes "
            f"WHERE account_id IN ({{in_}}) AND stream = {int(stream)}",
            "account_id",
            wanted,
            "bigint",
        )
        return {acc: 0 for acc in wanted} | dict(rows)

    def write(
        self,
        stream: int,
        transfers: Sequence[tuple],
        postings: Sequence[tuple],
        deltas: dict[int, int],
        striped: dict[int, int],
        head: tuple[int, str],
    ) -> None:
        """Insert transfers (``TRANSFER_COLUMNS``) and postings, move balances and the head.

        ``deltas`` move account rows; ``striped`` moves ``stream``'s stripes of shared accounts.
        """
        raw = self.raw
        changed = sorted((acc, d) for acc, d in deltas.items() if d)
        stripes = sorted((acc, d) for acc, d in striped.items() if d)
        head_row = (head[0], head[1], stream)
        raw.insert("ledger_transfers", TRANSFER_COLUMNS, transfers, casts={"refs": "json"})
        raw.insert("ledger_postings", POSTING_COLUMNS, postings)
        if raw.postgres:
            # one round trip: the balance rows, the stream's stripes and its head
            raw.rows(
                "WITH a AS (UPDATE ledger_accounts AS a SET balance = a.balance + d.delta "
                "FROM unnest(?::bigint[], ?::bigint[]) AS d(id, delta) WHERE a.id = d.id), "
                "b AS (INSERT INTO ledger_balance_stripes AS b (account_id, stream, balance) "
                "SELECT id, ?, delta FROM unnest(?::bigint[], ?::bigint[]) AS d(id, delta) "
                "ON CONFLICT (account_id, stream) DO UPDATE "
                "SET balance = b.balance + excluded.balance) "
                "UPDATE ledger_chain_heads SET last_seq = ?, last_hash = ? WHERE stream = ?",
                (
                    [acc for acc, _ in changed],
                    [d for _, d in changed],
                    stream,
                    [acc for acc, _ in stripes],
                    [d for _, d in stripes],
                    *head_row,
                ),
            )
            return
        raw.execute_many(
            "UPDATE ledger_accounts SET balance = balance + ? WHERE id = ?",
            [(d, acc) for acc, d in changed],
        )
        raw.execute_many(
            "INSERT INTO ledger_balance_stripes (account_id, stream, balance) VALUES (?, ?, ?) "
            "ON CONFLICT (account_id, stream) DO UPDATE SET balance = balance + excluded.balance",
            [(acc, stream, d) for acc, d in stripes],
        )
        raw.execute_many(
            "UPDATE ledger_chain_heads SET last_seq = ?, last_hash = ? WHERE stream = ?",
            [head_row],
        )

    def anchor(self, now: datetime, *, wait: bool) -> tuple[int, str] | None:
        """Append an anchor of every stream's head (as this transaction sees them) to the root chain.

        Return its seq and hash; ``None`` when ``wait`` is false and another writer is anchoring.
        """
        lock = ""
        if self.raw.postgres:
            lock = " FOR UPDATE" if wait else " FOR UPDATE SKIP LOCKED"
        root = self._cursor_rows(
            f"SELECT last_seq, last_hash FROM ledger_chain_heads WHERE stream = ?{lock}",
            (ROOT_STREAM,),
        )
        if not root:
            if not wait:
                return None  # another writer holds the root head: it is anchoring
            self._cursor_rows(
                "INSERT INTO ledger_chain_heads (stream, last_seq, last_hash) VALUES (?, 0, ?) "
                "ON CONFLICT (stream) DO NOTHING RETURNING stream",
                (ROOT_STREAM, GENESIS_HASH),
            )
            return self.anchor(now, wait=wait)
        heads = {
            stream: (seq, digest)
            for stream, seq, digest in self._cursor_rows(
                "SELECT stream, last_seq, last_hash FROM ledger_chain_heads "
                "WHERE stream >= 0 AND last_seq > 0"
            )
        }
        seq, prev = root[0][0] + 1, root[0][1]
        text = anchor_heads_text(heads)
        digest = hash_from_stamp(prev, seq, chain_stamp(now), text)
        self.raw.insert(
            "ledger_anchors",
            ("seq", "created_at", "heads", "prev_hash", "hash"),
            [(seq, self.raw.stamp(now), text, prev, digest)],
        )
        self._cursor_rows(
            "UPDATE ledger_chain_heads SET last_seq = ?, last_hash = ? WHERE stream = ?",
            (seq, digest, ROOT_STREAM),
        )
        return seq, digest
