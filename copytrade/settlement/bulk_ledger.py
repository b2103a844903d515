"""Bulk posting for settlement: ``Ledger.post_many`` semantics at a few statements per batch.

``Ledger.post_many`` inserts transfers with ``RETURNING`` in parameter order, which SQLAlchemy runs
one row at a time on SQLite (measured ≈ 155 µs per transfer); a weekly cycle posts up to two
transfers per copy. This writer keeps every rule of the ledger service — idempotency keys (a
repeat is a no-op, other content a conflict), balanced postings per asset (R-LED-1), guarded
accounts never negative (R-LED-2), the hash chain under the chain-head lock (R-X-4) — and uses
the service's own digest and chain functions, so its transfers are indistinguishable from the
service's (a test posts the same specs both ways and compares every hash). It inserts transfers
without ``RETURNING`` and reads the new ids back by their sequence numbers.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import BigInteger, Column, MetaData, String, Table, select
from sqlalchemy.orm import Session

from copytrade import clock
from copytrade.domain.money import from_units
from copytrade.ledger import PostResult, TransferSpec
from copytrade.ledger.accounts import account_policy
from copytrade.ledger.errors import IdempotencyConflict, NegativeBalance, UnbalancedTransfer
from copytrade.ledger.service import chain_hash, transfer_digest
from copytrade.settlement.rawsql import Raw, units
from models.ledger import LedgerAccount, LedgerChainHead, LedgerTransfer

# The ledger tables as plain integers: amounts go in and out as stored units, no Decimal trip.
_raw = MetaData()
_accounts = Table(
    "ledger_accounts",
    _raw,
    Column("id", BigInteger, primary_key=True),
    Column("address", String),
    Column("asset", String),
    Column("allow_negative", BigInteger),
    Column("balance", BigInteger),
)
_postings = Table(
    "ledger_postings",
    _raw,
    Column("id", BigInteger, primary_key=True),
    Column("transfer_id", BigInteger),
    Column("account_id", BigInteger),
    Column("asset", String),
    Column("amount", BigInteger),
)
_transfers = LedgerTransfer.__table__
_TRANSFER_COLUMNS = (
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


class _Item:
    __slots__ = ("spec", "at", "units", "digest")

    def __init__(self, spec: TransferSpec, at: datetime, units: list, digest: str) -> None:
        self.spec, self.at, self.units, self.digest = spec, at, units, digest


def _prepare(spec: TransferSpec, policies: dict[str, bool], now: datetime) -> _Item:
    """Validate one transfer exactly as the ledger service does; return its units and digest."""
    if not spec.key or len(spec.key) > 160:
        raise UnbalancedTransfer(
            "key", spec.key, "R-LED-1", "an idempotency key of 1-160 characters is required"
        )
    if len(spec.legs) < 2:
        raise UnbalancedTransfer(
            "legs", len(spec.legs), "R-LED-1", "a transfer needs at least two postings"
        )
    legs = []
    per_asset: dict[str, int] = defaultdict(int)
    for leg in spec.legs:
        if leg.address not in policies:
            policies[leg.address] = account_policy(leg.address).allow_negative
        amount = units(leg.amount, f"{leg.address} {leg.asset}")
        if amount == 0:
            raise UnbalancedTransfer(
                "amount", leg.amount, "R-LED-1", f"zero posting on {leg.address}"
            )
        legs.append((leg.address, leg.asset, amount))
        per_asset[leg.asset] += amount
    unbalanced = {asset: from_units(total) for asset, total in per_asset.items() if total}
    if unbalanced:
        raise UnbalancedTransfer(
            "legs",
            unbalanced,
            "R-LED-1",
            f"postings of transfer {spec.key!r} do not sum to zero per asset",
        )
    at = spec.at or now
    if at.tzinfo is None:
        raise ValueError(f"transfer {spec.key!r}: naive timestamp {at!r}")
    at = at.astimezone(UTC)
    return _Item(spec, at, legs, transfer_digest(spec.key, spec.code, legs))


def post_bulk(session: Session, specs: Sequence[TransferSpec]) -> list[PostResult]:
    """Post ``specs`` in order, each at most once, all or none (see ``Ledger.post_many``)."""
    if not specs:
        return []
    policies: dict[str, bool] = {}
    now = clock.now()
    prepared = [_prepare(spec, policies, now) for spec in specs]
    head = session.execute(
        select(LedgerChainHead.last_seq, LedgerChainHead.last_hash)
        .where(LedgerChainHead.id == 1)
        .with_for_update()
    ).one()

    raw = Raw(session)
    keys = list(dict.fromkeys(item.spec.key for item in prepared))
    existing: dict[str, tuple[int, str]] = {
        key: (tid, digest)
        for key, tid, digest in raw.select_in(
            "SELECT idempotency_key, id, digest FROM ledger_transfers "
            "WHERE idempotency_key IN ({in_})",
            keys,
        )
    }

    results: dict[str, PostResult] = {}
    in_batch: dict[str, str] = {}
    fresh: list[_Item] = []
    for item in prepared:
        key = item.spec.key
        known = existing[key][1] if key in existing else in_batch.get(key)
        if known is not None:
            if known != item.digest:
                raise IdempotencyConflict(
                    "key",
                    key,
                    "R-SET-9",
                    "this idempotency key was already posted with different content",
                )
            if key in existing:
                results[key] = PostResult(existing[key][0], False)
            continue
        in_batch[key] = item.digest
        fresh.append(item)
    if not fresh:
        return [results[item.spec.key] for item in prepared]

    wanted = {(a, s) for item in fresh for a, s, _ in item.units}
    accounts = _account_ids(session, wanted, policies)
    _check_balances(raw, fresh, accounts, policies)

    seq, prev = head.last_seq, head.last_hash
    first_seq = seq + 1
    rows = []
    for item in fresh:
        seq += 1
        digest_hash = chain_hash(prev, seq, item.at, item.digest)
        rows.append(
            (
                seq,
                item.spec.key,
                item.spec.code,
                item.spec.memo,
                raw.json(item.spec.refs),
                raw.stamp(item.at),
                item.digest,
                prev,
                digest_hash,
            )
        )
        prev = digest_hash
    raw.insert("ledger_transfers", _TRANSFER_COLUMNS, rows, casts={"refs": "json"})
    ids = dict(
        session.execute(
            select(_transfers.c.seq, _transfers.c.id).where(
                _transfers.c.seq >= first_seq, _transfers.c.seq <= seq
            )
        ).all()
    )
    postings, deltas = [], defaultdict(int)
    for offset, item in enumerate(fresh):
        transfer_id = ids[first_seq + offset]
        results[item.spec.key] = PostResult(transfer_id, True)
        for address, asset, amount in item.units:
            account_id = accounts[(address, asset)]
            postings.append((transfer_id, account_id, asset, amount))
            deltas[account_id] += amount
    raw.insert("ledger_postings", ("transfer_id", "account_id", "asset", "amount"), postings)
    raw.execute_many(
        "UPDATE ledger_accounts SET balance = balance + ? WHERE id = ?",
        [(d, acc) for acc, d in sorted(deltas.items()) if d],
    )
    raw.execute_many(
        "UPDATE ledger_chain_head SET last_seq = ?, last_hash = ? WHERE id = 1", [(seq, prev)]
    )
    session.expire_all()
    return [results[item.spec.key] for item in prepared]


def _account_ids(
    session: Session, wanted: set[tuple[str, str]], policies: dict[str, bool]
) -> dict[tuple[str, str], int]:
    ids = _lookup(session, wanted)
    missing = wanted - ids.keys()
    if missing:
        now = clock.now()
        session.execute(
            LedgerAccount.__table__.insert(),
            [
                {
                    "address": address,
                    "asset": asset,
                    "allow_negative": policies[address],
                    "balance": 0,
                    "created_at": now,
                }
                for address, asset in sorted(missing)
            ],
        )
        ids.update(_lookup(session, missing))
    return ids


def _lookup(session: Session, wanted: set[tuple[str, str]]) -> dict[tuple[str, str], int]:
    rows = Raw(session).select_in(
        "SELECT address, asset, id FROM ledger_accounts WHERE address IN ({in_})",
        sorted({a for a, _ in wanted}),
    )
    return {(a, s): i for a, s, i in rows if (a, s) in wanted}


def _check_balances(
    raw: Raw,
    fresh: list[_Item],
    accounts: dict[tuple[str, str], int],
    policies: dict[str, bool],
) -> None:
    """Refuse the batch if any transfer, applied in order, takes a guarded account below zero."""
    debited = {
        accounts[(a, s)] for item in fresh for a, s, u in item.units if u < 0 and not policies[a]
    }
    if not debited:
        return
    current: dict[int, int] = dict(
        raw.select_in(
            "SELECT id, balance FROM ledger_accounts WHERE id IN ({in_})", sorted(debited)
        )
    )
    for item in fresh:
        for address, asset, amount in item.units:
            acc = accounts[(address, asset)]
            if acc in debited:
                current[acc] += amount
        for address, asset, amount in item.units:
            acc = accounts[(address, asset)]
            if amount < 0 and acc in debited and current[acc] < 0:
                raise NegativeBalance(
                    f"{address} {asset}",
                    from_units(current[acc] - amount),
                    "R-LED-2",
                    f"transfer {item.spec.key!r} takes {from_units(-amount)} {asset} and would leave "
                    f"{from_units(current[acc])}; this account may not go negative",
                )
