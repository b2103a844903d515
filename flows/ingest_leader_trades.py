"""Scheduled backfill, completeness check and reconciliation sweep, with a report artifact
(R-IN-1, R-IN-3, R-COPY-11)."""

from __future__ import annotations

from prefect import flow, task
from prefect.artifacts import acreate_markdown_artifact
from prefect.states import Completed, Failed

from copytrade.engine.completeness import WINDOW_FILLS
from copytrade.engine.service import reconcile_once
from flows._secrets import prefect_secret

# Lists in the report: what the operator reads first when something is left unresolved.
SECTIONS = {
    "drift": "Leader positions that differ from the exchange (portfolio close-only)",
    "close_only": "Portfolios close-only until their history is complete",
    "unverified": "Not verified (the exchange could not answer; tried again next run)",
    "missing_found": "Fills found missing and stored now",
    "left_to_engines": "Engine shards running: they check and reconcile their own portfolios",
}


@task(retries=3, retry_delay_seconds=[2, 5, 15], task_run_name="reconcile-{exchange}")
async def sweep(exchange: str, window: int) -> dict:
    """Backfill every leader, compare a trailing window with the exchange, settle open orders."""
    report = await reconcile_once(exchange=exchange, secrets=prefect_secret, window=window)
    return report.as_dict() | {"unresolved": report.unresolved}


def render(report: dict) -> str:
    counts = "\n".join(
        f"| {k} | {v} |" for k, v in report.items() if isinstance(v, int) and k != "unresolved"
    )
    verdict = (
        "**Something is left unresolved**: see below (R-IN-3)."
        if report.get("unresolved")
        else "Complete: every lead portfolio's recorded fills and position match the exchange."
    )
    text = f"# Leader ingest and reconciliation\n\n{verdict}\n\n| what | count |\n|---|---|\n{counts}\n"
    for key, title in SECTIONS.items():
        if report.get(key):
            text += f"\n## {title}\n\n" + "\n".join(f"- {item}" for item in report[key]) + "\n"
    return text


@flow(name="ingest-leader-trades", flow_run_name="ingest-leader-trades-{exchange}")
async def ingest_leader_trades(exchange: str = "paper", window: int = WINDOW_FILLS):
    """Backfill → check completeness → reconcile → publish what was found (failed if unresolved)."""
    report = await sweep(exchange, window)
    await acreate_markdown_artifact(key="reconciliation-report", markdown=render(report))
    if report["unresolved"]:
        return Failed(message="ingest left gaps, drift or unknown orders unresolved", data=report)
    return Completed(data=report)
