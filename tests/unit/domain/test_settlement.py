"""Profit share formulas (R-SET-2 spot, R-SET-3 futures, R-SET-8 never refunded, R-SET-10 rounding)."""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from copytrade.domain.errors import RuleViolation
from copytrade.domain.money import round_down
from copytrade.domain.settlement import profit_share


def test_spot_share_is_ratio_of_realised_profit_R_SET_2():
    assert profit_share("spot", D("1000"), D("0"), D("0.1"), D("0")) == D("100")


def test_spot_share_ignores_unrealised_R_SET_2():
    assert profit_share("spot", D("1000"), D("5000"), D("0.1"), D("0")) == D("100")
    assert profit_share("spot", D("1000"), D("-5000"), D("0.1"), D("0")) == D("100")


def test_spot_share_subtracts_already_paid_R_SET_2():
    assert profit_share("spot", D("1500"), D("0"), D("0.1"), D("100")) == D("50")


def test_share_never_negative_after_loss_R_SET_2_R_SET_8():
    assert profit_share("spot", D("-300"), D("0"), D("0.1"), D("100")) == D("0")
    assert profit_share("spot", D("800"), D("0"), D("0.1"), D("100")) == D("0")


def test_futures_share_includes_unrealised_R_SET_3():
    assert profit_share("futures", D("1000"), D("500"), D("0.2"), D("0")) == D("300")
    assert profit_share("futures", D("1000"), D("-800"), D("0.1"), D("0")) == D("20")


def test_futures_share_zero_when_unrealised_loss_outweighs_R_SET_3():
    assert profit_share("futures", D("1000"), D("-1200"), D("0.3"), D("0")) == D("0")


def test_share_rounded_down_to_1e8_R_SET_2_R_SET_10():
    share = profit_share("spot", D("0.123456789"), D("0"), D("0.1"), D("0"))
    assert share == D("0.01234567")
    assert profit_share("futures", D("1"), D("0.00000002"), D("0.3"), D("0")) == D("0.30000000")
    assert profit_share("spot", D("1"), D("0"), D("0.33333333") / 2, D("0")) == D("0.16666666")


def test_share_result_has_eight_decimals_R_SET_10():
    assert profit_share("spot", D("10"), D("0"), D("0.1"), D("0")).as_tuple().exponent == -8


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("margin", D(1), D(0), D("0.1"), D(0)), "mode"),
        (("spot", D(1), D(0), D("0.31"), D(0)), "ratio"),
        (("spot", D(1), D(0), D("-0.01"), D(0)), "ratio"),
        (("spot", D(1), D(0), D("0.1"), D("-1")), "already_paid"),
        (("spot", 1.5, D(0), D("0.1"), D(0)), "realised_pnl"),
    ],
)
def test_bad_inputs_refused_with_field_R_SET_2_R_IN_2(args, field):
    with pytest.raises(RuleViolation) as err:
        profit_share(*args)
    assert err.value.field == field


money = st.decimals(
    min_value=D("-100000"), max_value=D("100000"), places=8, allow_nan=False, allow_infinity=False
)
ratios = st.decimals(min_value=D("0"), max_value=D("0.3"), places=4)


@settings(max_examples=300, deadline=None)
@given(
    mode=st.sampled_from(["spot", "futures"]),
    ratio=ratios,
    path=st.lists(st.tuples(money, money), min_size=1, max_size=30),
)
def test_cumulative_shares_over_any_pnl_path_R_SET_2_R_SET_3_R_SET_8_R_LED_5(mode, ratio, path):
    """Settle cycle after cycle over a random cumulative PnL path: never negative, never refunded,
    cumulative paid ≤ ratio × the highest profit basis reached (rounded down)."""
    paid = D(0)
    peak = D(0)
    for realised, unrealised in path:
        share = profit_share(mode, realised, unrealised, ratio, paid)
        assert share >= 0
        basis = realised if mode == "spot" else realised + unrealised
        peak = max(peak, basis)
        paid_before = paid
        paid += share
        assert paid >= paid_before  # R-SET-8: already paid only grows
        assert paid <= round_down(peak * ratio)  # R-LED-5
        if share > 0:  # a payment tops up exactly to the formula's rounded amount
            assert paid == round_down(basis * ratio)


@settings(max_examples=200, deadline=None)
@given(
    realised=money,
    unrealised=money,
    ratio=ratios,
    paid=st.decimals(min_value=D(0), max_value=D("50000"), places=8),
)
def test_share_never_exceeds_formula_R_SET_10(realised, unrealised, ratio, paid):
    for mode, basis in (("spot", realised), ("futures", realised + unrealised)):
        share = profit_share(mode, realised, unrealised, ratio, paid)
        assert D(0) <= share <= max(basis * ratio - paid, D(0))
        assert share == round_down(share)
