"""Flow `build_metrics`: extract the ledger, build the dbt warehouse, publish the leaderboard's top.

Deployment `build-metrics-hourly` (cron `5 * * * *`, UTC). Thin: every step is a function of
`copytrade.analytics`.
"""

from __future__ import annotations

from prefect import flow, task
from prefect.artifacts import create_table_artifact

from copytrade.analytics.extract import extract
from copytrade.analytics.leaderboard import copy_quality_by_leader, top
from copytrade.analytics.warehouse import Warehouse, build
from copytrade.config import get_settings


@task(retries=3, retry_delay_seconds=[2, 5, 15], task_run_name="extract ledger → {warehouse.kind}")
def extract_ledger(warehouse: Warehouse) -> int:
    sink = warehouse.sink()
    try:
        return extract(sink, get_settings().ledger_url).rows
    finally:
        getattr(sink, "close", lambda: None)()


@task(task_run_name="dbt build {warehouse.kind}")
def build_warehouse(warehouse: Warehouse) -> str:
    report = build(warehouse, skip_extract=True)
    if not report.dbt.success:
        raise RuntimeError(f"dbt build failed: {report.dbt.failures or report.dbt.error}")
    return report.dbt.summary()


@task(task_run_name="publish leaderboard {period}")
def publish_leaderboard(warehouse: Warehouse, period: str, limit: int) -> int:
    rows = top(warehouse, period=period, sort="sharpe", limit=limit)
    table = [{k: (None if v is None else str(v)) for k, v in row.items()} for row in rows]
    create_table_artifact(
        key="leaderboard",
        table=table,
        description=f"Top {limit} lead portfolios over {period} by Sharpe (R-MET-4)",
    )
    return len(rows)


@task(task_run_name="publish copy quality {period}")
def publish_copy_quality(warehouse: Warehouse, period: str) -> int:
    rows = copy_quality_by_leader(warehouse, period=period)
    table = [{k: (None if v is None else str(v)) for k, v in row.items()} for row in rows]
    create_table_artifact(
        key="copy-quality",
        table=table,
        description=f"Copy quality per leader over {period}: copied, skipped, slippage, delay (R-X-1)",
    )
    return len(rows)


@flow(name="build_metrics", flow_run_name="build-metrics-{period}")
def build_metrics(period: str = "90d", limit: int = 20) -> dict:
    """Extract → dbt build → publish the leaderboard's top as a table artifact."""
    warehouse = Warehouse.default()
    rows = extract_ledger(warehouse)
    summary = build_warehouse(warehouse)
    listed = publish_leaderboard(warehouse, period, limit)
    publish_copy_quality(warehouse, period)
    return {"extracted_rows": rows, "dbt": summary, "listed": listed}


if __name__ == "__main__":
    build_metrics.serve(name="build-metrics-hourly", cron="5 * * * *")
