"""Joining a portfolio (R-COPY-2 with R-ACC-2/3, R-LEAD-7/8/9) and copy settings (R-COPY-1/3/6/12, R-X-3)."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal as D

import pytest

from copytrade.domain.copies import (
    JoinRequest,
    check_join,
    default_slippage_limit_pct,
    slippage_limit_pct,
    validate_copy_settings,
)
from copytrade.domain.errors import RuleViolation

BASE = JoinRequest(
    follower_person_id=2,
    leader_person_id=1,
    portfolio_status="active",
    portfolio_listed=True,
    mode="futures",
    visibility="public",
    invitation_code=None,
    given_code=None,
    active_followers=10,
    follower_cap=200,
    allocation="1000",
    spot_balance=D("5000"),
    follower_active_copies=0,
)


def refused(request: JoinRequest) -> RuleViolation:
    with pytest.raises(RuleViolation) as err:
        check_join(request)
    return err.value


def test_join_with_free_place_and_balance_R_COPY_2():
    assert check_join(BASE) == D("1000")


def test_join_full_portfolio_refused_R_COPY_2_R_LEAD_7():
    assert refused(replace(BASE, active_followers=200)).rule == "R-LEAD-7"


def test_join_private_needs_valid_code_R_COPY_2():
    private = replace(BASE, visibility="private", invitation_code="K7Q2M9XA")
    err = refused(private)
    assert (err.field, err.rule) == ("invitation_code", "R-COPY-2")
    assert refused(replace(private, given_code="WRONG123")).rule == "R-COPY-2"
    assert check_join(replace(private, given_code="k7q2m9xa")) == D("1000")


def test_join_allocation_above_spot_balance_refused_R_COPY_2():
    err = refused(replace(BASE, allocation="5000.00000001"))
    assert (err.field, err.rule) == ("allocation", "R-COPY-2")
    assert check_join(replace(BASE, allocation="5000")) == D("5000")


@pytest.mark.parametrize("allocation", ["0", "-10", "9.99", "abc", "1.123456789"])
def test_join_bad_allocation_refused_R_COPY_2(allocation):
    assert refused(replace(BASE, allocation=allocation)).field == "allocation"


def test_join_eleventh_copy_refused_R_COPY_2_R_ACC_2():
    assert refused(replace(BASE, follower_active_copies=10)).rule == "R-ACC-2"


def test_join_own_portfolio_refused_R_COPY_2_R_ACC_3():
    assert refused(replace(BASE, follower_person_id=1)).rule == "R-ACC-3"


def test_join_closed_or_offline_or_already_copying_refused_R_COPY_2():
    assert refused(replace(BASE, portfolio_status="closed")).rule == "R-COPY-2"
    assert refused(replace(BASE, portfolio_listed=False)).rule == "R-LEAD-9"
    assert refused(replace(BASE, already_copying=True)).rule == "R-COPY-2"


def test_join_with_high_leverage_at_100k_aum_refused_R_COPY_2_R_LEAD_8():
    assert refused(replace(BASE, leverage=6, aum=D("99000"))).rule == "R-LEAD-8"
    assert check_join(replace(BASE, leverage=5, aum=D("99000"))) == D("1000")


def test_default_settings_R_COPY_1():
    s = validate_copy_settings("spot", D(1000))
    assert (s.sizing_mode, s.below_min_policy, s.leverage, s.symbols, s.close_only) == (
        "fixed_ratio",
        "skip",
        1,
        None,
        False,
    )


def test_fixed_amount_mode_needs_amount_within_allocation_R_COPY_1():
    s = validate_copy_settings("spot", D(1000), sizing_mode="fixed_amount", fixed_amount="200")
    assert s.fixed_amount == D(200)
    for kwargs in (
        {"sizing_mode": "fixed_amount"},
        {"sizing_mode": "fixed_amount", "fixed_amount": "2000"},
        {"fixed_amount": "5"},
        {"sizing_mode": "martingale"},
    ):
        with pytest.raises(RuleViolation) as err:
            validate_copy_settings("spot", D(1000), **kwargs)
        assert err.value.rule == "R-COPY-1"


@pytest.mark.parametrize("policy", ["skip", "round_up", "accumulate", "round-up"])
def test_below_minimum_policies_R_COPY_6(policy):
    assert validate_copy_settings(
        "spot", D(100), below_min_policy=policy
    ).below_min_policy == policy.replace("-", "_")


def test_unknown_below_minimum_policy_refused_R_COPY_6():
    with pytest.raises(RuleViolation) as err:
        validate_copy_settings("spot", D(100), below_min_policy="round_down")
    assert (err.value.field, err.value.rule) == ("below_min_policy", "R-COPY-6")


def test_stop_loss_and_take_profit_percent_R_COPY_3():
    s = validate_copy_settings("spot", D(100), stop_loss_pct="20%", take_profit_pct="50")
    assert (s.stop_loss_pct, s.take_profit_pct) == (D(20), D(50))
    for value in ("0", "-5", "101"):
        with pytest.raises(RuleViolation) as err:
            validate_copy_settings("spot", D(100), stop_loss_pct=value)
        assert err.value.rule == "R-COPY-3"


def test_leverage_1_to_10_for_futures_only_R_COPY_12():
    assert validate_copy_settings("futures", D(100), leverage="10x").leverage == 10
    for mode, lev in (("futures", 0), ("futures", 11), ("spot", 2), ("futures", "high")):
        with pytest.raises(RuleViolation) as err:
            validate_copy_settings(mode, D(100), leverage=lev)
        assert (err.value.field, err.value.rule) == ("leverage", "R-COPY-12")


def test_slippage_defaults_half_percent_for_btc_eth_else_one_and_half_R_COPY_12():
    s = validate_copy_settings("spot", D(100))
    assert slippage_limit_pct(s, "BTC") == D("0.5") and default_slippage_limit_pct("eth") == D(
        "0.5"
    )
    assert slippage_limit_pct(s, "XRP") == D("1.5")
    assert slippage_limit_pct(
        validate_copy_settings("spot", D(100), slippage_limit_pct="0.8"), "BTC"
    ) == D("0.8")
    with pytest.raises(RuleViolation):
        validate_copy_settings("spot", D(100), slippage_limit_pct="11")


def test_symbol_allow_list_and_max_cost_R_COPY_12():
    s = validate_copy_settings(
        "futures", D(100), symbols=["btc/usdt", "ETHUSDT", "BTC/USDT:USDT"], max_cost_per_order="50"
    )
    assert s.symbols == ("BTCUSDT", "ETHUSDT") and s.max_cost_per_order == D(50)
    with pytest.raises(RuleViolation) as err:
        validate_copy_settings("spot", D(100), symbols=["BTC USDT!"])
    assert err.value.rule == "R-COPY-12"
    with pytest.raises(RuleViolation):
        validate_copy_settings("spot", D(100), max_cost_per_order="0")


def test_daily_loss_limit_and_close_only_R_X_3():
    s = validate_copy_settings("spot", D(100), daily_loss_limit="25", close_only=True)
    assert (s.daily_loss_limit, s.close_only) == (D(25), True)
    with pytest.raises(RuleViolation) as err:
        validate_copy_settings("spot", D(100), daily_loss_limit="-1")
    assert err.value.rule == "R-X-3"
