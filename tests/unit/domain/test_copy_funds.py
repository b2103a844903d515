"""A running copy's money rules: add funds, withdrawable profit, the result for stops (pure)."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from copytrade.domain.copy_funds import (
    check_add_funds,
    check_withdrawal,
    copy_stop_hit,
    result_after_fees_and_shares,
    withdrawable_profit,
)
from copytrade.domain.errors import RuleViolation
from copytrade.domain.triggers import Trigger


@pytest.mark.parametrize(
    ("cash", "principal", "equity", "margin", "outstanding", "expected"),
    [
        # spot, flat: cash 1,100 on a principal of 1,000 → the 100 of profit
        ("1100", "1000", "1100", "0", "0", "100"),
        # an unrealised loss of 40 lowers it: equity 1,060
        ("1100", "1000", "1060", "0", "0", "60"),
        # an unrealised gain does not add beyond the cash: min(1,100 − 300 margin, 1,300 − 1,000)
        ("1100", "1000", "1300", "300", "0", "300"),
        # margin in use caps it: min(1,100 − 1,050, 100) = 50
        ("1100", "1000", "1100", "1050", "0", "50"),
        # a paused share (R-SET-7) stays for the leader: 100 − 30
        ("1100", "1000", "1100", "0", "30", "70"),
        # below the principal: nothing
        ("900", "1000", "900", "0", "0", "0"),
        # rounded down to 1e-8
        ("1000.123456789", "1000", "1000.123456789", "0", "0", "0.12345678"),
    ],
)
def test_withdrawable_is_profit_above_principal_after_share_and_margin_R_SET_5(
    cash, principal, equity, margin, outstanding, expected
):
    got = withdrawable_profit(
        cash=D(cash),
        principal=D(principal),
        equity=D(equity),
        margin_in_use=D(margin),
        share_outstanding=D(outstanding),
    )
    assert got == D(expected)


def test_withdrawal_amount_defaults_to_all_and_never_exceeds_it_R_SET_5_R_IN_2():
    assert check_withdrawal(None, D("89.55")) == D("89.55")
    assert check_withdrawal("50", D("89.55")) == D("50")
    for bad in ("89.56", "0", "-1", "abc", "1.000000001", 1.5):
        with pytest.raises(RuleViolation) as err:
            check_withdrawal(bad, D("89.55"))
        assert (err.value.field, err.value.rule) == ("amount", "R-SET-5")
    with pytest.raises(RuleViolation, match="withdrawable profit is 0"):
        check_withdrawal(None, D("0"))


def test_add_funds_within_the_spot_balance_to_an_active_copy_R_COPY_2():
    assert check_add_funds("200", D("300"), "active") == D("200")
    assert check_add_funds("1,000", D("1000"), "active") == D("1000")
    for bad in ("301", "0.5", "-3", "x"):
        with pytest.raises(RuleViolation) as err:
            check_add_funds(bad, D("300"), "active")
        assert (err.value.field, err.value.rule) == ("amount", "R-COPY-2")
    with pytest.raises(RuleViolation) as err:
        check_add_funds("10", D("300"), "stopped")
    assert (err.value.field, err.value.rule) == ("copy_id", "R-COPY-5")


def test_result_after_fees_and_shares_and_the_thresholds_R_COPY_3():
    # 200 realised − 12 fees − 5 funding paid − 380 unrealised − 20 shares = −217
    result = result_after_fees_and_shares(
        realised=D("200"), fees=D("12"), funding=D("-5"), unrealised=D("-380"), shares_paid=D("20")
    )
    assert result == D("-217")
    assert copy_stop_hit(result, D("1000"), D("20"), D("50")) == (Trigger.STOP_LOSS, D("-200"))
    assert copy_stop_hit(D("-199.99"), D("1000"), D("20"), D("50")) is None
    assert copy_stop_hit(D("500"), D("1000"), D("20"), D("50")) == (Trigger.TAKE_PROFIT, D("500"))
    assert copy_stop_hit(D("-1000"), D("1000"), None, None) is None
