"""The ledger service: post transfers exactly once, keep balances, chain every transfer (R-LED-1/2, R-X-4).

All writes of one call happen inside the caller's transaction, after the chain head row is locked,
so concurrent writers serialise and the chain has no forks. Bulk posting (``post_many``) costs a
handful of statements whatever the number of transfers.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.orm import Session

from copytrade import clock
from copytrade.domain.money import from_units, to_units
from copytrade.ledger.accounts import account_policy
from copytrade.ledger.errors import IdempotencyConflict, NegativeBalance, UnbalancedTransfer
from models.ledger import (
    GENESIS_HASH,
    LedgerAccount,
    LedgerChainHead,
    LedgerPosting,
    LedgerTransfer,
)

_CHUNK = 900  # stays under SQLite's bound-parameter limit in IN (...) lists


@dataclass(frozen=True, slots=True)
class Leg:
    """One side of a transfer: ``amount`` (signed, exact) of ``asset`` at ``address``."""

    address: str
    asset: str
    amount: Decimal


@dataclass(frozen=True, slots=True)
class TransferSpec:
    """A transfer to post; ``key`` is its idempotency key (posting it again is a no-op)."""

    key: str
    code: str
    legs: tuple[Leg, ...]
    memo: str = ""
    refs: dict | None = None
    at: datetime | None = None


@dataclass(frozen=True, slots=True)
class PostResult:
    transfer_id: int
    created: bool  # False: the key had been posted before, nothing changed


@dataclass(frozen=True, slots=True)
class Balance:
    address: str
    asset: str
    amount: Decimal


@dataclass(slots=True)
class ChainReport:
    """Outcome of recomputing the chain: ``ok`` or the first transfer whose hash does not match."""

    checked: int = 0
    first_broken_seq: int | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.first_broken_seq is None


def transfer_digest(key: str, code: str, postings: Iterable[tuple[str, str, int]]) -> str:
    """Return the sha256 of a transfer's content (key, code, sorted postings): what idempotency compares."""
    body = "\n".join(f"{a}|{s}|{u}" for a, s, u in sorted(postings))
    return hashlib.sha256(f"{key}\n{code}\n{body}".encode()).hexdigest()


def chain_hash(prev_hash: str, seq: int, at: datetime, digest: str) -> str:
    """Return the chained hash of transfer ``seq``: previous hash, position, time and content (R-X-4)."""
    stamp = at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return hashlib.sha256(f"{prev_hash}|{seq}|{stamp}|{digest}".encode()).hexdigest()


@dataclass(slots=True)
class _Prepared:
    spec: TransferSpec
    at: datetime
    units: list[tuple[str, str, int]]
    digest: str


def _prepare(spec: TransferSpec) -> _Prepared:
    if not spec.key or len(spec.key) > 160:
        raise UnbalancedTransfer(
            "key", spec.key, "R-LED-1", "an idempotency key of 1-160 characters is required"
        )
    if len(spec.legs) < 2:
        raise UnbalancedTransfer(
            "legs", len(spec.legs), "R-LED-1", "a transfer needs at least two postings"
        )
    units: list[tuple[str, str, int]] = []
    per_asset: dict[str, int] = defaultdict(int)
    for leg in spec.legs:
        account_policy(leg.address)
        amount = to_units(leg.amount, f"{leg.address} {leg.asset}")
        if amount == 0:
            raise UnbalancedTransfer(
                "amount", leg.amount, "R-LED-1", f"zero posting on {leg.address}"
            )
        units.append((leg.address, leg.asset, amount))
        per_asset[leg.asset] += amount
    unbalanced = {asset: from_units(total) for asset, total in per_asset.items() if total}
    if unbalanced:
        raise UnbalancedTransfer(
            "legs",
            unbalanced,
            "R-LED-1",
            f"postings of transfer {spec.key!r} do not sum to zero per asset",
        )
    at = spec.at or clock.now()
    if at.tzinfo is None:
        raise ValueError(f"transfer {spec.key!r}: naive timestamp {at!r}")
    # Storage keeps microseconds; hash what will be read back.
    at = at.astimezone(UTC)
    return _Prepared(spec, at, units, transfer_digest(spec.key, spec.code, units))


class Ledger:
    """Double-entry ledger bound to one SQLAlchemy session (the caller owns the transaction)."""

    def __init__(self, session: Session) -> None:
        self.session = session

    # -- writing -------------------------------------------------------------------------------

    def post(self, spec: TransferSpec) -> PostResult:
        """Post one transfer (see ``post_many``)."""
        return self.post_many([spec])[0]

    def transfer(self, key: str, code: str, legs: Sequence[Leg], **kwargs) -> PostResult:
        """Post one transfer given as its parts."""
        return self.post(TransferSpec(key=key, code=code, legs=tuple(legs), **kwargs))

    def post_many(self, specs: Sequence[TransferSpec]) -> list[PostResult]:
        """Post transfers in order, each at most once; refuse all of them if any one is invalid.

        A key already posted with the same content is a no-op (``created=False``); with other
        content it is an ``IdempotencyConflict``. Nothing is written when anything is refused.
        """
        prepared = [_prepare(spec) for spec in specs]
        if not prepared:
            return []
        session = self.session
        head = session.execute(
            select(LedgerChainHead).where(LedgerChainHead.id == 1).with_for_update()
        ).scalar_one()

        existing = self._existing(p.spec.key for p in prepared)
        results: dict[str, PostResult] = {}
        in_batch: dict[str, str] = {}  # key -> digest of transfers new in this batch
        fresh: list[_Prepared] = []
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
            return [results[p.spec.key] for p in prepared]

        account_ids = self._account_ids({(a, s) for item in fresh for a, s, _ in item.units})
        self._check_balances(fresh, account_ids)

        seq, prev = head.last_seq, head.last_hash
        transfer_rows = []
        for item in fresh:
            seq += 1
            digest_hash = chain_hash(prev, seq, item.at, item.digest)
            transfer_rows.append(
                {
                    "seq": seq,
                    "idempotency_key": item.spec.key,
                    "code": item.spec.code,
                    "memo": item.spec.memo,
                    "refs": item.spec.refs,
                    "created_at": item.at,
                    "digest": item.digest,
                    "prev_hash": prev,
                    "hash": digest_hash,
                }
            )
            prev = digest_hash
        ids = session.scalars(
            LedgerTransfer.__table__.insert().returning(
                LedgerTransfer.id, sort_by_parameter_order=True
            ),
            transfer_rows,
        ).all()
        posting_rows = []
        deltas: dict[int, int] = defaultdict(int)
        for item, transfer_id in zip(fresh, ids, strict=True):
            results[item.spec.key] = PostResult(transfer_id, True)
            for address, asset, units in item.units:
                account_id = account_ids[(address, asset)]
                posting_rows.append(
                    {
                        "transfer_id": transfer_id,
                        "account_id": account_id,
                        "asset": asset,
                        "amount": from_units(units),
                    }
                )
                deltas[account_id] += units
        session.execute(LedgerPosting.__table__.insert(), posting_rows)
        accounts = LedgerAccount.__table__
        changed = [{"acc_id": acc, "delta": from_units(d)} for acc, d in deltas.items() if d]
        if changed:
            session.execute(
                update(accounts)
                .where(accounts.c.id == bindparam("acc_id"))
                .values(
                    balance=accounts.c.balance + bindparam("delta", type_=accounts.c.balance.type)
                ),
                changed,
                execution_options={"synchronize_session": False},
            )
        session.execute(
            update(LedgerChainHead)
            .where(LedgerChainHead.id == 1)
            .values(last_seq=seq, last_hash=prev),
            execution_options={"synchronize_session": False},
        )
        session.expire_all()
        return [results[p.spec.key] for p in prepared]

    def _existing(self, keys: Iterable[str]) -> dict[str, tuple[int, str]]:
        keys = list(dict.fromkeys(keys))
        found: dict[str, tuple[int, str]] = {}
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start : start + _CHUNK]
            rows = self.session.execute(
                select(
                    LedgerTransfer.idempotency_key, LedgerTransfer.id, LedgerTransfer.digest
                ).where(LedgerTransfer.idempotency_key.in_(chunk))
            )
            found.update({key: (tid, digest) for key, tid, digest in rows})
        return found

    def _account_ids(self, wanted: set[tuple[str, str]]) -> dict[tuple[str, str], int]:
        ids = self._lookup_accounts(wanted)
        missing = wanted - ids.keys()
        if missing:
            self.session.execute(
                LedgerAccount.__table__.insert(),
                [
                    {
                        "address": address,
                        "asset": asset,
                        "allow_negative": account_policy(address).allow_negative,
                        "balance": Decimal(0),
                        "created_at": clock.now(),
                    }
                    for address, asset in sorted(missing)
                ],
            )
            ids.update(self._lookup_accounts(missing))
        return ids

    def _lookup_accounts(self, wanted: set[tuple[str, str]]) -> dict[tuple[str, str], int]:
        ids: dict[tuple[str, str], int] = {}
        addresses = sorted({a for a, _ in wanted})
        for start in range(0, len(addresses), _CHUNK):
            rows = self.session.execute(
                select(LedgerAccount.address, LedgerAccount.asset, LedgerAccount.id).where(
                    LedgerAccount.address.in_(addresses[start : start + _CHUNK])
                )
            )
            ids.update({(a, s): i for a, s, i in rows if (a, s) in wanted})
        return ids

    def _check_balances(
        self, fresh: list[_Prepared], account_ids: dict[tuple[str, str], int]
    ) -> None:
        """Refuse the batch if any transfer, applied in order, takes a guarded account below zero."""
        guarded = {
            acc
            for (address, _), acc in account_ids.items()
            if not account_policy(address).allow_negative
        }
        if not any(
            u < 0 and account_ids[(a, s)] in guarded for item in fresh for a, s, u in item.units
        ):
            return
        current = self._raw_balances(guarded)
        for item in fresh:
            for address, asset, units in item.units:
                acc = account_ids[(address, asset)]
                if acc in guarded:
                    current[acc] = current.get(acc, 0) + units
            for address, asset, units in item.units:
                acc = account_ids[(address, asset)]
                if units < 0 and acc in guarded and current[acc] < 0:
                    raise NegativeBalance(
                        f"{address} {asset}",
                        from_units(current[acc] - units),
                        "R-LED-2",
                        f"transfer {item.spec.key!r} takes {from_units(-units)} {asset} and would leave "
                        f"{from_units(current[acc])}; this account may not go negative",
                    )

    def _raw_balances(self, account_ids: set[int]) -> dict[int, int]:
        ids = sorted(account_ids)
        out: dict[int, int] = {}
        for start in range(0, len(ids), _CHUNK):
            rows = self.session.execute(
                select(LedgerAccount.id, LedgerAccount.balance).where(
                    LedgerAccount.id.in_(ids[start : start + _CHUNK])
                )
            )
            out.update({acc: to_units(balance) for acc, balance in rows})
        return out

    # -- reading -------------------------------------------------------------------------------

    def balance(self, address: str, asset: str) -> Decimal:
        """Return the balance of ``address`` in ``asset`` (zero for an account never used)."""
        value = self.session.scalar(
            select(LedgerAccount.balance).where(
                LedgerAccount.address == address, LedgerAccount.asset == asset
            )
        )
        return value if value is not None else Decimal(0)

    def balances(self, prefix: str | None = None) -> list[Balance]:
        """Return every balance, optionally of addresses starting with ``prefix``, by address."""
        query = select(LedgerAccount.address, LedgerAccount.asset, LedgerAccount.balance).order_by(
            LedgerAccount.address, LedgerAccount.asset
        )
        if prefix:
            query = query.where(LedgerAccount.address.startswith(prefix))
        return [Balance(a, s, b) for a, s, b in self.session.execute(query)]

    def sum_of_postings(self, address: str, asset: str) -> Decimal:
        """Return the sum of the postings of one account, computed in SQL (exact integer units)."""
        total = self.session.execute(
            select(func.sum(LedgerPosting.amount))
            .join(LedgerAccount, LedgerAccount.id == LedgerPosting.account_id)
            .where(LedgerAccount.address == address, LedgerAccount.asset == asset)
        ).scalar_one()
        return total if total is not None else Decimal(0)

    def verify_chain(self, batch: int = 20_000) -> ChainReport:
        """Recompute every transfer's digest and chained hash from the stored postings (R-X-4)."""
        report = ChainReport()
        prev, expected_seq = GENESIS_HASH, 1
        while True:
            transfers = self.session.execute(
                select(
                    LedgerTransfer.id,
                    LedgerTransfer.seq,
                    LedgerTransfer.idempotency_key,
                    LedgerTransfer.code,
                    LedgerTransfer.created_at,
                    LedgerTransfer.digest,
                    LedgerTransfer.prev_hash,
                    LedgerTransfer.hash,
                )
                .where(LedgerTransfer.seq >= expected_seq)
                .order_by(LedgerTransfer.seq)
                .limit(batch)
            ).all()
            if not transfers:
                return report
            ids = [t.id for t in transfers]
            postings: dict[int, list[tuple[str, str, int]]] = defaultdict(list)
            for start in range(0, len(ids), _CHUNK):
                rows = self.session.execute(
                    select(
                        LedgerPosting.transfer_id,
                        LedgerAccount.address,
                        LedgerPosting.asset,
                        LedgerPosting.amount,
                    )
                    .join(LedgerAccount, LedgerAccount.id == LedgerPosting.account_id)
                    .where(LedgerPosting.transfer_id.in_(ids[start : start + _CHUNK]))
                )
                for transfer_id, address, asset, amount in rows:
                    postings[transfer_id].append((address, asset, to_units(amount)))
            for t in transfers:
                report.checked += 1
                digest = transfer_digest(t.idempotency_key, t.code, postings[t.id])
                problem = None
                if t.seq != expected_seq:
                    problem = f"sequence gap: expected {expected_seq}, found {t.seq}"
                elif t.prev_hash != prev:
                    problem = f"seq {t.seq}: prev_hash does not match the previous transfer's hash"
                elif digest != t.digest:
                    problem = f"seq {t.seq}: content (postings, key or code) was edited"
                elif chain_hash(prev, t.seq, t.created_at, digest) != t.hash:
                    problem = f"seq {t.seq}: hash does not match its content or time"
                if problem:
                    report.first_broken_seq = t.seq
                    report.problems.append(problem)
                    return report
                prev, expected_seq = t.hash, t.seq + 1
