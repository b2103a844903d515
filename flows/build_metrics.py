"""Flow `build_metrics`: extract the ledger, build the dbt warehouse, publish the leaderboard's top
and the top leaders' charts (markdown artifacts ``leader-report-<id>``).

Deployment `build-metrics-hourly` (cron `5 * * * *`, UTC): the configured ledger and warehouse.
The demo passes its own ledger (``database_url``, a SQLite file: no password; a URL with one
belongs in the worker's environment, since parameters show in the UI) and DuckDB folder
(``warehouse_dir``). Thin: every step is a function of `copytrade.analytics`.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from copytrade.analytics.extract import ExtractReport, extract
from copytrade.analytics.leaderboard import copy_quality_by_leader, top
from copytrade.analytics.warehouse import Warehouse, build, rows_to_test_after
from copytrade.config import get_settings


@task(retries=3, retry_delay_seconds=[2, 5, 15], task_run_name="extract ledger → {warehouse.kind}")
def extract_ledger(warehouse: Warehouse, database_url: str | None, full: bool) -> ExtractReport:
    sink = warehouse.sink()
    try:
        return extract(sink, database_url or get_settings().ledger_url, full=full)
    finally:
        getattr(sink, "close", lambda: None)()


@task(task_run_name="dbt build {warehouse.kind}")
def build_warehouse(
    warehouse: Warehouse, extracted: ExtractReport, full_refresh: bool, data_tests: bool
) -> str:
    # Data tests look at this extract's rows only, unless the build starts from scratch.
    report = build(
        warehouse,
        skip_extract=True,
        full_refresh=full_refresh,
        test_rows_after_batch=rows_to_test_after(warehouse, extracted.batch, full_refresh),
        exclude=None if data_tests else "resource_type:test",
    )
    if not report.dbt.success:
        raise RuntimeError(f"dbt build failed: {report.dbt.failures or report.dbt.error}")
    return report.dbt.summary()


@task(task_run_name="check marks")
def check_marks(warehouse: Warehouse) -> list[str]:
    """Name the held positions that had no mark on some days (their metrics: marks_complete false)."""
    from prefect import get_run_logger

    from copytrade.analytics.marks_coverage import unmarked_symbols

    missing = [item.describe() for item in unmarked_symbols(warehouse)]
    logger = get_run_logger()
    for line in missing[:50]:
        logger.warning("marks missing: %s (copytrade marks load / marks fetch)", line)
    return missing


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


@task(task_run_name="publish charts of the top {count} ({period})")
def publish_leader_charts(warehouse: Warehouse, period: str, count: int) -> list[str]:
    """The top leaders' reports (copytrade.analytics.report) as markdown artifacts, one per leader
    (key ``leader-report-<id>``): the R-MET figures and the chart, with the HTML file beside it."""
    import base64

    from copytrade.analytics import report

    folder = get_settings().home / "reports"
    keys = []
    for row in top(warehouse, period=period, sort="sharpe", limit=count) if count else []:
        data = report.load(warehouse, row["portfolio_id"])
        png = report.render_png(data)
        page = folder / f"leader-{data.portfolio_id}.html"
        folder.mkdir(parents=True, exist_ok=True)
        page.write_text(report.render_html(data, png), encoding="utf-8")
        table = report.figure_rows(data)
        lines = [
            f"### {data.nickname} (portfolio {data.portfolio_id}), metric date {data.metric_date}",
            "",
            "| R-MET | " + " | ".join(report.PERIODS) + " |",
            "|---" * (len(report.PERIODS) + 1) + "|",
            *("| " + " | ".join(r) + " |" for r in table),
            "",
            f"![equity, drawdown, monthly returns](data:image/png;base64,{base64.b64encode(png).decode()})",
            "",
            f"HTML report: `{page}`",
        ]
        key = f"leader-report-{data.portfolio_id}"
        create_markdown_artifact(
            key=key,
            markdown="\n".join(lines),
            description=f"{data.nickname}: equity, drawdown, monthly returns (R-MET-*)",
        )
        keys.append(key)
    return keys


@flow(name="build_metrics", flow_run_name="build-metrics-{period}")
def build_metrics(
    period: str = "90d",
    limit: int = 20,
    database_url: str | None = None,
    warehouse_dir: str | None = None,
    full_refresh: bool = False,
    data_tests: bool = True,
    charts: int = 3,
) -> dict:
    """Extract → dbt build → publish the leaderboard's top and copy quality as table artifacts.

    ``warehouse_dir``: a DuckDB warehouse folder (``warehouse.duckdb``, ``extract/``, ``dbt/``)
    instead of the configured one; ``data_tests=False`` builds without dbt's data tests;
    ``charts``: how many of the top leaders get a report artifact (0: none).
    """
    warehouse = Warehouse.duckdb(Path(warehouse_dir)) if warehouse_dir else Warehouse.default()
    extracted = extract_ledger(warehouse, database_url, full_refresh)
    summary = build_warehouse(warehouse, extracted, full_refresh, data_tests)
    missing = check_marks(warehouse)
    listed = publish_leaderboard(warehouse, period, limit)
    publish_copy_quality(warehouse, period)
    reports = publish_leader_charts(warehouse, period, charts)
    return {
        "extracted_rows": extracted.rows,
        "dbt": summary,
        "listed": listed,
        "reports": reports,
        "unmarked": len(missing),
    }


if __name__ == "__main__":
    build_metrics.serve(name="build-metrics-hourly", cron="5 * * * *")
