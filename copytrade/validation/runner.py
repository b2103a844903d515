"""Run the ``ledger_integrity`` validation on a ledger database and report per check (R-LED-*, R-X-4).

Two parts, both gating. The ``ledger_integrity`` GX checkpoint runs every SQL check while a worker
thread recomputes the hash chain in Python (sha256 of every transfer's content) and records the
result as a ``ledger_chain_verifications`` row; then the ``ledger_integrity_chain`` checkpoint's
``chain_recomputed_without_break`` expectation reads that row. A check that raises (bad SQL, a
missing table) counts as failed, never as passed.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from copytrade.config import get_settings
from copytrade.db import make_engine
from copytrade.validation.chain import recompute_chain_at, record_chain_verification


@dataclass(frozen=True, slots=True)
class CheckOutcome:
    """One expectation's result: which rule, whether it held, and a sample of offending rows."""

    name: str
    rule: str
    table: str
    success: bool
    unexpected: int = 0
    sample: tuple[dict, ...] = ()
    error: str | None = None

    @property
    def label(self) -> str:
        return f"{self.rule} {self.name}"


@dataclass(slots=True)
class ValidationReport:
    """The outcome of one validation run of the ledger."""

    database: str
    started_at: datetime
    seconds: float = 0.0
    outcomes: list[CheckOutcome] = field(default_factory=list)
    chain_checked: int = 0
    chain_problem: str | None = None
    chain_seconds: float = 0.0  # recomputing the hash chain
    checkpoint_seconds: float = 0.0  # the GX checkpoint
    data_docs: Path | None = None

    @property
    def passed(self) -> bool:
        return bool(self.outcomes) and all(o.success for o in self.outcomes)

    @property
    def failures(self) -> list[CheckOutcome]:
        return [o for o in self.outcomes if not o.success]

    def failed_checks(self) -> set[str]:
        return {o.name for o in self.failures}

    def failed_rules(self) -> set[str]:
        return {o.rule for o in self.failures}

    def failure_lines(self) -> tuple[str, ...]:
        """Return one line per failed check: its label and what failed."""
        return tuple(
            f"{o.label} ({o.error or f'{o.unexpected} offending rows'})" for o in self.failures
        )

    @property
    def reason(self) -> str:
        """Why payouts are blocked ("" when the validation passed, R-LED-7)."""
        if self.passed:
            return ""
        return "ledger validation failed: " + "; ".join(self.failure_lines() or ("no detail",))

    def rows(self) -> list[dict]:
        """Return one row per check for a table artifact or a terminal table."""
        return [
            {
                "rule": o.rule,
                "check": o.name,
                "table": o.table,
                "result": "pass" if o.success else "FAIL",
                "offending_rows": o.unexpected,
                "detail": o.error or (str(o.sample[0]) if o.sample else ""),
            }
            for o in self.outcomes
        ]

    def to_markdown(self) -> str:
        verdict = "passed" if self.passed else f"FAILED ({len(self.failures)} checks)"
        lines = [
            f"# Ledger validation: {verdict}",
            "",
            f"Database: `{self.database}`; started {self.started_at.isoformat()}; "
            f"{self.seconds:.1f} s; hash chain recomputed over {self.chain_checked} transfers"
            + (f" — {self.chain_problem}" if self.chain_problem else "")
            + ".",
            "",
            "| rule | check | table | result | offending rows |",
            "|---|---|---|---|---:|",
        ]
        for row in self.rows():
            lines.append(
                f"| {row['rule']} | {row['check']} | {row['table']} | {row['result']} | "
                f"{row['offending_rows']} |"
            )
        if self.data_docs:
            lines += ["", f"Data Docs: `{self.data_docs}`"]
        return "\n".join(lines) + "\n"


def default_docs_dir() -> Path:
    """Return where Data Docs are written: ``<home>/gx/data_docs`` (``var/`` is not committed)."""
    return get_settings().home / "gx" / "data_docs"


def validate_ledger(
    url: str | None = None, *, data_docs: bool = False, docs_dir: Path | None = None
) -> ValidationReport:
    """Validate the ledger at ``url`` (default: the configured ledger) and return the report."""
    url = url or get_settings().ledger_url
    shown = make_url(url).render_as_string(hide_password=True)
    report = ValidationReport(database=shown, started_at=datetime.now(UTC))
    clock = time.perf_counter()

    docs = (docs_dir or default_docs_dir()) if data_docs else None
    rules, chain = _checkpoints(url, docs)
    # The hash chain is recomputed in Python on a worker thread while the SQL checks run (SQLite
    # and psycopg release the GIL inside queries); its record is checked once both are done.
    with ThreadPoolExecutor(max_workers=1) as pool:
        recomputed = pool.submit(_recompute_and_record, url)
        started = time.perf_counter()
        results = [rules.run()]
        report.checkpoint_seconds = time.perf_counter() - started
        checked, problem, report.chain_seconds = recomputed.result()
    report.chain_checked, report.chain_problem = checked, problem
    results.append(chain.run())
    for result in results:
        _collect(report, result)
    report.outcomes.sort(key=lambda o: (_rule_order(o.rule), o.name))
    if docs is not None:
        report.data_docs = docs / "index.html"
    report.seconds = time.perf_counter() - clock
    return report


def _recompute_and_record(url: str) -> tuple[int, str | None, float]:
    """Recompute the chain on a plain reading connection, then record it in a short write."""
    started = time.perf_counter()
    # a plain reading connection, not make_engine's write-locking one: the engine keeps posting
    report = recompute_chain_at(url)
    writer = make_engine(url)
    try:
        with Session(writer) as session, session.begin():
            record_chain_verification(session, report)
    finally:
        writer.dispose()
    return (
        report.checked,
        (report.problems[0] if report.problems else None),
        time.perf_counter() - started,
    )


def _collect(report: ValidationReport, result) -> None:
    """Append one outcome per expectation of a checkpoint result to ``report``."""
    for suite_result in result.run_results.values():
        for item in suite_result.results:
            meta = item.expectation_config.meta or {}
            details = (item.result or {}).get("details") or {}
            error = _exception_message(item.exception_info)
            report.outcomes.append(
                CheckOutcome(
                    name=meta.get("check", item.expectation_config.type),
                    rule=meta.get("rule", "?"),
                    table=meta.get("table", "?"),
                    success=bool(item.success) and error is None,
                    unexpected=int((item.result or {}).get("observed_value") or 0),
                    sample=tuple(_jsonable(r) for r in (details.get("unexpected_rows") or [])[:5]),
                    error=error,
                )
            )


@lru_cache(maxsize=8)
def _checkpoints(url: str, docs: Path | None):
    """Build the checkpoints of one ledger once per process (building costs as much as a run)."""
    # GX logs every metric it computes at INFO; keep the terminal and the flow logs readable.
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    from expectations.ledger_integrity import build_ledger_checkpoints, make_context

    return build_ledger_checkpoints(make_context(docs), url)


def _exception_message(info) -> str | None:
    """Return the first error GX caught for an expectation (its shape differs across metrics)."""
    if not info:
        return None
    entries = [info] if "raised_exception" in info else list(info.values())
    for entry in entries:
        if isinstance(entry, dict) and entry.get("raised_exception"):
            message = entry.get("exception_message") or "the check raised an error"
            return message.strip().splitlines()[0][:300]
    return None


def _jsonable(row: dict) -> dict:
    return {
        str(k): (v if isinstance(v, int | str | float | None) else str(v)) for k, v in row.items()
    }


def _rule_order(rule: str) -> tuple:
    family, _, number = rule.rpartition("-")
    return (family, int(number) if number.isdigit() else 0)
