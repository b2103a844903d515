"""Property: random PnL paths and orders of weekly and event settlements (R-SET-2/3/8/9, R-LED-5).

Each example is a fresh copy with a random week-by-week realised PnL and, at random points, a
profit withdrawal settled by event between weekly cycles, with random reruns of cycles already
done. Whatever the order, the leader ends with exactly ⌊ratio × the highest cumulative profit seen
at a settlement⌋, no payout is negative, reruns pay nothing, and the ledger validates.
"""

from __future__ import annotations

import itertools
from datetime import timedelta
from decimal import Decimal as D

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from copytrade.domain.money import round_down
from copytrade.settlement import SettlementService
from copytrade.validation import validate_ledger
from models import LeadPortfolio
from tests.support.settlement import EPOCH

WEEK, HOUR = timedelta(days=7), timedelta(hours=1)
_examples = itertools.count()

weeks = st.lists(
    st.tuples(
        st.integers(-800, 1200),  # the week's realised PnL, USDT
        st.booleans(),  # a profit withdrawal settles the copy by event mid-week
        st.booleans(),  # the weekly cycle is run twice
    ),
    min_size=1,
    max_size=6,
)


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(path=weeks, ratio=st.sampled_from(["0", "0.1", "0.13", "0.3"]))
def test_any_path_and_order_pays_the_ratio_of_the_peak_once_R_SET_8_R_SET_9_R_LED_5(
    build, session_maker, view, db_url, path, ratio
):
    example = next(_examples)
    start = EPOCH + WEEK * 12 * example  # each example has weeks (and weekly cycles) of its own
    portfolio = build(lambda s: s.portfolio(mode="futures", visibility="private", ratio=ratio))
    copy_id = build(lambda s: s.copy(portfolio, allocation="5000"))
    svc = SettlementService(session_maker, gate=None)  # the ledger is validated once at the end

    cumulative, peak_seen = D(0), D(0)
    for k, (pnl, withdraw, rerun) in enumerate(path):
        week = start + WEEK * k

        def trade(s, at=week + HOUR, pnl=pnl):
            s.fill(copy_id, "BTCUSDT", "buy", "1", "60000", at=at)
            s.fill(copy_id, "BTCUSDT", "sell", "1", str(60000 + pnl), at=at + HOUR)

        build(trade)
        cumulative += pnl
        if withdraw:
            svc.settle_copy(copy_id, "withdraw_profit", ref=f"w{example}-{k}", at=week + 3 * HOUR)
            peak_seen = max(peak_seen, cumulative)
        svc.settle_weekly(week + WEEK)
        peak_seen = max(peak_seen, cumulative)
        if rerun:
            before = view.transfers()
            assert svc.settle_weekly(week + WEEK + HOUR).status == "already_completed"
            assert view.transfers() == before

    shares = view.shares(copy_id)
    assert all(p.amount >= 0 for p in shares)
    paid = sum((p.amount for p in shares if p.status == "paid"), D(0))
    assert paid == round_down(D(ratio) * peak_seen)
    with session_maker() as session:
        leader = session.get(LeadPortfolio, portfolio).leader_person_id
    assert view.balance(f"person:{leader}:spot") == paid
    assert validate_ledger(db_url).passed
