"""Ledger service on SQLite and PostgreSQL: double entry, balances, idempotency, hash chain."""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, text

from copytrade.ledger import (
    IdempotencyConflict,
    Ledger,
    Leg,
    NegativeBalance,
    TransferSpec,
    UnbalancedTransfer,
)
from models import LedgerAccount, LedgerPosting, LedgerTransfer


def deposit(key: str, address: str, amount: str, asset: str = "USDT") -> TransferSpec:
    return TransferSpec(
        key=key,
        code="deposit",
        legs=(Leg("external:deposits", asset, -D(amount)), Leg(address, asset, D(amount))),
    )


def test_transfer_moves_money_and_balances_equal_postings_R_LED_1_R_LED_2(session):
    with session.begin():
        ledger = Ledger(session)
        ledger.post(deposit("d1", "person:1:spot", "1000"))
        ledger.transfer(
            "alloc-1",
            "copy_allocation",
            [
                Leg("person:1:spot", "USDT", D("-250.12345678")),
                Leg("follower:7:cash", "USDT", D("250.12345678")),
            ],
        )
    assert ledger.balance("person:1:spot", "USDT") == D("749.87654322")
    assert ledger.balance("follower:7:cash", "USDT") == D("250.12345678")
    for b in ledger.balances():
        assert ledger.sum_of_postings(b.address, b.asset) == b.amount


def test_unbalanced_transfer_refused_and_nothing_written_R_LED_1(session):
    with session.begin():
        ledger = Ledger(session)
        with pytest.raises(UnbalancedTransfer) as err:
            ledger.transfer(
                "bad",
                "deposit",
                [
                    Leg("external:deposits", "USDT", D("-1")),
                    Leg("person:1:spot", "USDT", D("0.99")),
                ],
            )
        assert "R-LED-1" in str(err.value)
        assert session.scalar(select(func.count()).select_from(LedgerTransfer)) == 0


def test_each_asset_must_balance_on_its_own_R_LED_1(session):
    with session.begin(), pytest.raises(UnbalancedTransfer):
        Ledger(session).transfer(
            "mixed",
            "copy_fill",
            [Leg("follower:1:cash", "USDT", D("-10")), Leg("exchange:binance", "BTC", D("10"))],
        )


def test_guarded_account_never_goes_negative_R_LED_2(session):
    with session.begin():
        ledger = Ledger(session)
        ledger.post(deposit("d1", "person:1:spot", "5"))
        with pytest.raises(NegativeBalance) as err:
            ledger.transfer(
                "over",
                "withdrawal",
                [
                    Leg("person:1:spot", "USDT", D("-5.00000001")),
                    Leg("external:w", "USDT", D("5.00000001")),
                ],
            )
        assert "R-LED-2" in str(err.value)
    assert ledger.balance("person:1:spot", "USDT") == D(5)


def test_exchange_and_external_accounts_may_go_negative_R_LED_2(session):
    with session.begin():
        ledger = Ledger(session)
        ledger.post(deposit("d1", "follower:1:cash", "100"))
        ledger.transfer(
            "buy",
            "copy_fill",
            [
                Leg("follower:1:cash", "USDT", D("-100")),
                Leg("exchange:binance", "USDT", D("100")),
                Leg("exchange:binance", "BTC", D("-0.001")),
                Leg("follower:1:cash", "BTC", D("0.001")),
            ],
        )
    assert ledger.balance("exchange:binance", "BTC") == D("-0.001")


def test_repeated_idempotency_key_is_a_no_op(session):
    with session.begin():
        ledger = Ledger(session)
        first = ledger.post(deposit("d1", "person:1:spot", "10"))
        again = ledger.post(deposit("d1", "person:1:spot", "10"))
    assert first.created and not again.created and first.transfer_id == again.transfer_id
    assert ledger.balance("person:1:spot", "USDT") == D(10)


def test_reused_key_with_other_content_is_refused(session):
    with session.begin():
        ledger = Ledger(session)
        ledger.post(deposit("d1", "person:1:spot", "10"))
        with pytest.raises(IdempotencyConflict):
            ledger.post(deposit("d1", "person:1:spot", "11"))


def test_sub_unit_amount_refused_never_rounded_silently(session):
    with session.begin(), pytest.raises(ValueError, match="more than 8 decimals"):
        Ledger(session).post(deposit("d1", "person:1:spot", "0.000000001"))


def test_bulk_post_matches_one_by_one_and_chains_R_X_4(session):
    specs = [deposit(f"d{i}", f"person:{i % 7}:spot", f"{i}.5") for i in range(1, 2001)]
    with session.begin():
        ledger = Ledger(session)
        results = ledger.post_many(specs)
        assert all(r.created for r in results)
        assert ledger.post_many(specs[:10]) == [type(r)(r.transfer_id, False) for r in results[:10]]
    report = ledger.verify_chain()
    assert report.ok and report.checked == 2000
    assert ledger.balance("person:3:spot", "USDT") == sum(
        D(f"{i}.5") for i in range(1, 2001) if i % 7 == 3
    )


def test_history_is_immutable_R_X_4(session):
    with session.begin():
        Ledger(session).post(deposit("d1", "person:1:spot", "10"))
    with pytest.raises(Exception, match="immutable"), session.begin():
        session.execute(text("update ledger_postings set amount = amount + 1"))
    with pytest.raises(Exception, match="immutable"), session.begin():
        session.execute(text("delete from ledger_transfers"))


def test_chain_detects_an_edited_posting_R_X_4(session, engine, tamper):
    with session.begin():
        ledger = Ledger(session)
        for i in range(5):
            ledger.post(deposit(f"d{i}", "person:1:spot", "10"))
    # Simulate an attacker with DDL rights: lift the guard, edit history, and look again.
    tamper(
        engine,
        "ledger_postings",
        "update ledger_postings set amount = amount + 1 where transfer_id = "
        "(select id from ledger_transfers where seq = 3) and amount > 0",
    )
    report = Ledger(session).verify_chain()
    assert not report.ok and report.first_broken_seq == 3


def test_chain_detects_a_rewritten_hash_R_X_4(session, engine):
    with session.begin():
        ledger = Ledger(session)
        for i in range(4):
            ledger.post(deposit(f"d{i}", "person:1:spot", "10"))
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql("drop trigger trg_ledger_transfers__no_update")
        else:
            conn.exec_driver_sql("alter table ledger_transfers disable trigger all")
        conn.exec_driver_sql(
            "update ledger_transfers set hash = 'x' || substr(hash, 2) where seq = 2"
        )
    assert Ledger(session).verify_chain().first_broken_seq in (2, 3)


amounts = st.decimals(min_value=D("0.00000001"), max_value=D("1000000"), places=8, allow_nan=False)
ops = st.lists(
    st.tuples(
        st.sampled_from(["person:1:spot", "person:2:spot", "follower:1:cash", "leader:1:rebates"]),
        st.sampled_from(["person:1:spot", "person:2:spot", "follower:1:cash", "platform:fees"]),
        st.sampled_from(["USDT", "BTC"]),
        amounts,
        st.integers(0, 15),
    ),
    min_size=1,
    max_size=25,
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=ops)
def test_any_sequence_of_postings_keeps_the_ledger_whole_R_LED_1_R_LED_2(session, ops):
    """Property: per-asset total is zero, balances equal postings, replaying a key changes nothing."""
    with session.begin():
        ledger = Ledger(session)
        run = uuid_prefix()
        for i, (src, dst, asset, amount, replay) in enumerate(ops):
            ledger.post(deposit(f"{run}-dep-{i}", src, str(amount), asset))
            spec = TransferSpec(
                key=f"{run}-mv-{replay}",
                code="move",
                legs=(Leg(src, asset, -amount), Leg(dst, asset, amount)),
            )
            before = {(b.address, b.asset): b.amount for b in ledger.balances()}
            try:
                result = ledger.post(spec)
            except IdempotencyConflict:
                continue
            if src == dst:
                continue
            if not result.created:
                assert {(b.address, b.asset): b.amount for b in ledger.balances()} == before
        totals = session.execute(
            select(LedgerPosting.asset, func.sum(LedgerPosting.__table__.c.amount)).group_by(
                LedgerPosting.asset
            )
        ).all()
        assert all(total == 0 for _, total in totals)
        for account in session.scalars(select(LedgerAccount)):
            assert ledger.sum_of_postings(account.address, account.asset) == account.balance
            if not account.allow_negative:
                assert account.balance >= 0


_counter = iter(range(10**9))


def uuid_prefix() -> str:
    return f"h{next(_counter)}"
