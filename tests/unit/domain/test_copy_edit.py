"""Editing a running copy's settings: every setting checked again, fixed fields refused (R-COPY-12)."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from copytrade.domain.copies import (
    FIXED_AMOUNT,
    changed_settings,
    edit_copy_settings,
    validate_copy_settings,
)
from copytrade.domain.errors import RuleViolation

CURRENT = validate_copy_settings(
    "futures", D("1000"), stop_loss_pct="30", leverage=3, symbols=["BTCUSDT"]
)


def test_edit_applies_changes_and_lists_them_R_COPY_12():
    after = edit_copy_settings(
        "futures",
        D("1000"),
        CURRENT,
        {"stop_loss_pct": "20%", "leverage": "5x", "slippage_limit_pct": "0.8"},
    )
    assert (after.stop_loss_pct, after.leverage, after.slippage_limit_pct) == (D(20), 5, D("0.8"))
    assert after.symbols == ("BTCUSDT",)  # untouched
    assert changed_settings(CURRENT, after) == {
        "stop_loss_pct": ["30", "20"],
        "slippage_limit_pct": [None, "0.8"],
        "leverage": ["3", "5"],
    }


def test_off_clears_optional_settings_only_R_COPY_12():
    after = edit_copy_settings(
        "futures", D("1000"), CURRENT, {"stop_loss_pct": "off", "symbols": ["OFF"]}
    )
    assert (after.stop_loss_pct, after.symbols) == (None, None)
    with pytest.raises(RuleViolation) as err:
        edit_copy_settings("futures", D("1000"), CURRENT, {"leverage": "off"})
    assert (err.value.field, err.value.rule) == ("leverage", "R-IN-2")


@pytest.mark.parametrize(
    ("changes", "field", "rule"),
    [
        ({}, "settings", "R-IN-2"),
        ({"leverage": None}, "settings", "R-IN-2"),
        ({"leverage": 3}, "settings", "R-IN-2"),  # already so
        ({"sizing_mode": FIXED_AMOUNT}, "sizing_mode", "R-IN-2"),
        ({"fixed_amount": "10"}, "fixed_amount", "R-IN-2"),
        ({"leverage": 11}, "leverage", "R-COPY-12"),
        ({"take_profit_pct": "0"}, "take_profit_pct", "R-COPY-3"),
        ({"max_cost_per_order": "1.5x"}, "max_cost_per_order", "R-COPY-12"),
        ({"symbols": ["BTC USDT!"]}, "symbols", "R-COPY-12"),
    ],
)
def test_bad_edits_are_refused_naming_field_and_rule_R_IN_2(changes, field, rule):
    with pytest.raises(RuleViolation) as err:
        edit_copy_settings("futures", D("1000"), CURRENT, changes)
    assert (err.value.field, err.value.rule) == (field, rule)


def test_spot_copy_leverage_stays_one_R_COPY_12():
    spot = validate_copy_settings("spot", D("500"))
    with pytest.raises(RuleViolation) as err:
        edit_copy_settings("spot", D("500"), spot, {"leverage": 2})
    assert (err.value.field, err.value.rule) == ("leverage", "R-COPY-12")
