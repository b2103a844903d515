"""Fees in the bought coin, funding, and the copy's result for stops, hand-computed, on SQLite and
PostgreSQL, gated by the real checkpoint (R-SET-2/3, R-SET-10, R-COPY-3)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal as D

from copytrade.domain.copy_funds import copy_stop_hit
from copytrade.domain.triggers import Trigger
from copytrade.ledger import Ledger
from copytrade.platform.copy_statement import copy_results
from copytrade.settlement import StaticMarks
from copytrade.settlement.funding import funding_transfer
from tests.support.settlement import EPOCH

DAY = timedelta(days=1)
MON1, MON2 = EPOCH + 7 * DAY, EPOCH + 14 * DAY


def test_spot_share_with_the_fee_in_the_bought_coin_R_SET_2_R_SET_10(build, service, view):
    def case(s):
        c = s.copy(s.portfolio(mode="spot", ratio="0.1"), allocation="1000")
        # buy 0.01 BTC at 60,000 paying 0.00001 BTC: 0.00999 BTC arrive; sell them at 70,000
        s.fill(c, "BTCUSDT", "buy", "0.01", "60000", fee="0.00001", fee_asset="BTC", at=EPOCH + DAY)
        s.fill(c, "BTCUSDT", "sell", "0.00999", "70000", fee="0.6993", at=EPOCH + 2 * DAY)
        return c

    c = build(case)
    service().settle_weekly(MON1)
    (share,) = view.shares(c)
    # realised (average cost) 0.00999 × 10,000 = 99.9; fees 0.6993 USDT + 0.00001 BTC × 60,000
    # = 0.6 USDT → basis 98.6007 = exactly the cash gained (1,000 − 600 + 699.3 − 0.6993 − 1,000)
    assert (share.status, share.profit_basis, share.amount) == ("paid", D("98.6007"), D("9.86007"))
    assert view.balance(f"follower:{c}:cash") == D("1098.6007") - D("9.86007")
    # the BTC fee's rebate is paid in BTC (R-FEE-2): 10 % of 0.00001
    rebates = {p.asset: p.amount for p in view.payouts(copy_id=c, kind="rebate")}
    assert rebates == {"BTC": D("0.000001"), "USDT": D("0.06993")}


def test_futures_share_counts_funding_up_to_the_cycle_R_SET_3(build, service, view):
    def case(s):
        c = s.copy(s.portfolio(mode="futures", ratio="0.1"), allocation="1000")
        s.fill(c, "BTCUSDT", "buy", "1", "60000", fee="6", at=EPOCH + DAY)
        s.fill(c, "BTCUSDT", "sell", "1", "61000", fee="6.1", at=EPOCH + 3 * DAY)  # +1,000
        Ledger(s.session).post_many(
            [
                funding_transfer(
                    copy_id=c, venue="paper", exchange_id=ref, asset="USDT", amount=D(amount), at=at
                )
                for ref, amount, at in (
                    ("f1", "-15.5", EPOCH + DAY + timedelta(hours=8)),  # paid
                    ("f2", "3.25", EPOCH + 2 * DAY),  # received
                    ("f3", "-100", MON1 + DAY),  # after the cycle's instant: not this cycle
                )
            ]
        )
        return c

    c = build(case)
    service().settle_weekly(MON1)
    (share,) = view.shares(c)
    # basis = 1,000 realised − 12.1 fees − 15.5 + 3.25 funding = 975.65; share 97.565
    assert (share.status, share.realised, share.amount) == ("paid", D("975.65"), D("97.565"))
    service().settle_weekly(MON2)
    # the next week counts the 100 paid: basis 875.65 < 975.65 already shared: nothing due
    assert [(p.status, p.profit_basis) for p in view.shares(c)][1] == ("nothing_due", D("875.65"))


def test_stop_loss_result_includes_shares_paid_R_COPY_3(build, service, session_maker):
    def week1(s):
        c = s.copy(s.portfolio(mode="futures", ratio="0.1"), allocation="1000")
        s.fill(c, "BTCUSDT", "buy", "1", "60000", at=EPOCH + DAY)
        s.fill(c, "BTCUSDT", "sell", "1", "60200", at=EPOCH + 2 * DAY)  # +200
        return c

    c = build(week1)
    service().settle_weekly(MON1)  # share 10 % × 200 = 20 paid to the leader
    build(lambda s: s.fill(c, "BTCUSDT", "buy", "1", "60000", at=MON1 + DAY))
    marks = StaticMarks({"BTCUSDT": D("59620")})  # unrealised 1 × (59,620 − 60,000) = −380
    with session_maker() as session:
        result = copy_results(session, [c], MON1 + 2 * DAY, marks)[c]
    # 200 realised − 380 unrealised − 20 share paid = −200: the 20 % stop-loss of 1,000 fires;
    # without the share (−180) it would not
    assert result == D("-200")
    assert copy_stop_hit(result, D("1000"), D("20"), None) == (Trigger.STOP_LOSS, D("-200"))
    assert copy_stop_hit(result + 20, D("1000"), D("20"), None) is None
    with session_maker() as session:
        assert copy_results(session, [c], MON1 + 2 * DAY, StaticMarks({}))[c] is None  # no mark
