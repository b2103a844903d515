"""Hand-computed settlement cases from SPEC, on SQLite and PostgreSQL, gated by the real checkpoint.

Every amount below is worked out by hand in the test's comments; fees are deducted from the profit
basis (docs/settlement.md), rebates are 10 % of each fee rounded down.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal as D

from copytrade.settlement import StaticMarks, StaticPortfolioUnrealised
from tests.support.settlement import EPOCH

DAY = timedelta(days=1)
WEEK = timedelta(days=7)
MON1, MON2, MON3, MON4 = (EPOCH + WEEK * k for k in range(1, 5))  # weekly cycle instants


def test_spot_share_on_realised_profit_after_fees_R_SET_2_R_FEE_2(build, service, view):
    def case(s):
        pf = s.portfolio(mode="spot", ratio="0.1")
        c = s.copy(pf, allocation="1000")
        s.fill(c, "BTCUSDT", "buy", "0.01", "60000", fee="0.6", at=EPOCH + DAY)
        s.fill(c, "BTCUSDT", "sell", "0.01", "70000", fee="0.7", at=EPOCH + 2 * DAY)  # +100
        s.fill(c, "BTCUSDT", "buy", "0.005", "50000", fee="0.25", at=EPOCH + 3 * DAY)  # open
        return pf, c

    pf, c = build(case)
    # Spot ignores the open position even at a mark far above its cost (R-SET-2).
    report = service(marks=StaticMarks({"BTCUSDT": D("80000")})).settle_weekly(MON1)
    (share,) = view.shares(c)
    # basis = 100 realised − (0.6 + 0.7 + 0.25) fees = 98.45; × 10 % = 9.845
    assert (share.status, share.amount, share.profit_basis) == ("paid", D("9.845"), D("98.45"))
    assert share.unrealised is None
    # rebates 0.06 + 0.07 + 0.025 = 0.155 (R-FEE-2), paid in the same cycle (R-FEE-4)
    (rebate,) = view.payouts(copy_id=c, kind="rebate")
    assert (rebate.status, rebate.amount) == ("paid", D("0.155"))
    assert view.balance("person:1:spot") == D("10.00000000")  # to the leader (R-SET-4)
    assert view.balance(f"leader:{pf}:rebates") == 0
    assert report.shares_paid == D("9.845") and report.rebates_paid == D("0.155")


def test_futures_share_includes_unrealised_at_the_mark_R_SET_3(build, service, view):
    def case(s):
        pf = s.portfolio(mode="futures", ratio="0.1")
        c = s.copy(pf, allocation="1000")
        s.fill(c, "BTCUSDT", "buy", "1", "60000", fee="6", at=EPOCH + DAY)
        s.fill(c, "BTCUSDT", "sell", "0.5", "62000", fee="3.1", at=EPOCH + 2 * DAY)  # +1000
        return c

    c = build(case)
    service(marks=StaticMarks({"BTCUSDT": D("61000")})).settle_weekly(MON1)
    (share,) = view.shares(c)
    # open 0.5 @ 60000 marked at 61000: +500; basis = 1000 + 500 − 9.1 = 1490.9; × 10 % = 149.09
    assert (share.status, share.amount) == ("paid", D("149.09"))
    assert (share.realised, share.unrealised, share.profit_basis) == (
        D("990.9"),
        D("500"),
        D("1490.9"),
    )


def test_futures_loss_at_the_mark_leaves_nothing_due_R_SET_3(build, service, view):
    def case(s):
        c = s.copy(s.portfolio(mode="futures", ratio="0.1"))
        s.fill(c, "BTCUSDT", "buy", "1", "60000", at=EPOCH + DAY)
        s.fill(c, "BTCUSDT", "sell", "0.5", "62000", at=EPOCH + 2 * DAY)  # +1000
        return c

    c = build(case)
    service(marks=StaticMarks({"BTCUSDT": D("57000")})).settle_weekly(MON1)
    (share,) = view.shares(c)
    # 1000 realised − 0.5 × 3000 unrealised = −500: nothing due, nothing taken
    assert (share.status, share.amount, share.profit_basis) == ("nothing_due", 0, D("-500"))


def test_missing_mark_defers_the_share_never_guesses_R_SET_3(build, service, view):
    def case(s):
        c = s.copy(s.portfolio(mode="futures", ratio="0.1"))
        s.fill(c, "ETHUSDT", "buy", "1", "3000", fee="3", at=EPOCH + DAY)
        return c

    c = build(case)
    service(marks=StaticMarks({})).settle_weekly(MON1)
    (share,) = view.shares(c)
    assert share.status == "deferred" and "no mark price for ETHUSDT" in share.reason
    # the fee's rebate is still paid (R-FEE-3)
    assert [p.amount for p in view.payouts(copy_id=c, kind="rebate")] == [D("0.3")]


def test_profit_then_loss_then_profit_shares_only_the_new_high_R_SET_8(build, service, view):
    def week(start, buy, sell):
        def case(s):
            s.fill(copy_id, "BTCUSDT", "buy", "1", buy, at=start + DAY)
            s.fill(copy_id, "BTCUSDT", "sell", "1", sell, at=start + 2 * DAY)

        build(case)

    copy_id = build(lambda s: s.copy(s.portfolio(mode="futures", ratio="0.1")))
    leader_spot = "person:1:spot"
    svc = service()
    week(EPOCH, "60000", "61000")  # +1000 → cumulative 1000
    svc.settle_weekly(MON1)
    assert view.balance(leader_spot) == D("100")
    week(MON1, "61000", "59500")  # −1500 → cumulative −500
    svc.settle_weekly(MON2)
    assert view.balance(leader_spot) == D("100")  # nothing refunded
    week(MON2, "59500", "61500")  # +2000 → cumulative 1500
    svc.settle_weekly(MON3)
    got = [(p.status, p.amount, p.paid_before, p.profit_basis) for p in view.shares(copy_id)]
    assert got == [
        ("paid", D("100"), D("0"), D("1000")),
        ("nothing_due", D("0"), D("100"), D("-500")),
        ("paid", D("50"), D("100"), D("1500")),  # 10 % of 1500 − 100 already paid
    ]
    assert view.balance(leader_spot) == D("150")  # 10 % of the peak, once


def test_paused_share_is_carried_and_paid_when_the_balance_returns_R_SET_7_R_FEE_3(
    build, service, view
):
    def case(s):
        c = s.copy(s.portfolio(mode="futures", ratio="0.1"), allocation="100")
        s.fill(c, "BTCUSDT", "buy", "1", "60000", fee="6", at=EPOCH + DAY)
        s.fill(c, "BTCUSDT", "sell", "1", "62000", fee="6.2", at=EPOCH + 2 * DAY)  # +2000
        s.withdraw(c, "2000")  # cash 100 − 6 + 2000 − 6.2 − 2000 = 87.8
        return c

    c = build(case)
    svc = service()
    report = svc.settle_weekly(MON1)
    # due (2000 − 12.2) × 10 % = 198.78 > 87.8: paused, not taken
    (paused,) = view.shares(c)
    assert (paused.status, paused.amount) == ("paused", D("198.78"))
    assert "R-SET-7" in paused.reason and report.paused[0].copy_id == c
    assert view.balance(f"follower:{c}:cash") == D("87.8")
    # rebates are never paused: 0.6 + 0.62
    assert [p.amount for p in view.payouts(copy_id=c, kind="rebate")] == [D("1.22")]

    build(lambda s: s.fund(c, "200"))
    svc.settle_weekly(MON2)
    paid = view.shares(c)[-1]
    assert (paid.status, paid.amount, paid.paid_before) == ("paid", D("198.78"), D("0"))
    assert view.balance(f"follower:{c}:cash") == D("87.8") + 200 - D("198.78")


def test_deferred_below_minus_20000_then_settled_by_an_event_R_SET_6_R_SET_5(build, service, view):
    def case(s):
        pf = s.portfolio(mode="futures", ratio="0.1")
        c = s.copy(pf)
        s.fill(c, "BTCUSDT", "buy", "1", "60000", at=EPOCH + DAY)
        s.fill(c, "BTCUSDT", "sell", "1", "61000", at=EPOCH + 2 * DAY)  # +1000
        return pf, c

    pf, c = build(case)
    at_limit = StaticPortfolioUnrealised({pf: D("-20000")})  # not *above* −20,000
    report = service(portfolio_unrealised=at_limit).settle_weekly(MON1)
    (deferred,) = view.shares(c)
    assert (deferred.status, deferred.amount) == ("deferred", D("100"))
    assert "R-SET-6" in deferred.reason and report.deferred[0].reason == deferred.reason
    assert view.balance("person:1:spot") == 0

    # The follower stops copying: the event settles the copy despite the portfolio's loss.
    build(lambda s: s.stop(c, "stopped_by_follower", at=MON1 + DAY))
    service(portfolio_unrealised=at_limit).settle_copy(c, "stop_copy", at=MON1 + DAY)
    paid = view.shares(c)[-1]
    assert (paid.status, paid.amount) == ("paid", D("100"))
    assert view.balance("person:1:spot") == D("100")


def test_deferral_threshold_from_the_leaders_own_positions_R_SET_6(build, service, view):
    def case(s):
        pf = s.portfolio(mode="futures", ratio="0.1")
        c = s.copy(pf)
        s.fill(c, "BTCUSDT", "buy", "1", "60000", at=EPOCH + DAY)
        s.fill(c, "BTCUSDT", "sell", "1", "61000", at=EPOCH + 2 * DAY)  # copy: +1000, flat
        s.leader_fill(pf, "ETHUSDT", "buy", "100", "3000", at=EPOCH + DAY)  # leader keeps a long
        return c

    c = build(case)
    # 100 ETH bought at 3000, marked at 2800: −20,000 exactly → deferred
    service(marks=StaticMarks({"ETHUSDT": D("2800")})).settle_weekly(MON1)
    assert view.shares(c)[-1].status == "deferred"
    # the next week, marked at 2800.01: −19,999 → above the limit → paid
    service(marks=StaticMarks({"ETHUSDT": D("2800.01")})).settle_weekly(MON2)
    assert (view.shares(c)[-1].status, view.shares(c)[-1].amount) == (
        "paid",
        D("100"),
    )


def test_private_ratios_zero_and_thirty_percent_R_LEAD_5_R_SET_3(build, service, view):
    def case(s):
        out = []
        for ratio in ("0", "0.3"):
            c = s.copy(s.portfolio(mode="futures", visibility="private", ratio=ratio))
            s.fill(c, "BTCUSDT", "buy", "1", "60000", at=EPOCH + DAY)
            s.fill(c, "BTCUSDT", "sell", "1", "61000", at=EPOCH + 2 * DAY)  # +1000
            out.append(c)
        return out

    zero, thirty = build(case)
    before = view.transfers()
    service().settle_weekly(MON1)
    assert [(p.status, p.amount) for p in view.shares(zero)] == [("nothing_due", 0)]
    assert [(p.status, p.amount) for p in view.shares(thirty)] == [("paid", D("300"))]
    assert view.transfers() == before + 1  # only the 30 % share moved money


def test_shares_and_rebates_round_down_to_1e_8_R_SET_10(build, service, view):
    def case(s):
        a = s.copy(s.portfolio(mode="futures", visibility="private", ratio="0.3"))
        s.fill(a, "BTCUSDT", "sell", "0.001", "60000", realised="33.33333333", at=EPOCH + DAY)
        s.fill(a, "BTCUSDT", "buy", "0.001", "60000", realised="0", at=EPOCH + DAY)
        b = s.copy(s.portfolio(mode="spot", ratio="0.1"))
        s.fill(
            b,
            "BTCUSDT",
            "buy",
            "0.00000001",
            "10",
            fee="0.00000019",
            realised="0.00000038",
            at=EPOCH + DAY,
        )
        return a, b

    a, b = build(case)
    service().settle_weekly(MON1)
    # 33.33333333 × 0.3 = 9.999999999 → 9.99999999, never rounded up
    assert view.shares(a)[0].amount == D("9.99999999")
    # (0.00000038 − 0.00000019) × 0.1 = 0.000000019 → 0.00000001; rebate 0.000000019 → 0.00000001
    assert view.shares(b)[0].amount == D("0.00000001")
    assert view.payouts(copy_id=b, kind="rebate")[0].amount == D("0.00000001")


def test_rerunning_a_cycle_pays_nothing_R_SET_9(build, service, view):
    def case(s):
        c = s.copy(s.portfolio(mode="futures", ratio="0.1"))
        s.fill(c, "BTCUSDT", "buy", "1", "60000", fee="6", at=EPOCH + DAY)
        s.fill(c, "BTCUSDT", "sell", "1", "61000", fee="6.1", at=EPOCH + 2 * DAY)
        return c

    c = build(case)
    svc = service()
    first = svc.settle_weekly(MON1)
    transfers, rows, leader = (
        view.transfers(),
        len(view.payouts()),
        view.balance("person:1:spot"),
    )
    again = svc.settle_weekly(MON1 + 3 * DAY)  # same ISO week: the same cycle
    assert first.status == "completed" and again.status == "already_completed"
    assert again.shares_paid == 0 and again.copies_settled == 0
    assert (view.transfers(), len(view.payouts())) == (transfers, rows)
    assert view.balance("person:1:spot") == leader == D("98.79") + D("1.21")
    assert len(view.shares(c)) == 1


def test_rebates_paid_are_only_those_accrued_since_the_last_cycle_R_FEE_4(build, service, view):
    def fills(start, fee):
        def case(s):
            s.fill(copy_id, "BTCUSDT", "buy", "0.1", "60000", fee=fee, at=start + DAY)

        build(case)

    copy_id = build(lambda s: s.copy(s.portfolio(mode="spot", ratio="0.1"), allocation="20000"))
    svc = service()
    fills(EPOCH, "10")
    svc.settle_weekly(MON1)
    fills(MON1, "5")
    fills(MON1 + DAY, "0.03")
    svc.settle_weekly(MON2)
    svc.settle_weekly(MON3)  # nothing new
    got = [(p.cycle_id, p.amount) for p in view.payouts(copy_id=copy_id, kind="rebate")]
    assert [amount for _, amount in got] == [D("1"), D("0.503")]
