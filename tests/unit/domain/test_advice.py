"""R-COPY-9 advice shown to a follower who starts a copy: only what applies."""

from __future__ import annotations

from decimal import Decimal as D

from copytrade.domain.advice import copy_advice


def test_every_advice_applies_to_a_big_first_copy_of_a_new_leader_R_COPY_9():
    advice = copy_advice(
        history_days=12, allocation=D("500"), total_capital=D("1000"), leaders_followed=1
    )
    assert len(advice) == 4
    assert "12 days of history" in advice[0] and "at least 90 days" in advice[0]
    assert "50.00 % of your capital" in advice[1]
    assert "you follow 1 leader;" in advice[2]
    assert "about a month" in advice[3]


def test_no_advice_when_none_applies_R_COPY_9():
    assert (
        copy_advice(
            history_days=90, allocation=D("50"), total_capital=D("1000"), leaders_followed=3
        )
        == []
    )
    # exactly 5 % is within the advice; a hair above is not (shown rounded up)
    assert copy_advice(
        history_days=400, allocation=D("50.01"), total_capital=D("1000"), leaders_followed=4
    )[0].startswith("this copy is 5.01 %")
