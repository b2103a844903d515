"""The ``ledger_integrity`` checkpoint, built in code: one suite per ledger table, one checkpoint.

``build_ledger_suites(dialect)`` turns the rule checks of ``ledger_rules`` into GX 1.x suites of
``ExpectNoOffendingRows`` (an ``UnexpectedRowsExpectation`` that runs its query once), each tagged
with its rule id and check name in ``meta``;
``build_ledger_checkpoint(context, url)`` adds the ledger database as a SQL datasource, a table
asset and whole-table batch per suite, the validation definitions and the checkpoint, with an
``UpdateDataDocsAction`` when the context has a Data Docs site. Nothing is written to the
project: the context is ephemeral and Data Docs go to an ignored folder (``var/gx/data_docs``).
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")

import great_expectations as gx  # noqa: E402
from great_expectations.data_context.types.base import ProgressBarsConfig  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from expectations.ledger_rules import RuleCheck, ledger_checks  # noqa: E402
from expectations.offending_rows import ExpectNoOffendingRows  # noqa: E402

CHECKPOINT_NAME = "ledger_integrity"
DOCS_SITE = "ledger_integrity_docs"


def make_context(data_docs_dir: Path | None = None):
    """Return an ephemeral GX context without progress bars; Data Docs go to ``data_docs_dir``."""
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    if data_docs_dir is not None:
        data_docs_dir.mkdir(parents=True, exist_ok=True)
        context.add_data_docs_site(
            DOCS_SITE,
            {
                "class_name": "SiteBuilder",
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(data_docs_dir),
                },
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            },
        )
    return context


def build_ledger_suites(dialect: str) -> dict[str, gx.ExpectationSuite]:
    """Return the suites of the checkpoint, one per table, named ``ledger_integrity.<table>``."""
    by_table: dict[str, list[RuleCheck]] = defaultdict(list)
    for check in ledger_checks(dialect):
        by_table[check.table].append(check)
    suites = {}
    for table, checks in by_table.items():
        suite = gx.ExpectationSuite(name=f"{CHECKPOINT_NAME}.{table}")
        for check in checks:
            suite.add_expectation(
                ExpectNoOffendingRows(
                    unexpected_rows_query=check.query,
                    description=f"{check.rule} {check.name}: {check.description}",
                    meta={"rule": check.rule, "check": check.name, "table": table},
                )
            )
        suites[table] = suite
    return suites


CHAIN_TABLE = "ledger_chain_verifications"


def build_ledger_checkpoints(context, url: str) -> tuple[gx.Checkpoint, gx.Checkpoint]:
    """Add the ledger at ``url`` and the suites to ``context``; return both checkpoints.

    ``ledger_integrity`` holds every SQL check; ``ledger_integrity_chain`` reads the record of
    the hash-chain recomputation, which runs in Python while the first checkpoint's queries run.
    """
    parsed = make_url(url)
    dialect = parsed.get_backend_name()
    connection = parsed.render_as_string(hide_password=False)
    if dialect == "sqlite":
        source = context.data_sources.add_sqlite("ledger", connection_string=connection)
    elif dialect == "postgresql":
        source = context.data_sources.add_postgres("ledger", connection_string=connection)
    else:
        raise ValueError(f"ledger database {dialect!r}: validation runs on sqlite or postgresql")
    definitions: dict[bool, list] = {False: [], True: []}
    for table, suite in build_ledger_suites(dialect).items():
        asset = source.add_table_asset(table, table_name=table)
        batch = asset.add_batch_definition_whole_table(f"{table}_all")
        suite = context.suites.add(suite)
        definitions[table == CHAIN_TABLE].append(
            context.validation_definitions.add(
                gx.ValidationDefinition(name=f"{CHECKPOINT_NAME}.{table}", data=batch, suite=suite)
            )
        )
    actions = []
    if DOCS_SITE in (context.list_data_docs_sites() or {}):
        actions.append(
            gx.checkpoint.UpdateDataDocsAction(name="update_data_docs", site_names=[DOCS_SITE])
        )
    result_format = {"result_format": "COMPLETE", "partial_unexpected_count": 5}
    return tuple(
        context.checkpoints.add(
            gx.Checkpoint(
                name=name,
                validation_definitions=definitions[chain],
                actions=actions,
                result_format=result_format,
            )
        )
        for name, chain in ((CHECKPOINT_NAME, False), (f"{CHECKPOINT_NAME}_chain", True))
    )
