"""The ledger service: post transfers exactly once, keep balances, chain every transfer (R-LED-1/2, R-X-4).

All writes of one call happen inside the caller's transaction, after its stream's head row is
locked: writers on one stream serialise and its chain has no forks, writers on different streams
do not wait for each other (``models.ledger``). ``post_many`` is the one way money is
posted — by the copy engine per fill and by settlement tens of thousands of transfers at a time —
and costs a handful of bulk statements whatever the number of transfers (``store``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import BigInteger, func, select, type_coerce
from sqlalchemy.orm import Session

from copytrade import clock
from copytrade.domain.money import from_units
from copytrade.gcpause import paused_gc
from copytrade.ledger.accounts import AccountPolicy, account_policy
from copytrade.ledger.chain import (
    ANCHOR_EVERY,
    DEFAULT_STREAM,
    ChainReport,
    chain_stamp,
    hash_from_stamp,
    recompute_chain,
    transfer_digest,
)
from copytrade.ledger.errors import IdempotencyConflict, NegativeBalance, UnbalancedTransfer
from copytrade.ledger.rawsql import units
from copytrade.ledger.store import LedgerStore
from models.ledger import LedgerAccount, LedgerBalanceStripe, LedgerPosting


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
class _Prepared:
    spec: TransferSpec
    at: datetime
    units: list[tuple[str, str, int]]
    digest: str


def _prepare(spec: TransferSpec, now: datetime, policies: dict[str, AccountPolicy]) -> _Prepared:
    """Validate one transfer (R-LED-1); return its postings in units and its digest.

    ``policies`` caches each address's policy (parsing the address validates it).
    """
    if not spec.key or len(spec.key) > 160:
        raise UnbalancedTransfer(
            "key", spec.key, "R-LED-1", "an idempotency key of 1-160 characters is required"
        )
    if len(spec.legs) < 2:
        raise UnbalancedTransfer(
            "legs", len(spec.legs), "R-LED-1", "a transfer needs at least two postings"
        )
    legs: list[tuple[str, str, int]] = []
    per_asset: dict[str, int] = defaultdict(int)
    for leg in spec.legs:
        if leg.address not in policies:
            policies[leg.address] = account_policy(leg.address)
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
    # Storage keeps microseconds; hash what will be read back.
    at = at.astimezone(UTC)
    return _Prepared(spec, at, legs, transfer_digest(spec.key, spec.code, legs))


def _check_balances(
    fresh: list[_Prepared],
    accounts: dict[tuple[str, str], int],
    policies: dict[str, AccountPolicy],
    store: LedgerStore,
    stream: int,
) -> None:
    """Refuse the batch if any transfer, applied in order, takes a guarded account below zero.

    A shared (striped) guarded account is checked on ``stream``'s own part of it.
    """
    debited = {
        accounts[(a, s)]
        for item in fresh
        for a, s, u in item.units
        if u < 0 and not policies[a].allow_negative
    }
    if not debited:
        return
    own = {
        accounts[(a, s)]
        for item in fresh
        for a, s, _ in item.units
        if stream != DEFAULT_STREAM and policies[a].striped
    } & debited
    current = store.balances(debited - own) | (store.stripes(own, stream) if own else {})
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


class Ledger:
    """Double-entry ledger bound to one SQLAlchemy session (the caller owns the transaction)."""

    def __init__(self, session: Session) -> None:
        self.session = session

    # -- writing -------------------------------------------------------------------------------

    def post(self, spec: TransferSpec, stream: int = DEFAULT_STREAM) -> PostResult:
        """Post one transfer (see ``post_many``)."""
        return self.post_many([spec], stream)[0]

    def transfer(self, key: str, code: str, legs: Sequence[Leg], **kwargs) -> PostResult:
        """Post one transfer given as its parts."""
        return self.post(TransferSpec(key=key, code=code, legs=tuple(legs), **kwargs))

    def post_many(
        self, specs: Sequence[TransferSpec], stream: int = DEFAULT_STREAM
    ) -> list[PostResult]:
        """Post transfers in order, each at most once; refuse all of them if any one is invalid.

        A key already posted with the same content is a no-op (``created=False``); with other
        content it is an ``IdempotencyConflict``. Nothing is written when anything is refused.
        A transfer without its own ``at`` is stamped with the instant of this call.

        ``stream`` is the chain the transfers join (a non-negative integer chosen by the poster,
        e.g. the engine's shard): posters on different streams do not wait for each other unless
        both debit one guarded account (a copy's cash, a person's wallet), whose row the debit
        locks (one writer per follower account avoids that). Idempotency keys are unique across
        all streams.
        """
        if not specs:
            return []
        if not isinstance(stream, int) or isinstance(stream, bool) or stream < 0:
            raise ValueError(f"ledger stream {stream!r}: a stream is a non-negative integer")
        with paused_gc():
            return self._post_many(specs, stream)

    def _post_many(self, specs: Sequence[TransferSpec], stream: int) -> list[PostResult]:
        now = clock.now()
        policies: dict[str, AccountPolicy] = {}
        prepared = [_prepare(spec, now, policies) for spec in specs]
        session = self.session
        session.flush()  # the statements below bypass the ORM's autoflush
        store = LedgerStore(session)
        last_seq, last_hash = store.lock_head(stream)

        existing, new_ids = store.existing((p.spec.key for p in prepared), len(prepared))
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

        accounts = store.account_ids(
            {(a, s) for item in fresh for a, s, _ in item.units},
            {a: p.allow_negative for a, p in policies.items()},
            now,
        )
        _check_balances(fresh, accounts, policies, store, stream)
        striped_ids = (
            {i for (a, _), i in accounts.items() if policies[a].striped}
            if stream != DEFAULT_STREAM
            else set()
        )

        # One pass: chain every transfer, lay out its rows, sum the balance moves.
        raw = store.raw
        stamps: dict[datetime, str] = {}
        seq, prev = last_seq, last_hash
        transfers, postings = [], []
        deltas: dict[int, int] = defaultdict(int)
        for item, transfer_id in zip(fresh, new_ids, strict=False):
            seq += 1
            spec = item.spec
            stamp = stamps.get(item.at) or stamps.setdefault(item.at, chain_stamp(item.at))
            digest_hash = hash_from_stamp(prev, seq, stamp, item.digest)
            transfers.append(
                (
                    transfer_id,
                    stream,
                    seq,
                    spec.key,
                    spec.code,
                    spec.memo,
                    raw.json(spec.refs),
                    raw.stamp(item.at),
                    item.digest,
                    prev,
                    digest_hash,
                )
            )
            for address, asset, amount in item.units:
                account_id = accounts[(address, asset)]
                postings.append((transfer_id, account_id, asset, amount))
                deltas[account_id] += amount
            results[spec.key] = PostResult(transfer_id, True)
            prev = digest_hash
        striped = {acc: deltas.pop(acc) for acc in striped_ids & deltas.keys()}
        store.write(stream, transfers, postings, deltas, striped, (seq, prev))
        if seq // ANCHOR_EVERY > last_seq // ANCHOR_EVERY:
            store.anchor(now, wait=False)  # skipped if another writer is anchoring right now
        session.expire_all()
        return [results[p.spec.key] for p in prepared]

    def anchor(self) -> tuple[int, str]:
        """Append an anchor of every stream's head to the root chain; return its seq and hash.

        Waits for a writer that is anchoring at this moment (PostgreSQL). Validation anchors
        after every clean recomputation, so truncating an already verified stream is detected.
        """
        self.session.flush()
        with paused_gc():
            anchored = LedgerStore(self.session).anchor(clock.now(), wait=True)
        assert anchored is not None  # waiting always anchors
        return anchored

    # -- reading -------------------------------------------------------------------------------

    def balance(self, address: str, asset: str) -> Decimal:
        """Return the balance of ``address`` in ``asset`` (zero for an account never used)."""
        found = self.balances(exact=(address, asset))
        return found[0].amount if found else Decimal(0)

    def balances(
        self, prefix: str | None = None, *, exact: tuple[str, str] | None = None
    ) -> list[Balance]:
        """Return every balance, optionally of addresses starting with ``prefix``, by address.

        A shared account's balance is its row's (stream 0's part) plus every stream's stripe.
        """
        stripes = (
            select(
                LedgerBalanceStripe.account_id,
                func.sum(type_coerce(LedgerBalanceStripe.balance, BigInteger)).label("units"),
            )
            .group_by(LedgerBalanceStripe.account_id)
            .subquery()
        )
        rows = LedgerAccount.__table__.c
        query = (
            select(
                rows.address,
                rows.asset,
                type_coerce(rows.balance, BigInteger) + func.coalesce(stripes.c.units, 0),
            )
            .outerjoin(stripes, stripes.c.account_id == rows.id)
            .order_by(rows.address, rows.asset)
        )
        if prefix:
            query = query.where(rows.address.startswith(prefix))
        if exact:
            query = query.where(rows.address == exact[0], rows.asset == exact[1])
        return [Balance(a, s, from_units(int(u))) for a, s, u in self.session.execute(query)]

    def sum_of_postings(self, address: str, asset: str) -> Decimal:
        """Return the sum of the postings of one account, computed in SQL (exact integer units)."""
        total = self.session.execute(
            select(func.sum(LedgerPosting.amount))
            .join(LedgerAccount, LedgerAccount.id == LedgerPosting.account_id)
            .where(LedgerAccount.address == address, LedgerAccount.asset == asset)
        ).scalar_one()
        return total if total is not None else Decimal(0)

    def verify_chain(self, batch: int = 50_000) -> ChainReport:
        """Recompute every transfer's digest and chained hash from the stored postings, and check
        every stream against its head and the root chain's anchors (R-X-4)."""
        with paused_gc():
            return recompute_chain(self.session, batch)
