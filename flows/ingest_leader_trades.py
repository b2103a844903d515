"""Scheduled backfill of leader fills and reconciliation sweep, with a report artifact (R-IN-1, R-COPY-11)."""

from __future__ import annotations

from prefect import flow, task
from prefect.artifacts import acreate_markdown_artifact

from copytrade.engine.service import reconcile_once
from flows._secrets import prefect_secret


@task(retries=3, retry_delay_seconds=[2, 5, 15], task_run_name="reconcile-{exchange}")
async def sweep(exchange: str) -> dict:
    """Backfill every leader from its watermarks and settle follower orders without an outcome."""
    return (await reconcile_once(exchange=exchange, secrets=prefect_secret)).as_dict()


def render(report: dict) -> str:
    rows = "\n".join(f"| {k} | {v} |" for k, v in report.items() if k != "baselined")
    return f"# Leader ingest and reconciliation\n\n| what | count |\n|---|---|\n{rows}\n"


@flow(name="ingest-leader-trades", flow_run_name="ingest-leader-trades-{exchange}")
async def ingest_leader_trades(exchange: str = "paper") -> dict:
    """Backfill → reconcile → publish what was found."""
    report = await sweep(exchange)
    await acreate_markdown_artifact(key="reconciliation-report", markdown=render(report))
    return report
