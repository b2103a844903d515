"""Trading fees and the leader's rebate (R-FEE-1, R-FEE-2, R-SET-10)."""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from hypothesis import given
from hypothesis import strategies as st

from copytrade.domain.errors import RuleViolation
from copytrade.domain.fees import leader_rebate, trading_fee


def test_spec_example_100_usd_at_0_1_pct_R_FEE_2():
    fee = trading_fee(D("100"), D("0.001"))
    assert fee == D("0.1")
    assert leader_rebate(fee) == D("0.01")


def test_rebate_rounded_down_to_1e8_R_FEE_2_R_SET_10():
    assert leader_rebate(D("0.00000019")) == D("0.00000001")
    assert leader_rebate(D("0.00000009")) == D("0")
    assert leader_rebate(D("0.19955")) == D("0.019955")


def test_negative_fee_refused_R_FEE_2():
    with pytest.raises(RuleViolation) as err:
        leader_rebate(D("-0.1"))
    assert err.value.rule == "R-FEE-2" and err.value.field == "fee"


def test_float_fee_refused_R_FEE_2_R_IN_2():
    with pytest.raises(RuleViolation):
        leader_rebate(0.1)  # type: ignore[arg-type]


def test_trading_fee_rounds_down_and_refuses_bad_rate_R_FEE_1():
    assert trading_fee(D("199.55"), D("0.001")) == D("0.19955")
    assert trading_fee(D("0.00000999"), D("0.001")) == D("0")
    with pytest.raises(RuleViolation):
        trading_fee(D("100"), D("1.5"))
    with pytest.raises(RuleViolation):
        trading_fee(D("-1"), D("0.001"))


@given(st.decimals(min_value=D(0), max_value=D("1000000"), places=8))
def test_rebate_is_ten_percent_of_fee_to_rounding_R_FEE_2_R_LED_6(fee):
    rebate = leader_rebate(fee)
    assert D(0) <= fee / 10 - rebate < D("0.00000001")
