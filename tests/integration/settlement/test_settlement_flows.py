"""Prefect flows `settle` and `validate_ledger`: thin, scheduled as SPEC says, failing visibly."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from copytrade.config import PROJECT_ROOT
from tests.support.settlement import EPOCH

DAY = timedelta(days=1)
MON1 = EPOCH + timedelta(days=7)


def deployments() -> dict:
    spec = yaml.safe_load(Path(PROJECT_ROOT, "prefect.yaml").read_text())
    return {d["name"]: d for d in spec["deployments"]}


def test_deployments_are_scheduled_in_utc_and_entrypoints_import_R_SET_4():
    from prefect.flows import load_flow_from_entrypoint

    found = deployments()
    weekly = found["settle-weekly"]
    assert weekly["schedules"][0] == {"cron": "0 0 * * 1", "timezone": "UTC"}
    assert found["validate-ledger-daily"]["schedules"][0]["timezone"] == "UTC"
    names = {
        load_flow_from_entrypoint(str(PROJECT_ROOT / found[name]["entrypoint"])).name
        for name in ("settle-weekly", "validate-ledger-daily")
    }
    assert names == {"settle", "validate_ledger"}


def seed(build):
    def case(s):
        c = s.copy(s.portfolio(mode="futures", ratio="0.1"))
        s.fill(c, "BTCUSDT", "buy", "1", "60000", fee="6", at=EPOCH + DAY)
        s.fill(c, "BTCUSDT", "sell", "1", "61000", fee="6.1", at=EPOCH + DAY)
        s.stop(s.copy(s.portfolio(mode="spot")), "stopped_by_follower", at=EPOCH + DAY)
        return c

    return build(case)


def artifact(key: str):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key]))
        )
    return sorted(found, key=lambda a: a.created)[-1]


def test_settle_flow_validates_pays_and_publishes_R_SET_4_R_LED_7(
    prefect_harness, build, view, db_url
):
    from flows.settle import settle

    c = seed(build)
    summaries = settle(cycle="weekly", at=MON1, database_url=db_url)
    assert [s["trigger"] for s in summaries] == ["pending_events", "weekly"]
    assert str(view.shares(c)[0].amount) == "98.79000000"  # (1000 − 12.1) × 10 %
    payouts = artifact("settlement-payouts")
    assert "98.79" in str(payouts.data)
    assert "pass" in str(artifact("ledger-validation").data)


def test_settle_flow_fails_visibly_when_validation_blocks_R_LED_7(
    prefect_harness, build, view, engine, db_url
):
    from flows.settle import settle
    from flows.validate_ledger import validate_ledger

    seed(build)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "update ledger_accounts set balance = balance + 1 where address = 'platform:fees'"
        )
    state = settle(cycle="weekly", at=MON1, database_url=db_url, return_state=True)
    assert state.is_failed() and "balances_equal_sum_of_postings" in state.message
    assert view.payouts() == []
    assert "blocked" in str(artifact("settlement-report").data)
    assert validate_ledger(database_url=db_url, data_docs=False, return_state=True).is_failed()


def test_settlement_task_logic_runs_without_the_orchestrator_R_SET_5(build, view, db_url):
    from copytrade.validation import validate_ledger
    from flows.settle import run_settlement

    c = seed(build)
    build(lambda s: s.stop(c, "stop_loss", at=EPOCH + 2 * DAY))
    reports = run_settlement.fn(
        "event", validate_ledger(db_url), db_url, EPOCH + 2 * DAY, c, "stop_loss"
    )
    assert reports[0].cycle_keys == [f"event:stop_loss:copy:{c}"]
    assert [p.status for p in view.shares(c)] == ["paid"]


def test_settle_event_run_settles_a_stopped_copy_once_R_SET_5_R_SET_9(
    prefect_harness, build, view, db_url
):
    """What the settle-event automation runs: `settle(cycle='event', copy_id=…)` with no trigger
    settles the stopped copy for its own stop reason; a second delivery pays nothing twice."""
    from flows.settle import settle

    def case(s):
        c = s.copy(s.portfolio(mode="futures", ratio="0.1"))
        s.fill(c, "BTCUSDT", "buy", "1", "60000", fee="6", at=EPOCH + DAY)
        s.fill(c, "BTCUSDT", "sell", "1", "61000", fee="6.1", at=EPOCH + DAY)
        s.stop(c, "stop_loss: cumulative PnL -201 (threshold -200)", at=EPOCH + 2 * DAY)
        return c

    c = build(case)
    (first,) = settle(cycle="event", copy_id=c, at=EPOCH + 2 * DAY, database_url=db_url)
    assert (first["trigger"], first["copies_settled"]) == ("stop_loss", 1)
    assert [str(p.amount) for p in view.shares(c)] == ["98.79000000"]  # (1000 − 12.1) × 10 %
    transfers = view.transfers()
    (second,) = settle(cycle="event", copy_id=c, at=EPOCH + 3 * DAY, database_url=db_url)
    assert second["status"] == "already_completed"
    assert view.transfers() == transfers and len(view.shares(c)) == 1


@pytest.mark.slow
def test_copy_stopped_event_starts_a_settle_event_run_for_that_copy_R_SET_5(prefect_harness):
    """The automation `prefect deploy` makes of the settle-event trigger (prefect.yaml), on a real
    Prefect server: the event a stop emits schedules a settle run with that copy's id."""
    import time

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
    from prefect.events import emit_event
    from prefect.events.schemas.deployment_triggers import DeploymentEventTrigger

    from copytrade.settlement.events import copy_stopped_event

    spec = deployments()["settle-event"]
    with get_client(sync_client=True) as client:
        flow_id = client.create_flow_from_name("settle")
        deployment_id = client.create_deployment(
            flow_id=flow_id,
            name=f"settle-event-{uuid.uuid4().hex[:6]}",
            parameters=spec["parameters"],
        )
        trigger = DeploymentEventTrigger.model_validate(spec["triggers"][0])
        trigger.set_deployment_id(deployment_id)
        client.create_automation(trigger.as_automation())
        only_this = DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
        # The server's trigger service learns of a new automation asynchronously: an event sent
        # before it did is not matched, so the stop is announced again until a run appears.
        deadline, runs = time.monotonic() + 180, []
        while not runs and time.monotonic() < deadline:
            emit_event(**copy_stopped_event(42, "stop_loss: cumulative PnL -201 (threshold -200)"))
            for _ in range(10):
                time.sleep(1)
                runs = client.read_flow_runs(deployment_filter=only_this)
                if runs:
                    break
    assert runs and all(
        run.parameters == {"cycle": "event", "include_pending_events": False, "copy_id": 42}
        for run in runs
    )
