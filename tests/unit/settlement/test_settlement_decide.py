"""Pure settlement decisions: shares, pauses, deferrals, rebates, rounding (R-SET-2…10, R-FEE-3/4)."""

from __future__ import annotations

from decimal import Decimal as D
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from copytrade.domain.fees import leader_rebate
from copytrade.domain.money import round_down
from copytrade.domain.settlement import profit_share
from copytrade.settlement.decide import CopyFacts, decide_share, portfolio_deferral, rebates_to_pay


def facts(**kw) -> CopyFacts:
    base = dict(
        copy_id=1,
        portfolio_id=1,
        leader_person_id=1,
        mode="futures",
        ratio=D("0.1"),
        asset="USDT",
        balance=D(10**9),
    )
    return CopyFacts(**{**base, **kw})


def test_spot_basis_is_realised_after_fees_unrealised_ignored_R_SET_2():
    share = decide_share(facts(mode="spot", realised=D(100), fees=D("1.55"), unrealised=D(5000)))
    assert (share.status, share.amount, share.basis, share.unrealised) == (
        "paid",
        D("9.845"),
        D("98.45"),
        None,
    )


def test_futures_basis_adds_unrealised_R_SET_3():
    share = decide_share(facts(realised=D(1000), fees=D("9.1"), unrealised=D(500)))
    assert (share.amount, share.basis) == (D("149.09"), D("1490.9"))


def test_missing_mark_defers_without_touching_the_peak_R_SET_3():
    share = decide_share(facts(realised=D(1000), missing_marks=("BTCUSDT",), peak_profit=D(7)))
    assert (share.status, share.basis, share.peak_after) == ("deferred", None, D(7))
    assert "BTCUSDT" in share.reason


def test_balance_below_the_share_pauses_it_R_SET_7():
    share = decide_share(facts(realised=D(1000), balance=D("99.99999999")))
    assert (share.status, share.amount) == ("paused", D(100)) and "R-SET-7" in share.reason
    assert decide_share(facts(realised=D(1000), balance=D(100))).status == "paid"


def test_deferral_reason_wins_over_a_pause_and_nothing_due_wins_over_both_R_SET_6():
    assert decide_share(facts(realised=D(1000), balance=D(0)), "R-SET-6 …").status == "deferred"
    assert decide_share(facts(realised=D(-5)), "R-SET-6 …").status == "nothing_due"


def test_portfolio_deferral_only_above_minus_20000_settles_R_SET_6():
    assert portfolio_deferral("futures", D("-20000")) is not None
    assert portfolio_deferral("futures", D("-19999.99999999")) is None
    assert portfolio_deferral("futures", None) is not None  # unknown: never assume it is fine
    assert portfolio_deferral("spot", D("-1000000000")) is None


def test_rebates_pay_only_positive_dues_per_asset_R_FEE_4():
    f = facts(rebates_due={"USDT": D("0.5"), "BNB": D("0"), "BTC": D("-0.00000001")})
    assert rebates_to_pay(f) == {"USDT": D("0.5")}


def test_rebate_is_ten_percent_rounded_down_R_FEE_2_R_SET_10():
    assert leader_rebate(D("0.10")) == D("0.01")  # SPEC: 100 USD at 0.1 % → 0.10 → 0.01
    assert leader_rebate(D("0.00000019")) == D("0.00000001")


pnl = st.decimals(
    min_value=D(-(10**6)), max_value=D(10**6), places=8, allow_nan=False, allow_infinity=False
)
ratios = st.integers(0, 30).map(lambda r: D(r) / 100)


@settings(max_examples=300, deadline=None)
@given(path=st.lists(pnl, min_size=1, max_size=30), ratio=ratios)
def test_paid_total_is_the_ratio_of_the_peak_and_never_shrinks_R_SET_8_R_LED_5(path, ratio):
    """Property: settle a random cumulative-PnL path; paid = ⌊ratio × max(0, peak)⌋ and only grows."""
    paid, peak = D(0), D(0)
    for k, basis in enumerate(path):
        share = decide_share(facts(realised=basis, ratio=ratio, share_paid=paid, peak_profit=peak))
        assert share.amount >= 0
        if share.status == "paid":
            paid += share.amount
        peak = share.peak_after
        assert paid <= ratio * peak  # R-LED-5
        assert paid == round_down(ratio * max(D(0), max(path[: k + 1])))
    exact = Fraction(ratio) * Fraction(max(D(0), max(path)))
    assert (
        Fraction(paid) <= exact < Fraction(paid) + Fraction(1, 10**8)
    )  # R-SET-10: down, by < 1e-8


@settings(max_examples=200, deadline=None)
@given(
    realised=pnl,
    unrealised=pnl,
    ratio=ratios,
    paid=st.decimals(min_value=0, max_value=10**5, places=8),
)
def test_decision_uses_the_domain_formula_R_SET_2_R_SET_3(realised, unrealised, ratio, paid):
    for mode in ("spot", "futures"):
        share = decide_share(
            facts(mode=mode, realised=realised, unrealised=unrealised, ratio=ratio, share_paid=paid)
        )
        assert share.amount == profit_share(mode, realised, unrealised, ratio, paid)
