"""Cycle keys and instants: the weekly cycle is Monday 00:00 UTC, named by ISO week (R-SET-4/5/9)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from copytrade.domain.errors import RuleViolation
from copytrade.domain.triggers import Trigger, parse_trigger, stop_reason
from copytrade.settlement.cycles import (
    EVENT_TRIGGERS,
    FINAL_TRIGGERS,
    event_cycle,
    parse_week,
    trigger_for_stop_reason,
    weekly_cycle,
)


def test_every_instant_of_a_week_names_the_same_weekly_cycle_R_SET_4_R_SET_9():
    monday = datetime(2025, 1, 13, tzinfo=UTC)
    for offset in (
        timedelta(0),
        timedelta(days=3, hours=5),
        timedelta(days=7) - timedelta(microseconds=1),
    ):
        spec = weekly_cycle(monday + offset)
        assert (spec.key, spec.as_of, spec.kind) == ("weekly:2025-W03", monday, "weekly")
    assert weekly_cycle(monday - timedelta(microseconds=1)).key == "weekly:2025-W02"


def test_weekly_cycle_is_computed_in_utc_R_SET_4():
    # Monday 01:00 in UTC+3 is still Sunday 22:00 UTC: the previous week's cycle
    at = datetime(2025, 1, 13, 1, tzinfo=timezone(timedelta(hours=3)))
    assert weekly_cycle(at).key == "weekly:2025-W02"
    assert parse_week("2025-W03") == datetime(2025, 1, 13, tzinfo=UTC)
    assert weekly_cycle(parse_week("2026-W01")).key == "weekly:2026-W01"


def test_event_keys_and_refusals_R_SET_5_R_IN_2():
    at = datetime(2025, 1, 15, 12, tzinfo=UTC)
    assert event_cycle(7, "stop_loss", at).key == "event:stop_loss:copy:7"
    assert event_cycle(7, "withdraw_profit", at, "w-1").key == "event:withdraw_profit:copy:7:w-1"
    assert (
        event_cycle(7, "stop_copy", at).is_final
        and not event_cycle(7, "withdraw_profit", at).is_final
    )
    for kwargs, field in (
        ({"copy_id": 7, "trigger": "weekly", "at": at}, "trigger"),
        ({"copy_id": 0, "trigger": "stop_copy", "at": at}, "copy"),
        ({"copy_id": 7, "trigger": "stop_copy", "at": at, "ref": "x"}, "ref"),
        ({"copy_id": 7, "trigger": "withdraw_profit", "at": at, "ref": "no spaces"}, "ref"),
        ({"copy_id": 7, "trigger": "stop_copy", "at": datetime(2025, 1, 1)}, "at"),
    ):
        with pytest.raises(RuleViolation) as err:
            event_cycle(**kwargs)
        assert err.value.field == field
    with pytest.raises(RuleViolation):
        parse_week("2025-03")


def test_stop_reasons_map_to_triggers_R_COPY_3_R_LEAD_10():
    assert trigger_for_stop_reason("portfolio_closed") == "portfolio_closed"
    assert trigger_for_stop_reason("stop_loss") == "stop_loss"
    assert trigger_for_stop_reason("stopped_by_follower") == "stop_copy"
    assert trigger_for_stop_reason(None) == "stop_copy"


def test_engine_stop_reasons_with_detail_settle_as_their_trigger_R_COPY_3_R_SET_5():
    """The engine writes "<trigger>: <detail>"; settlement names the cycle after that trigger."""
    at = datetime(2025, 1, 15, 12, tzinfo=UTC)
    for trigger in (Trigger.STOP_LOSS, Trigger.TAKE_PROFIT, Trigger.STOP_COPY):
        reason = stop_reason(trigger, "cumulative PnL -201.5 (threshold -200)")
        assert reason.startswith(f"{trigger.value}: ")
        spec = event_cycle(7, trigger_for_stop_reason(reason), at)
        assert spec.key == f"event:{trigger.value}:copy:7" and spec.is_final
    # the engine's literal format, as written by copytrade.engine.core.stop_copy
    assert (
        trigger_for_stop_reason("stop_loss: cumulative PnL -32.87 (threshold -30)") == "stop_loss"
    )
    assert trigger_for_stop_reason("take_profit: cumulative PnL 51 (threshold 50)") == "take_profit"
    # a reason naming no final trigger is a plain stop; withdraw_profit never stops a copy
    assert trigger_for_stop_reason("operator: account closed") == "stop_copy"
    assert trigger_for_stop_reason("withdraw_profit") == "stop_copy"
    with pytest.raises(RuleViolation) as err:
        stop_reason(Trigger.WITHDRAW_PROFIT)
    assert err.value.rule == "R-SET-5"


def test_trigger_vocabulary_is_the_settlement_vocabulary_R_SET_5():
    assert set(EVENT_TRIGGERS) == {t.value for t in Trigger}
    assert set(FINAL_TRIGGERS) == {"stop_copy", "stop_loss", "take_profit", "portfolio_closed"}
    with pytest.raises(RuleViolation) as err:
        parse_trigger("stop-loss")
    assert (err.value.field, err.value.rule) == ("trigger", "R-SET-5")
