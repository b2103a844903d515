"""Flow `settle`: validate the ledger, pay the cycle's shares and rebates, publish what happened.

validate (subflow, gate) → settle pending events and the cycle (task, resumable) → publish payouts
per leader and withheld shares → fail the run if validation blocked the payouts (R-LED-7).
Weekly on Monday 00:00 UTC (deployment `settle-weekly`), or for one copy's event trigger.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from pathlib import Path

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from copytrade import clock
from copytrade.config import get_settings
from copytrade.db import session_factory
from copytrade.domain.errors import RuleViolation
from copytrade.settlement import (
    RecordedMarks,
    RunReport,
    SettlementBlocked,
    SettlementService,
    SnapshotMarks,
    StaticMarks,
    weekly_cycle,
)
from copytrade.settlement.gate import gate_from_report
from copytrade.validation import ValidationReport
from flows.validate_ledger import validate_ledger


@task(
    retries=2, retry_delay_seconds=[10, 60], cache_policy=NO_CACHE, task_run_name="settle-{cycle}"
)
def run_settlement(
    cycle: str,
    validation: ValidationReport,
    database_url: str | None = None,
    at: datetime | None = None,
    copy_id: int | None = None,
    trigger: str | None = None,
    ref: str | None = None,
    marks: dict[str, str] | None = None,
    marks_file: str | None = None,
    include_pending_events: bool = True,
) -> list[RunReport]:
    """Settle; a retry resumes the cycle where it stopped (R-SET-9). A block is returned, not raised."""
    url = database_url or get_settings().ledger_url
    sessions = session_factory(url)
    at = at or clock.now()
    if marks_file:
        prices = SnapshotMarks.load(Path(marks_file))
    elif marks:
        prices = StaticMarks({k: Decimal(v) for k, v in marks.items()})
    else:  # the marks the running engine records (R-SET-3): no price by hand
        instants = (at, weekly_cycle(at).as_of) if cycle == "weekly" else (at,)
        prices = RecordedMarks(sessions).preload(*instants)
    service = SettlementService(sessions, gate=gate_from_report(validation), marks=prices)
    reports = []
    try:
        if cycle == "weekly":
            if include_pending_events:
                reports.append(service.settle_pending_events(at))
            reports.append(service.settle_weekly(at))
        else:  # an event; without a trigger, the stopped copy's own (the settle-event automation)
            reports.append(service.settle_event(copy_id, trigger or None, ref=ref, at=at))
    except SettlementBlocked as blocked:
        reports.append(blocked.report)
    return reports


@task(cache_policy=NO_CACHE, task_run_name="publish-settlement")
def publish(reports: list[RunReport]) -> None:
    """Publish payouts per leader, paused and deferred shares with reasons, and the run's report."""
    create_table_artifact(
        key="settlement-payouts",
        table=[{"run": r.trigger, **row} for r in reports for row in r.leader_rows()]
        or [{"run": "none"}],
        description="Shares and rebates paid per leader in this run",
    )
    create_table_artifact(
        key="settlement-withheld",
        table=[row for r in reports for row in r.withheld_rows()] or [{"status": "none"}],
        description="Shares paused (R-SET-7) or deferred (R-SET-6), with the reason",
    )
    create_markdown_artifact(
        key="settlement-report", markdown="\n".join(r.to_markdown() for r in reports)
    )


@flow(name="settle", flow_run_name="settle-{cycle}")
def settle(
    cycle: str = "weekly",
    at: datetime | None = None,
    copy_id: int | None = None,
    trigger: str | None = None,
    ref: str | None = None,
    marks: dict[str, str] | None = None,
    marks_file: str | None = None,
    database_url: str | None = None,
    include_pending_events: bool = True,
) -> list[dict]:
    """Validate, settle (``cycle='weekly'`` or ``'event'`` with ``copy_id`` [and ``trigger``]), report.

    An event run without a trigger settles a stopped copy for its own stop reason: the
    ``settle-event`` deployment runs it so when a ``copytrade.copy.stopped`` event arrives.
    """
    if cycle not in ("weekly", "event") or (cycle == "event" and copy_id is None):
        raise RuleViolation(
            "cycle",
            cycle,
            "R-SET-5",
            "settle cycle='weekly', or cycle='event' with copy_id (and the trigger of a live copy)",
        )
    validation = validate_ledger(
        scope=f"before-settle-{cycle}",
        database_url=database_url,
        # An event settles within a minute of the stop (R-SET-5): it validates without building
        # Data Docs (seconds on a loaded machine); the weekly run and the daily check build them.
        data_docs=cycle == "weekly",
        fail_on_problems=False,
    )
    reports = run_settlement(
        cycle,
        validation,
        database_url,
        at,
        copy_id,
        trigger,
        ref,
        marks,
        marks_file,
        include_pending_events,
    )
    publish(reports)
    blocked = [r for r in reports if r.blocked]
    if blocked:
        raise SettlementBlocked(blocked[0])
    return [r.summary() for r in reports]


if __name__ == "__main__":
    settle()
