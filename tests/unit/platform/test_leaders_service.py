"""Lead portfolio services on SQLite and PostgreSQL: apply, edit, close, capacity, impersonation."""

from __future__ import annotations

from decimal import Decimal as D

from platform_helpers import fund, open_portfolio, refused_unchanged
from sqlalchemy import select

from copytrade.domain.leaders import LeaderApplication
from copytrade.ledger import Ledger
from copytrade.platform import copies, leaders
from models import AuditEntry, CapacityRequest, Copy, CopyStopEvent, LeadPortfolio, Person


def application(mode="spot", nickname="AlphaAlice", capital="1000", **kw) -> LeaderApplication:
    return LeaderApplication(mode, nickname, "BTC swings", capital, True, **kw)


def test_apply_moves_capital_and_records_R_LEAD_1_R_LEAD_3(session):
    fund(session, "alice", "1500")
    with session.begin():
        p = leaders.apply(session, "Alice", application(capital="1000"))
    with session.begin():
        ledger = Ledger(session)
        assert ledger.balance(f"leader:{p.id}:capital", "USDT") == D("1000")
        assert ledger.balance(f"person:{p.leader_person_id}:spot", "USDT") == D("500")
        assert (p.follower_cap, p.profit_share_ratio, p.visibility, p.invitation_code) == (
            300,
            D("0.1"),
            "public",
            None,
        )
        assert session.scalars(select(AuditEntry.action)).all() == ["portfolio_opened"]


def test_apply_without_balance_refused_and_nothing_created_R_LEAD_1_R_IN_2(session):
    err = refused_unchanged(session, leaders.apply, "newcomer", application(capital="1000"))
    assert (err.field, err.rule) == ("capital", "R-LEAD-1")
    with session.begin():
        assert session.scalar(select(Person).where(Person.handle == "newcomer")) is None


def test_apply_below_minimum_refused_R_LEAD_1(session):
    fund(session, "dana", "1000")
    err = refused_unchanged(session, leaders.apply, "dana", application(capital="200"))
    assert "capital 200 USD is below the spot minimum of 500 USD" in err.message


def test_futures_capital_bounds_R_LEAD_2(session):
    fund(session, "bruno", "2000")
    assert (
        refused_unchanged(
            session, leaders.apply, "bruno", application("futures", capital="999")
        ).rule
        == "R-LEAD-2"
    )
    with session.begin():
        assert (
            leaders.apply(session, "bruno", application("futures", capital="1000")).follower_cap
            == 200
        )


def test_no_agreement_refused_R_LEAD_3(session):
    fund(session, "alice", "1000")
    app = LeaderApplication("spot", "AlphaAlice", "desc", "600", False)
    assert refused_unchanged(session, leaders.apply, "alice", app).field == "agreement_accepted"


def test_one_leader_identity_one_active_portfolio_per_mode_R_ACC_1(session):
    open_portfolio(session, "alice", "spot", nickname="AlphaAlice")
    fund(session, "alice", "5000")
    err = refused_unchanged(session, leaders.apply, "alice", application("spot", capital="600"))
    assert (err.field, err.rule) == ("mode", "R-ACC-1")
    err = refused_unchanged(
        session,
        leaders.apply,
        "alice",
        application("futures", nickname="OtherName", capital="1000"),
    )
    assert (err.field, err.rule) == ("nickname", "R-ACC-1")
    with session.begin():
        assert (
            leaders.apply(session, "alice", application("futures", capital="1000")).mode
            == "futures"
        )


def test_private_portfolio_gets_code_and_refuses_codes_in_text_R_LEAD_4_R_LEAD_6(session):
    fund(session, "chen", "5000")
    err = refused_unchanged(
        session,
        leaders.apply,
        "chen",
        LeaderApplication(
            "futures", "ChenPrivate", "join with X7K2P9QM", "2000", True, visibility="private"
        ),
    )
    assert (err.field, err.rule) == ("description", "R-LEAD-6")
    with session.begin():
        p = leaders.apply(
            session,
            "chen",
            application(
                "futures",
                nickname="ChenPrivate",
                capital="2000",
                visibility="private",
                profit_share_ratio="0.25",
            ),
        )
    assert p.invitation_code and len(p.invitation_code) == 8 and p.profit_share_ratio == D("0.25")
    spaced = " ".join(p.invitation_code)
    err = refused_unchanged(
        session, leaders.edit_listing, p.id, "chen", description=f"code {spaced}"
    )
    assert err.rule == "R-LEAD-6"
    with session.begin():
        leaders.edit_listing(session, p.id, "chen", description="invite only, ask me")


def test_ratio_cannot_be_edited_R_LEAD_5(session):
    p = open_portfolio(session, "alice")
    assert (
        refused_unchanged(
            session, leaders.edit_listing, p.id, "alice", profit_share_ratio="0.2"
        ).rule
        == "R-LEAD-5"
    )


def test_capacity_request_approved_raises_cap_and_both_recorded_R_LEAD_7(session):
    p = open_portfolio(session, "alice")
    with session.begin():
        r = leaders.request_capacity(session, p.id, "alice", "400")
    err = refused_unchanged(session, leaders.request_capacity, p.id, "alice", "500")
    assert "pending" in err.message and err.rule == "R-LEAD-7"
    assert (
        refused_unchanged(session, leaders.request_capacity, p.id, "bob", "500").field == "handle"
    )
    with session.begin():
        leaders.decide_capacity(
            session, r.id, approve=True, operator="ops-anna", reason="good record"
        )
    with session.begin():
        assert session.get(LeadPortfolio, p.id).follower_cap == 400
        assert session.get(CapacityRequest, r.id).status == "approved"
    assert (
        refused_unchanged(
            session, leaders.decide_capacity, r.id, approve=False, operator="ops"
        ).rule
        == "R-LEAD-7"
    )
    with session.begin():
        r2 = leaders.request_capacity(session, p.id, "alice", "600")
    with session.begin():
        leaders.decide_capacity(
            session, r2.id, approve=False, operator="ops-anna", reason="too fast"
        )
    with session.begin():
        assert session.get(LeadPortfolio, p.id).follower_cap == 400
        actions = session.scalars(
            select(AuditEntry.action).where(AuditEntry.rule == "R-LEAD-7").order_by(AuditEntry.id)
        ).all()
    assert actions == [
        "capacity_requested",
        "capacity_approved",
        "capacity_requested",
        "capacity_rejected",
    ]


def test_full_portfolio_refuses_follower_until_cap_raised_R_LEAD_7(session):
    p = open_portfolio(session, "alice")
    with session.begin():
        session.get(LeadPortfolio, p.id).follower_cap = 1
    for handle in ("erik", "fatima"):
        fund(session, handle, "100")
    with session.begin():
        copies.start(session, "erik", p.id, "50")
    assert refused_unchanged(session, copies.start, "fatima", p.id, "50").rule == "R-LEAD-7"
    with session.begin():
        r = leaders.request_capacity(session, p.id, "alice", "2")
        leaders.decide_capacity(session, r.id, approve=True, operator="ops")
    with session.begin():
        copies.start(session, "fatima", p.id, "50")


def _add_followers(session, portfolio_id: int, n: int, prefix: str) -> None:
    """Give a portfolio ``n`` active copies directly (the scan only counts them)."""
    with session.begin():
        people = [Person(handle=f"{prefix}{i}") for i in range(n)]
        session.add_all(people)
        session.flush()
        session.add_all(
            Copy(portfolio_id=portfolio_id, follower_person_id=p.id, allocation=D(10))
            for p in people
        )


def test_scan_takes_imitators_of_advanced_leader_offline_and_records_R_LEAD_9(session):
    king = open_portfolio(session, "king", "futures", capital="1000", nickname="CryptoKing")
    own_spot = open_portfolio(session, "king", "spot", capital="600", nickname="CryptoKing")
    fake = open_portfolio(session, "faker", "spot", nickname="Crypt0_K1ng")
    fake2 = open_portfolio(
        session, "faker2", "futures", capital="1000", nickname="СrурtоKіng"
    )  # Cyrillic
    honest = open_portfolio(session, "queen", "spot", nickname="CryptoQueen")
    with session.begin():
        assert leaders.scan_impersonation(session) == []  # not advanced yet: 0 followers
    _add_followers(session, king.id, 201, "f")
    with session.begin():
        taken = leaders.scan_impersonation(session, actor="ops-anna")
    assert sorted(t.portfolio_id for t in taken) == sorted([fake.id, fake2.id])
    with session.begin():
        for pid in (fake.id, fake2.id):
            p = session.get(LeadPortfolio, pid)
            assert not p.is_listed and "imitates advanced leader 'CryptoKing'" in p.offline_reason
        assert session.get(LeadPortfolio, own_spot.id).is_listed
        assert session.get(LeadPortfolio, honest.id).is_listed
        entries = session.scalars(select(AuditEntry).where(AuditEntry.rule == "R-LEAD-9")).all()
        assert {e.subject_id for e in entries} == {str(fake.id), str(fake2.id)}
        assert all(e.actor == "ops-anna" and e.reason for e in entries)
    with session.begin():
        assert leaders.scan_impersonation(session) == []  # already offline: recorded once
    fund(session, "copier", "100")
    assert refused_unchanged(session, copies.start, "copier", fake.id, "50").rule == "R-LEAD-9"
    fund(session, "mimic", "1000")
    err = refused_unchanged(
        session, leaders.apply, "mimic", application("spot", nickname="crypto king", capital="600")
    )
    assert (err.field, err.rule) == ("nickname", "R-LEAD-9")


def test_close_stops_every_copy_and_records_its_stop_event_R_LEAD_10_R_SET_5(session):
    p = open_portfolio(session, "alice")
    for handle in ("erik", "fatima"):
        fund(session, handle, "100")
        with session.begin():
            copies.start(session, handle, p.id, "60")
    assert refused_unchanged(session, leaders.close, p.id, "erik").rule == "R-LEAD-10"
    with session.begin():
        closed = leaders.close(session, p.id, "alice", "retiring")
    assert len(closed.stopped_copy_ids) == 2
    with session.begin():
        for copy in session.scalars(select(Copy)):
            assert (copy.status, copy.stop_reason) == ("stopped", "portfolio_closed")
            assert copy.stopped_at is not None
        # one stop event per copy, named by the settlement trigger (R-SET-5)
        events = session.scalars(select(CopyStopEvent).order_by(CopyStopEvent.copy_id)).all()
        assert [(e.copy_id, e.trigger) for e in events] == [
            (cid, "portfolio_closed") for cid in closed.stopped_copy_ids
        ]
        portfolio = session.get(LeadPortfolio, p.id)
        assert portfolio.status == "closed" and portfolio.closed_at is not None
        entry = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "portfolio_closed")
        ).one()
        assert (
            entry.details["stopped_copy_ids"] == closed.stopped_copy_ids
            and entry.reason == "retiring"
        )
    assert refused_unchanged(session, leaders.close, p.id, "alice").rule == "R-LEAD-10"
    fund(session, "late", "100")
    assert refused_unchanged(session, copies.start, "late", p.id, "50").rule == "R-COPY-2"
    with session.begin():
        assert [r.id for r in leaders.list_portfolios(session)] == []
        assert [r.status for r in leaders.list_portfolios(session, include_closed=True)] == [
            "closed"
        ]


def test_unknown_portfolio_refused_R_IN_2(session):
    assert refused_unchanged(session, leaders.close, 999, "alice").field == "portfolio_id"
