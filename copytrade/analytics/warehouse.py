"""The metrics warehouse: where it lives, the extract into it, and dbt runs against it.

Two targets build the same dbt models (``dbt_project/``):

* ``duckdb`` (default): a DuckDB file (``COPYTRADE_WAREHOUSE_PATH``, default
  ``var/warehouse.duckdb``); the extract writes Parquet under ``var/extract/`` which the dbt
  sources read;
* ``postgres`` (scale-out): a schema of a PostgreSQL server; the extract loads the raw tables
  of that schema directly, since PostgreSQL cannot read Parquet.

dbt runs in-process through ``dbt.cli.main.dbtRunner``. Paths and credentials reach the committed
``profiles.yml`` as environment variables, set only for the duration of the call.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from sqlalchemy.engine import make_url

from copytrade.analytics.extract import ExtractReport, ParquetSink, PostgresSink, extract
from copytrade.config import PROJECT_ROOT, get_settings

DBT_PROJECT = PROJECT_ROOT / "dbt_project"
PRODUCTION_EXCLUDE = ("--exclude-resource-type", "unit_test")


@dataclass(frozen=True)
class Warehouse:
    """Where the metrics are built: a DuckDB file fed by Parquet, or a PostgreSQL schema."""

    kind: Literal["duckdb", "postgres"] = "duckdb"
    path: Path | None = None  # duckdb file
    extract_dir: Path | None = None  # duckdb: Parquet sources
    pg_url: str | None = None  # postgres: server (SQLAlchemy URL)
    schema: str = "analytics"  # postgres: schema of raw tables and models
    artifacts_dir: Path | None = None  # dbt target/ and logs/ (default: inside dbt_project)

    @classmethod
    def default(cls) -> Warehouse:
        """Return the configured warehouse (DuckDB under the settings' home unless told otherwise)."""
        settings = get_settings()
        kind = os.environ.get("COPYTRADE_DBT_TARGET", "duckdb")
        if kind == "postgres":
            return cls(
                kind="postgres",
                pg_url=os.environ.get("COPYTRADE_WAREHOUSE_PG_URL", settings.ledger_url),
                schema=os.environ.get("COPYTRADE_PG_SCHEMA", "analytics"),
            )
        return cls(kind="duckdb", path=settings.warehouse, extract_dir=settings.home / "extract")

    @classmethod
    def duckdb(cls, root: Path) -> Warehouse:
        """A DuckDB warehouse with everything under ``root`` (tests, benchmarks)."""
        root = Path(root)
        return cls(
            kind="duckdb",
            path=root / "warehouse.duckdb",
            extract_dir=root / "extract",
            artifacts_dir=root / "dbt",
        )

    def sink(self):
        if self.kind == "duckdb":
            assert self.extract_dir is not None
            return ParquetSink(self.extract_dir)
        assert self.pg_url is not None
        return PostgresSink(self.pg_url, self.schema)

    def environment(self) -> dict[str, str]:
        """Return the environment variables profiles.yml and the sources read."""
        if self.kind == "duckdb":
            assert self.path is not None and self.extract_dir is not None
            self.path.parent.mkdir(parents=True, exist_ok=True)
            return {
                "COPYTRADE_DBT_TARGET": "duckdb",
                "COPYTRADE_WAREHOUSE": str(self.path.resolve()),
                "COPYTRADE_EXTRACT_DIR": str(self.extract_dir.resolve()),
            }
        url = make_url(self.pg_url)
        return {
            "COPYTRADE_DBT_TARGET": "postgres",
            "COPYTRADE_PG_HOST": url.host or "127.0.0.1",
            "COPYTRADE_PG_PORT": str(url.port or 5432),
            "COPYTRADE_PG_USER": url.username or "postgres",
            "COPYTRADE_PG_PASSWORD": url.password or "",
            "COPYTRADE_PG_DATABASE": url.database or "postgres",
            "COPYTRADE_PG_SCHEMA": self.schema,
        }

    def describe(self) -> str:
        if self.kind == "duckdb":
            return f"duckdb:{self.path}"
        return f"postgres:{make_url(self.pg_url).render_as_string(hide_password=True)} schema {self.schema}"


@dataclass
class DbtRun:
    """The outcome of one dbt invocation: success, per-node statuses and the wall time."""

    args: list[str]
    success: bool
    seconds: float
    nodes: list[tuple[str, str, str]] = field(default_factory=list)  # (unique_id, status, message)
    error: str | None = None
    node_seconds: dict[str, float] = field(default_factory=dict)  # unique_id → execution time

    @property
    def failures(self) -> list[tuple[str, str, str]]:
        return [n for n in self.nodes if n[1] not in ("success", "pass", "skipped", "warn")]

    def summary(self) -> str:
        counts: dict[str, int] = {}
        for _, status, _ in self.nodes:
            counts[status] = counts.get(status, 0) + 1
        parts = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
        return f"dbt {' '.join(self.args[:1])}: {parts or 'nothing ran'} in {self.seconds:.1f} s"


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def run_dbt(
    warehouse: Warehouse,
    args: Sequence[str],
    *,
    dbt_vars: dict | None = None,
    test_rows_after_batch: int = -1,
    quiet: bool = True,
) -> DbtRun:
    """Run one dbt command (``build``, ``test``, ``docs generate`` …) against ``warehouse``.

    Data tests look at rows with ``_batch_id`` above ``test_rows_after_batch`` (-1: every row).
    It reaches dbt as an environment variable read at run time, not a var, so an incremental build
    keeps dbt's partial parse (any change of vars makes dbt parse the whole project again).
    """
    import json

    from dbt.cli.main import dbtRunner

    argv = [*args, "--project-dir", str(DBT_PROJECT), "--profiles-dir", str(DBT_PROJECT)]
    if warehouse.artifacts_dir is not None:
        argv += [
            "--target-path",
            str((warehouse.artifacts_dir / "target").resolve()),
            "--log-path",
            str((warehouse.artifacts_dir / "logs").resolve()),
        ]
    if dbt_vars:
        argv += ["--vars", json.dumps(dbt_vars)]
    if quiet:
        argv += ["--quiet"]
    started = time.perf_counter()
    environment = warehouse.environment()
    environment["COPYTRADE_TEST_ROWS_AFTER_BATCH"] = str(int(test_rows_after_batch))
    with _environment(environment):
        try:
            result = dbtRunner().invoke(argv)
        finally:
            if warehouse.kind == "duckdb":
                _release_duckdb()
    seconds = time.perf_counter() - started
    nodes, node_seconds = [], {}
    results = getattr(result.result, "results", None) or []
    for r in results:
        unique_id = getattr(getattr(r, "node", None), "unique_id", "?")
        nodes.append((unique_id, str(r.status), r.message or ""))
        node_seconds[unique_id] = float(getattr(r, "execution_time", 0.0) or 0.0)
    error = None if result.exception is None else str(result.exception)
    return DbtRun(list(args), bool(result.success), seconds, nodes, error, node_seconds)


def _release_duckdb() -> None:
    """Close dbt-duckdb's in-process database, so readers (and other processes) can open the file.

    dbt-duckdb keeps the DuckDB instance of the last run open for the life of the process; a
    later read-only connection to the same file would then be refused.
    """
    from dbt.adapters.duckdb.connections import DuckDBConnectionManager

    with DuckDBConnectionManager._LOCK:
        if DuckDBConnectionManager._ENV is not None:
            try:
                DuckDBConnectionManager._ENV.close()
            finally:
                DuckDBConnectionManager._ENV = None


@dataclass
class BuildReport:
    extract: ExtractReport | None
    extract_seconds: float
    dbt: DbtRun


def build(
    warehouse: Warehouse | None = None,
    ledger_url: str | None = None,
    *,
    full_refresh: bool = False,
    with_unit_tests: bool = False,
    dbt_vars: dict | None = None,
    test_rows_after_batch: int | None = None,
    select: str | None = None,
    exclude: str | None = None,
    skip_extract: bool = False,
) -> BuildReport:
    """Extract new ledger rows, then ``dbt build`` (models, seeds and data tests) the warehouse."""
    warehouse = warehouse or Warehouse.default()
    report = None
    started = time.perf_counter()
    if not skip_extract:
        sink = warehouse.sink()
        try:
            report = extract(sink, ledger_url or get_settings().ledger_url, full=full_refresh)
        finally:
            close = getattr(sink, "close", None)
            if close:
                close()
    extract_seconds = time.perf_counter() - started
    if test_rows_after_batch is None:
        test_rows_after_batch = rows_to_test_after(warehouse, report and report.batch, full_refresh)
    # No JSON artifacts (manifest.json, run_results.json): writing them costs about a second of
    # every build; the outcome is returned, and `copytrade metrics docs` writes the manifest.
    args = ["build", "--no-write-json"]
    if full_refresh:
        args.append("--full-refresh")
    if not with_unit_tests:
        args += list(PRODUCTION_EXCLUDE)
    if select:
        args += ["--select", select]
    if exclude:
        args += ["--exclude", exclude]
    run = run_dbt(warehouse, args, dbt_vars=dbt_vars, test_rows_after_batch=test_rows_after_batch)
    return BuildReport(report, extract_seconds, run)


def rows_to_test_after(warehouse: Warehouse, batch: int | None, full_refresh: bool) -> int:
    """The ``_batch_id`` above which data tests look: an incremental build (extract batch > 1 into
    an existing warehouse) tests the rows it wrote; a first or full build tests every row (-1)."""
    incremental = batch is not None and batch > 1 and not full_refresh
    return batch - 1 if incremental and _has_warehouse(warehouse) else -1


def _has_warehouse(warehouse: Warehouse) -> bool:
    if warehouse.kind == "duckdb":
        return warehouse.path is not None and warehouse.path.exists()
    return True
