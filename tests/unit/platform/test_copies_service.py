"""Copy services on SQLite and PostgreSQL: start (R-COPY-2, R-ACC-2/3, R-LEAD-8) and stop (R-COPY-5)."""

from __future__ import annotations

from decimal import Decimal as D

from platform_helpers import fund, open_portfolio, refused_unchanged
from sqlalchemy import select

from copytrade.ledger import Ledger
from copytrade.platform import copies, wallets
from models import AuditEntry, Copy, CopyStopEvent


def test_start_copy_moves_allocation_and_stores_settings_R_COPY_2(session):
    p = open_portfolio(session, "alice")
    fund(session, "erik", "1000")
    with session.begin():
        c = copies.start(
            session,
            "erik",
            p.id,
            "400",
            sizing_mode="fixed_amount",
            fixed_amount="50",
            stop_loss_pct="20%",
            below_min_policy="accumulate",
            symbols=["btc/usdt"],
            close_only=True,
        )
    with session.begin():
        ledger = Ledger(session)
        assert ledger.balance(f"follower:{c.id}:cash", "USDT") == D("400")
        assert ledger.balance(f"person:{c.follower_person_id}:spot", "USDT") == D("600")
        stored = session.get(Copy, c.id)
        assert (stored.sizing_mode, stored.fixed_amount, stored.stop_loss_pct) == (
            "fixed_amount",
            D(50),
            D(20),
        )
        assert (stored.below_min_policy, stored.symbols, stored.close_only) == (
            "accumulate",
            ["BTCUSDT"],
            True,
        )
        rows = copies.list_copies(session, "erik")
        assert [(r.id, r.cash) for r in rows] == [(c.id, D("400"))]


def test_allocation_above_balance_refused_nothing_changed_R_COPY_2(session):
    p = open_portfolio(session, "alice")
    fund(session, "erik", "100")
    err = refused_unchanged(session, copies.start, "erik", p.id, "100.00000001")
    assert (err.field, err.rule) == ("allocation", "R-COPY-2")


def test_private_portfolio_needs_code_R_COPY_2(session):
    p = open_portfolio(session, "chen", "futures", capital="2000", visibility="private")
    fund(session, "hana", "500")
    assert refused_unchanged(session, copies.start, "hana", p.id, "100").field == "invitation_code"
    assert (
        refused_unchanged(
            session, copies.start, "hana", p.id, "100", invitation_code="WRONG234"
        ).rule
        == "R-COPY-2"
    )
    with session.begin():
        assert (
            copies.start(
                session, "hana", p.id, "100", invitation_code=p.invitation_code.lower(), leverage=7
            ).leverage
            == 7
        )


def test_bad_settings_refused_nothing_changed_R_COPY_2_R_IN_2(session):
    p = open_portfolio(session, "alice")
    fund(session, "erik", "500")
    assert (
        refused_unchanged(session, copies.start, "erik", p.id, "100", leverage=3).rule
        == "R-COPY-12"
    )
    assert (
        refused_unchanged(session, copies.start, "erik", p.id, "100", below_min_policy="never").rule
        == "R-COPY-6"
    )
    assert (
        refused_unchanged(
            session, copies.start, "erik", p.id, "100", sizing_mode="fixed_amount"
        ).rule
        == "R-COPY-1"
    )


def test_at_most_ten_active_copies_R_ACC_2(session):
    portfolios = [open_portfolio(session, f"lead{i}", "spot", capital="500") for i in range(11)]
    fund(session, "erik", "1000")
    for p in portfolios[:10]:
        with session.begin():
            copies.start(session, "erik", p.id, "10")
    err = refused_unchanged(session, copies.start, "erik", portfolios[10].id, "10")
    assert (err.rule, err.field) == ("R-ACC-2", "follower")
    with session.begin():
        copies.stop(session, copies.list_copies(session, "erik")[0].id, "erik")
    with session.begin():
        copies.start(session, "erik", portfolios[10].id, "10")


def test_cannot_copy_own_portfolio_R_ACC_3(session):
    p = open_portfolio(session, "alice")
    fund(session, "alice", "100")
    assert refused_unchanged(session, copies.start, "alice", p.id, "50").rule == "R-ACC-3"


def test_cannot_copy_same_portfolio_twice_R_COPY_2(session):
    p = open_portfolio(session, "alice")
    fund(session, "erik", "100")
    with session.begin():
        copies.start(session, "erik", p.id, "50")
    assert "already" in refused_unchanged(session, copies.start, "erik", p.id, "20").message


def test_leverage_above_5x_refused_at_100k_aum_R_LEAD_8(session):
    p = open_portfolio(session, "whale", "futures", capital="99990")
    fund(session, "erik", "1000")
    err = refused_unchanged(session, copies.start, "erik", p.id, "10", leverage=6)
    assert (err.field, err.rule) == ("leverage", "R-LEAD-8")
    with session.begin():
        copies.start(session, "erik", p.id, "10", leverage=5)
    small = open_portfolio(session, "minnow", "futures", capital="1000")
    with session.begin():
        assert copies.start(session, "erik", small.id, "10", leverage=10).leverage == 10


def test_stop_by_follower_only_once_R_COPY_5(session):
    p = open_portfolio(session, "alice")
    fund(session, "erik", "100")
    with session.begin():
        c = copies.start(session, "erik", p.id, "50")
    assert refused_unchanged(session, copies.stop, c.id, "alice").rule == "R-COPY-5"
    with session.begin():
        copies.stop(session, c.id, "erik")
    with session.begin():
        stored = session.get(Copy, c.id)
        assert (stored.status, stored.stop_reason) == ("stopped", "stop_copy")
        assert stored.stopped_at is not None
        assert Ledger(session).balance(f"follower:{c.id}:cash", "USDT") == D(
            50
        )  # settlement returns it
        assert session.scalars(
            select(AuditEntry.action).where(AuditEntry.rule == "R-COPY-5")
        ).all() == ["copy_stopped"]
        # the stop event in the settlement vocabulary, as every stop path writes it (R-SET-5)
        event = session.scalars(select(CopyStopEvent)).one()
        assert (event.copy_id, event.trigger, event.reason) == (c.id, "stop_copy", "stop_copy")
        assert event.settled_at is None
    assert refused_unchanged(session, copies.stop, c.id, "erik").rule == "R-COPY-5"
    assert refused_unchanged(session, copies.stop, 12345, "erik").field == "copy_id"


def test_deposit_idempotent_by_key_and_refuses_bad_amount_R_IN_2(session):
    with session.begin():
        first = wallets.deposit(session, "erik", "100", key="k1")
        again = wallets.deposit(session, "erik", "100", key="k1")
    assert first.created and not again.created and again.balance == D(100)
    for amount in ("0", "-5", "abc", "1.000000001"):
        assert refused_unchanged(session, wallets.deposit, "erik", amount).field == "amount"
    assert refused_unchanged(session, wallets.deposit, "Bad Handle!", "5").field == "handle"
