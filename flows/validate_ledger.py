"""Flow `validate_ledger`: run the ledger_integrity checkpoint, publish one result per expectation.

Daily on its own (deployment `validate-ledger-daily`, ``scope='daily'``), and first thing in every
`settle` run (``scope='before-settle-<cycle>'``). Runs are named by scope, never by the database
URL (it may hold a password).
"""

from __future__ import annotations

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from copytrade.validation import ValidationReport
from copytrade.validation import validate_ledger as run_checkpoint


class LedgerValidationFailed(RuntimeError):
    """The ledger broke at least one integrity rule (R-LED-*, R-X-4)."""


@task(
    retries=3,
    retry_delay_seconds=[2, 5, 15],
    cache_policy=NO_CACHE,
    task_run_name="ledger-integrity",
)
def checkpoint(database_url: str | None, data_docs: bool) -> ValidationReport:
    """Recompute the hash chain and run the GX checkpoint (retried only if it cannot run)."""
    return run_checkpoint(database_url, data_docs=data_docs)


@task(cache_policy=NO_CACHE, task_run_name="publish-validation")
def publish(report: ValidationReport) -> None:
    """Publish the results per expectation (table) and the readable report (markdown)."""
    create_table_artifact(
        key="ledger-validation",
        table=report.rows(),
        description=f"ledger_integrity: {'passed' if report.passed else 'FAILED'} on {report.database}",
    )
    create_markdown_artifact(key="validation-summary", markdown=report.to_markdown())


@flow(name="validate_ledger", flow_run_name="validate-ledger-{scope}")
def validate_ledger(
    database_url: str | None = None,
    data_docs: bool = True,
    fail_on_problems: bool = True,
    scope: str = "manual",
) -> ValidationReport:
    """Validate the ledger; fail the run when a rule is broken (unless the caller gates on it).

    ``scope`` says why this run happened (``daily``, ``before-settle-weekly``, …) and names it.
    """
    report = checkpoint(database_url, data_docs)
    publish(report)
    if fail_on_problems and not report.passed:
        raise LedgerValidationFailed(report.reason)
    return report


if __name__ == "__main__":
    validate_ledger()
