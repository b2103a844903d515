"""Bulk posting and the fast chain recomputation on SQLite and PostgreSQL (R-LED-1/2, R-SET-9, R-X-4).

``Ledger.post_many`` is the one poster (the engine per fill, settlement by the ten thousand): what
it writes must not depend on the database or on how transfers are split into calls.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session

import models
from copytrade.db import make_engine
from copytrade.ledger import (
    IdempotencyConflict,
    Ledger,
    Leg,
    NegativeBalance,
    TransferSpec,
    UnbalancedTransfer,
)
from copytrade.validation import recompute_chain
from models import LedgerAccount, LedgerPosting, LedgerTransfer

T0 = datetime(2025, 1, 6, tzinfo=UTC)


def specs(n: int = 300) -> list[TransferSpec]:
    out = []
    for i in range(n):
        amount = D(i + 1) / 7  # many decimals…
        amount = amount.quantize(D("0.00000001"))  # …rounded to the ledger's scale
        out.append(
            TransferSpec(
                f"dep-{i}",
                "deposit",
                (
                    Leg("external:deposits", "USDT", -amount),
                    Leg(f"person:{i % 13}:spot", "USDT", amount),
                ),
                refs={"i": i},
                at=T0 + timedelta(microseconds=i * 37),
            )
        )
        if i % 3 == 0:
            out.append(
                TransferSpec(
                    f"move-{i}",
                    "copy_allocation",
                    (
                        Leg(f"person:{i % 13}:spot", "USDT", -amount),
                        Leg(f"follower:{i}:cash", "USDT", amount),
                    ),
                    at=T0 + timedelta(seconds=1, microseconds=i),
                )
            )
    return out


def snapshot(session: Session):
    transfers = session.execute(
        select(
            LedgerTransfer.seq,
            LedgerTransfer.idempotency_key,
            LedgerTransfer.code,
            LedgerTransfer.digest,
            LedgerTransfer.prev_hash,
            LedgerTransfer.hash,
            LedgerTransfer.created_at,
            LedgerTransfer.refs,
        ).order_by(LedgerTransfer.seq)
    ).all()
    balances = session.execute(
        select(
            LedgerAccount.address,
            LedgerAccount.asset,
            LedgerAccount.balance,
            LedgerAccount.allow_negative,
        ).order_by(LedgerAccount.address, LedgerAccount.asset)
    ).all()
    postings = session.execute(
        select(LedgerTransfer.seq, LedgerAccount.address, LedgerPosting.amount)
        .join(LedgerPosting, LedgerPosting.transfer_id == LedgerTransfer.id)
        .join(LedgerAccount, LedgerAccount.id == LedgerPosting.account_id)
        .order_by(LedgerTransfer.seq, LedgerAccount.address)
    ).all()
    return transfers, balances, postings


def test_bulk_posting_writes_what_posting_one_by_one_writes_R_X_4(session, tmp_path):
    """Reference: one ``post`` per transfer on a fresh SQLite file; under test: ``post_many`` on
    the test's database (SQLite or PostgreSQL), in two overlapping batches."""
    batch = specs()
    reference = make_engine(f"sqlite:///{tmp_path / 'reference.db'}")
    models.Base.metadata.create_all(reference)
    with Session(reference) as s1, s1.begin():
        ledger = Ledger(s1)
        for spec in batch:
            ledger.post(spec)
        expected = snapshot(s1)
    reference.dispose()
    with session.begin():
        Ledger(session).post_many(batch[:150])
    with session.begin():
        results = Ledger(session).post_many(batch)  # the first 150 again: no-ops
        assert sum(r.created for r in results) == len(batch) - 150
        assert snapshot(session) == expected
        assert Ledger(session).verify_chain().ok


def test_bulk_posting_keeps_the_ledger_rules_all_or_nothing_R_LED_1_R_LED_2_R_SET_9(session):
    with session.begin():
        Ledger(session).post_many(specs(30))
        before = snapshot(session)
    bad = TransferSpec(
        "bad", "deposit", (Leg("external:x", "USDT", D(-1)), Leg("person:1:spot", "USDT", D("0.5")))
    )
    overdraw = TransferSpec(
        "over",
        "withdrawal",
        (Leg("person:1:spot", "USDT", D(-(10**6))), Leg("external:w", "USDT", D(10**6))),
    )
    conflict = TransferSpec(
        "dep-0",
        "deposit",
        (Leg("external:deposits", "USDT", D(-1)), Leg("person:0:spot", "USDT", D(1))),
    )
    for spec, error in (
        (bad, UnbalancedTransfer),
        (overdraw, NegativeBalance),
        (conflict, IdempotencyConflict),
    ):
        with pytest.raises(error), session.begin():
            Ledger(session).post_many([specs(40)[-1], spec])
        with session.begin():
            assert snapshot(session) == before  # all or nothing
    with session.begin():
        assert [r.created for r in Ledger(session).post_many(specs(30))] == [False] * len(specs(30))
        assert Ledger(session).verify_chain().ok


def test_chain_recomputation_in_small_batches_finds_an_edited_posting_R_X_4(
    session, engine, tamper
):
    with session.begin():
        Ledger(session).post_many(specs(120))
        report = recompute_chain(session, batch=17)
        total = session.scalar(text("select count(*) from ledger_transfers"))
        head = session.execute(
            text("select last_seq, last_hash from ledger_chain_heads where stream = 0")
        ).one()
    assert report.ok and report.checked == total == head[0] and report.heads == {0: tuple(head)}
    tamper(
        engine,
        "ledger_postings",
        "update ledger_postings set amount = amount + 1 where amount > 0 and transfer_id = "
        "(select id from ledger_transfers where seq = 77)",
    )
    with session.begin():
        broken = recompute_chain(session, batch=17)
        assert Ledger(session).verify_chain(batch=17).problems == broken.problems
    assert (broken.first_broken_seq, broken.checked, broken.heads[0][0]) == (77, 77, 76)
    assert broken.problems == ["stream 0 seq 77: content (postings, key or code) was edited"]


def test_hash_from_stored_text_is_the_ledgers_chain_hash_R_X_4():
    from copytrade.ledger.chain import chain_hash, hash_from_stamp

    for at in (
        T0,
        T0 + timedelta(microseconds=1),
        datetime(2031, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    ):
        stamp = at.strftime("%Y-%m-%d %H:%M:%S.%f").replace(" ", "T") + "Z"
        assert hash_from_stamp("ab" * 32, 42, stamp, "cd" * 32) == chain_hash(
            "ab" * 32, 42, at, "cd" * 32
        )
