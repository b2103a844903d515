"""Account rules (R-ACC-1..3)."""

from __future__ import annotations

import pytest

from copytrade.domain.accounts import (
    check_copy_slots,
    check_leader_identity,
    check_not_own_portfolio,
)
from copytrade.domain.errors import RuleViolation


def test_first_portfolio_allowed_R_ACC_1():
    check_leader_identity("spot", "Alice", [])


def test_second_active_portfolio_in_same_mode_refused_R_ACC_1():
    with pytest.raises(RuleViolation) as err:
        check_leader_identity("spot", "Alice", [("spot", "Alice")])
    assert (err.value.field, err.value.rule) == ("mode", "R-ACC-1")


def test_other_mode_allowed_under_same_identity_R_ACC_1():
    check_leader_identity("futures", "Alice", [("spot", "Alice")])


def test_second_identity_refused_R_ACC_1():
    with pytest.raises(RuleViolation) as err:
        check_leader_identity("futures", "Bobby", [("spot", "Alice")])
    assert (err.value.field, err.value.rule) == ("nickname", "R-ACC-1")


@pytest.mark.parametrize(("active", "ok"), [(0, True), (9, True), (10, False), (11, False)])
def test_at_most_ten_active_copies_R_ACC_2(active, ok):
    if ok:
        check_copy_slots(active)
    else:
        with pytest.raises(RuleViolation) as err:
            check_copy_slots(active)
        assert err.value.rule == "R-ACC-2"


def test_cannot_copy_own_portfolio_R_ACC_3():
    check_not_own_portfolio(1, 2)
    with pytest.raises(RuleViolation) as err:
        check_not_own_portfolio(3, 3)
    assert err.value.rule == "R-ACC-3"
