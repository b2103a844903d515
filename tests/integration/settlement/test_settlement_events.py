"""Event triggers of settlement (R-SET-5, R-LEAD-10, R-COPY-3/5) on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal as D

import pytest
from sqlalchemy import select

from copytrade.domain.errors import RuleViolation
from copytrade.settlement import StaticMarks
from models import Copy, CopySettlementState, CopyStopEvent, LeadPortfolio, SettlementCycle
from tests.support.settlement import EPOCH

DAY = timedelta(days=1)
MON1 = EPOCH + timedelta(days=7)


def profitable_copy(s, portfolio_id, gain="1000", at=EPOCH + DAY):
    c = s.copy(portfolio_id)
    s.fill(c, "BTCUSDT", "buy", "1", "60000", at=at)
    s.fill(c, "BTCUSDT", "sell", "1", str(60000 + int(gain)), at=at + timedelta(hours=1))
    return c


def test_stopping_a_copy_settles_it_finally_and_weekly_skips_it_R_SET_5_R_COPY_5(
    build, service, view, session_maker
):
    def case(s):
        pf = s.portfolio(mode="futures", ratio="0.1")
        c = profitable_copy(s, pf)
        s.stop(c, "stopped_by_follower", at=EPOCH + 2 * DAY)
        return c

    c = build(case)
    report = service().settle_copy(c, "stop_copy", at=EPOCH + 2 * DAY)
    assert report.cycle_keys == [f"event:stop_copy:copy:{c}"]
    assert [(p.status, p.amount) for p in view.shares(c)] == [("paid", D("100"))]
    with session_maker() as session:
        state = session.get(CopySettlementState, (c, "USDT"))
        cycle = session.scalar(
            select(SettlementCycle).where(SettlementCycle.cycle_key == report.cycle_keys[0])
        )
    assert state.final_cycle_id == cycle.id and cycle.status == "completed"
    # the rest of the copy's cash goes back to the follower: 1000 + 1000 − 100
    assert view.balance(f"follower:{c}:cash") == 0
    assert view.balance(f"person:{follower_of(session_maker, c)}:spot") == D("1900")
    assert state.cash_released_at is not None
    service().settle_weekly(MON1)
    assert len(view.shares(c)) == 1  # the stopped, finally settled copy is out of the weekly scope


def follower_of(session_maker, copy_id: int) -> int:
    with session_maker() as session:
        return session.get(Copy, copy_id).follower_person_id


def test_open_position_keeps_a_stopped_copys_cash_until_closed_R_SET_5(
    build, service, view, session_maker
):
    def case(s):
        c = s.copy(s.portfolio(mode="futures", ratio="0.1"))
        s.fill(c, "BTCUSDT", "buy", "1", "60000", at=EPOCH + DAY)
        s.stop(c, "stop_loss", at=EPOCH + 2 * DAY)
        return c

    c = build(case)
    marks = StaticMarks({"BTCUSDT": D("61000")})
    report = service(marks=marks).settle_pending_events(at=EPOCH + 2 * DAY)
    assert view.shares(c)[0].amount == D("100")  # unrealised +1000 at the mark
    assert [line.reason for line in report.held] == [
        "the copy's cash stays until its open positions are closed: BTCUSDT"
    ]
    assert view.balance(f"follower:{c}:cash") == D("900")
    # the engine closes the position; the next weekly run hands the cash back
    build(lambda s: s.fill(c, "BTCUSDT", "sell", "1", "61000", at=EPOCH + 3 * DAY))
    report = service(marks=marks).settle_weekly(MON1)
    assert view.shares(c)[-1].status == "nothing_due"
    assert report.cash_returned == {"USDT": D("1900")}
    assert view.balance(f"person:{follower_of(session_maker, c)}:spot") == D("1900")


def test_closed_portfolio_capital_goes_back_to_the_leader_once_flat_R_LEAD_10(
    build, service, view, session_maker
):
    def case(s):
        pf = s.portfolio(mode="futures", ratio="0.1", capital="5000")
        s.leader_fill(pf, "ETHUSDT", "buy", "1", "3000", at=EPOCH + DAY)
        s.close_portfolio(pf, at=EPOCH + 2 * DAY)
        return pf

    pf = build(case)
    with session_maker() as session:
        leader = session.get(LeadPortfolio, pf).leader_person_id
    report = service().settle_pending_events(at=EPOCH + 2 * DAY)
    assert report.held[0].kind == "capital_release" and "ETHUSDT" in report.held[0].reason
    assert view.balance(f"leader:{pf}:capital") == D("5000")
    build(lambda s: s.leader_fill(pf, "ETHUSDT", "sell", "1", "3100", at=EPOCH + 3 * DAY))
    report = service().settle_weekly(MON1)
    assert report.capital_returned == {"USDT": D("5000")}
    assert view.balance(f"person:{leader}:spot") == D("5000")
    assert service().settle_weekly(MON1 + timedelta(days=7)).capital_returned == {}


def test_final_trigger_on_an_active_copy_is_refused_and_changes_nothing_R_IN_2(
    build, service, view
):
    c = build(lambda s: profitable_copy(s, s.portfolio(mode="futures")))
    transfers = view.transfers()
    with pytest.raises(RuleViolation, match="still active") as err:
        service().settle_copy(c, "stop_loss")
    assert err.value.field == "trigger" and err.value.rule == "R-SET-5"
    with pytest.raises(RuleViolation, match="trigger is one of"):
        service().settle_copy(c, "because")
    assert view.transfers() == transfers and view.payouts() == []


def test_closing_a_portfolio_settles_every_copy_of_it_R_LEAD_10(
    build, service, view, session_maker
):
    def case(s):
        closing = s.portfolio(mode="futures", ratio="0.1")
        other = s.portfolio(mode="futures", ratio="0.1")
        copies = [profitable_copy(s, closing, gain=g) for g in ("1000", "2000", "-500")]
        untouched = profitable_copy(s, other)
        s.close_portfolio(closing, at=EPOCH + 3 * DAY)
        return copies, untouched

    copies, untouched = build(case)
    report = service().settle_pending_events(at=EPOCH + 3 * DAY)
    assert sorted(report.cycle_keys) == sorted(f"event:portfolio_closed:copy:{c}" for c in copies)
    got = [(view.shares(c)[0].status, view.shares(c)[0].amount) for c in copies]
    assert got == [("paid", D("100")), ("paid", D("200")), ("nothing_due", D("0"))]
    assert view.shares(untouched) == []
    again = service().settle_pending_events(at=EPOCH + 4 * DAY)
    assert again.status == "nothing_to_do"
    assert stop_events(session_maker, [*copies, untouched]) == {
        c: ("portfolio_closed", True) for c in copies
    }


def stop_events(session_maker, copy_ids) -> dict:
    """copy id → (trigger, whether settlement marked it settled) of the copies' stop events."""
    with session_maker() as session:
        rows = session.execute(
            select(CopyStopEvent.copy_id, CopyStopEvent.trigger, CopyStopEvent.settled_at).where(
                CopyStopEvent.copy_id.in_(copy_ids)
            )
        )
        return {cid: (trigger, settled is not None) for cid, trigger, settled in rows}


def test_stop_loss_stop_settles_with_the_stop_loss_trigger_and_marks_its_event_R_COPY_3(
    build, service, view, session_maker
):
    def case(s):
        c = profitable_copy(s, s.portfolio(mode="futures", ratio="0.1"), gain="300")
        s.stop(c, "stop_loss", at=EPOCH + 2 * DAY)
        return c

    c = build(case)
    report = service().settle_pending_events(at=EPOCH + 2 * DAY)
    assert report.cycle_keys == [f"event:stop_loss:copy:{c}"]
    assert view.shares(c)[0].amount == D("30")
    assert stop_events(session_maker, [c]) == {c: ("stop_loss", True)}


def test_each_profit_withdrawal_settles_once_R_SET_5_R_SET_9(build, service, view):
    pf = build(lambda s: s.portfolio(mode="futures", ratio="0.1"))
    c = build(lambda s: profitable_copy(s, pf))
    svc = service()
    svc.settle_copy(c, "withdraw_profit", ref="w-1", at=EPOCH + 2 * DAY)
    build(lambda s: s.fill(c, "BTCUSDT", "buy", "1", "60000", at=EPOCH + 3 * DAY))
    build(lambda s: s.fill(c, "BTCUSDT", "sell", "1", "60500", at=EPOCH + 3 * DAY))
    svc.settle_copy(c, "withdraw_profit", ref="w-2", at=EPOCH + 4 * DAY)
    repeat = svc.settle_copy(c, "withdraw_profit", ref="w-2", at=EPOCH + 5 * DAY)
    assert repeat.status == "already_completed"
    assert [(p.status, p.amount) for p in view.shares(c)] == [("paid", D("100")), ("paid", D("50"))]
    # a withdrawal is not final: the copy stays in the weekly scope
    service().settle_weekly(MON1)
    assert view.shares(c)[-1].status == "nothing_due"


@pytest.mark.parametrize("trigger", ["stop_loss", "take_profit"])
def test_engine_stop_reason_settles_as_its_trigger_once_R_COPY_3_R_SET_5_R_SET_9(
    build, service, view, trigger
):
    """The engine writes "<trigger>: <detail>"; the event entry point settles the copy as that
    trigger, and delivering the event again pays nothing twice."""

    def case(s):
        c = profitable_copy(s, s.portfolio(mode="futures", ratio="0.1"))
        s.stop(c, f"{trigger}: cumulative PnL 1000 (threshold 500)", at=EPOCH + 2 * DAY)
        return c

    c = build(case)
    report = service().settle_event(c, at=EPOCH + 2 * DAY)
    assert report.cycle_keys == [f"event:{trigger}:copy:{c}"]
    assert [(p.status, p.amount) for p in view.shares(c)] == [("paid", D("100"))]
    transfers = view.transfers()
    again = service().settle_event(c, at=EPOCH + 3 * DAY)
    assert again.status == "already_completed" and again.copies_settled == 0
    assert view.transfers() == transfers
    # the pending-events sweep and the weekly run find nothing left to settle either
    assert service().settle_pending_events(EPOCH + 3 * DAY).copies_settled == 0
    assert len(view.shares(c)) == 1


def test_event_entry_point_needs_a_trigger_for_a_live_copy_R_SET_5(build, service, view):
    c = build(lambda s: profitable_copy(s, s.portfolio(mode="futures")))
    with pytest.raises(RuleViolation) as err:
        service().settle_event(c)
    assert (err.value.field, err.value.rule) == ("trigger", "R-SET-5")
    with pytest.raises(RuleViolation) as err:
        service().settle_event(999)
    assert (err.value.field, err.value.rule) == ("copy", "R-SET-1")
    assert view.payouts() == []


def test_settle_event_automation_matches_the_stop_event_and_names_the_copy_R_SET_5():
    """The trigger declared with the settle-event deployment (created by `prefect deploy`, so by
    `copytrade up`) matches the event a stop emits and renders the copy id as the run's parameter."""
    from pathlib import Path

    import jinja2
    import yaml
    from prefect.events import Event
    from prefect.events.schemas.deployment_triggers import DeploymentEventTrigger

    from copytrade.config import PROJECT_ROOT
    from copytrade.settlement.events import copy_stopped_event

    spec = yaml.safe_load(Path(PROJECT_ROOT, "prefect.yaml").read_text())
    deployment = next(d for d in spec["deployments"] if d["name"] == "settle-event")
    assert deployment["entrypoint"] == "flows/settle.py:settle"
    (raw,) = deployment["triggers"]
    trigger = DeploymentEventTrigger.model_validate(raw)
    event = Event(**copy_stopped_event(42, "stop_loss: cumulative PnL -201 (threshold -200)"))
    assert event.event in trigger.expect
    assert event.resource.id == "copytrade.copy.42"
    assert trigger.match.matches(event.resource)
    assert not trigger.match.matches(
        Event(event="x", resource={"prefect.resource.id": "other.1"}).resource
    )
    rendered = {
        name: jinja2.Template(value).render(event=event) if isinstance(value, str) else value
        for name, value in trigger.parameters.items()
    }
    assert rendered == {"cycle": "event", "copy_id": "42"}
    assert event.payload["trigger"] == "stop_loss"
