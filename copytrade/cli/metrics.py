"""`copytrade metrics`: extract the ledger, build the dbt warehouse, read the leaderboard."""

from __future__ import annotations

from pathlib import Path

import typer

from copytrade.cli.common import (
    EXIT_PROBLEM,
    EXIT_UNAVAILABLE,
    Table,
    console,
    err_console,
    handles_refusals,
    refuse,
)

app = typer.Typer(
    help="Leader metrics: ledger → Parquet extract, dbt warehouse (DuckDB or PostgreSQL), leaderboard.",
    no_args_is_help=True,
)


def _warehouse():
    from copytrade.analytics.warehouse import Warehouse

    return Warehouse.default()


@app.command()
@handles_refusals
def extract(
    full: bool = typer.Option(
        False, "--full", help="Ignore the watermarks and extract everything again."
    ),
) -> None:
    """Extract ledger rows new since the last watermark into the warehouse's sources."""
    from copytrade.analytics.extract import extract as run_extract
    from copytrade.config import get_settings

    warehouse = _warehouse()
    sink = warehouse.sink()
    with console.status("extracting the ledger"):
        try:
            report = run_extract(sink, get_settings().ledger_url, full=full)
        finally:
            getattr(sink, "close", lambda: None)()
    table = Table(
        "table",
        "kind",
        "new rows",
        "watermark",
        "pending",
        title=f"extract batch {report.batch} → {report.sink}",
    )
    for t in report.tables:
        table.add_row(t.name, t.kind, f"{t.rows:,}", f"{t.watermark:,}", str(t.pending))
    console.print(table)


@app.command()
@handles_refusals
def build(
    full_refresh: bool = typer.Option(
        False, "--full-refresh", help="Re-extract and rebuild every model from scratch."
    ),
    unit_tests: bool = typer.Option(
        False, "--unit-tests", help="Also run the dbt unit tests of the formulas."
    ),
    as_of: str = typer.Option(
        None, "--as-of", help="Last day to describe (YYYY-MM-DD); default the latest day of data."
    ),
) -> None:
    """Extract, then `dbt build` the warehouse (models, seeds, data tests)."""
    from datetime import date

    from copytrade.analytics.warehouse import build as run_build

    dbt_vars = {}
    if as_of is not None:
        try:
            dbt_vars["as_of_date"] = date.fromisoformat(as_of).isoformat()
        except ValueError:
            raise refuse(f"--as-of {as_of!r} is not a day YYYY-MM-DD") from None
    warehouse = _warehouse()
    with console.status(f"building {warehouse.describe()}"):
        report = run_build(
            warehouse,
            full_refresh=full_refresh,
            with_unit_tests=unit_tests,
            dbt_vars=dbt_vars or None,
        )
    if report.extract:
        console.print(
            f"extract batch {report.extract.batch}: {report.extract.rows:,} rows in {report.extract_seconds:.1f} s"
        )
    console.print(report.dbt.summary())
    if not report.dbt.success:
        for unique_id, status, message in report.dbt.failures:
            err_console.print(
                f"[bold red]{status}[/] {unique_id}: {message.splitlines()[0] if message else ''}"
            )
        if report.dbt.error:
            err_console.print(report.dbt.error)
        raise typer.Exit(EXIT_PROBLEM)
    _say_unmarked(warehouse)


def _say_unmarked(warehouse) -> None:
    """Name the held positions the build could not mark (their metrics: marks_complete false)."""
    from copytrade.analytics.marks_coverage import unmarked_symbols

    missing = unmarked_symbols(warehouse)
    if not missing:
        console.print("marks complete: every held position had a mark on every day")
        return
    err_console.print(
        f"[bold yellow]marks missing[/] for {len(missing)} held symbols (carried at cost or at an "
        "older close; their metrics show marks_complete = false). Load them with "
        "`copytrade marks load FILES…` or `copytrade marks fetch`:"
    )
    for item in missing[:20]:
        err_console.print(f"  {item.describe()}")
    if len(missing) > 20:
        err_console.print(f"  … and {len(missing) - 20} more")


@app.command()
@handles_refusals
def docs(
    output: Path = typer.Option(
        None,
        file_okay=False,
        help="Copy the generated site (index.html, manifest, catalog) to this folder.",
    ),
) -> None:
    """Generate the dbt documentation site of the warehouse for analysts (`dbt docs generate`)."""
    import shutil

    from copytrade.analytics.warehouse import DBT_PROJECT, run_dbt

    warehouse = _warehouse()
    with console.status("generating dbt docs"):
        run = run_dbt(warehouse, ["docs", "generate"])
    if not run.success:
        err_console.print(run.error or "dbt docs generate failed")
        raise typer.Exit(EXIT_PROBLEM)
    target = (
        (warehouse.artifacts_dir / "target") if warehouse.artifacts_dir else DBT_PROJECT / "target"
    )
    if output:
        output.mkdir(parents=True, exist_ok=True)
        for name in ("index.html", "manifest.json", "catalog.json"):
            shutil.copy2(target / name, output / name)
        target = output
    console.print(
        f"dbt docs in {target} (open index.html, or `dbt docs serve --project-dir dbt_project`)"
    )


def top_command(
    period: str = typer.Option("90d", help="7d, 30d, 90d or all (R-MET-1)."),
    sort: str = typer.Option(
        "sharpe", help="sharpe (default), pnl, roi, mdd or copiers (R-MET-4)."
    ),
    limit: int = typer.Option(20, max=10_000, help="How many listings (at most 10,000)."),
) -> None:
    """Print the top of the leaderboard (offline listings hidden, full ones marked)."""
    from copytrade.analytics.leaderboard import NoWarehouse, WarehouseUnavailable, top

    with handles_refusals_context():
        try:
            rows = top(_warehouse(), period=period, sort=sort, limit=limit)
        except (NoWarehouse, WarehouseUnavailable) as exc:
            err_console.print(f"[bold red]no leaderboard:[/] {exc}")
            raise typer.Exit(EXIT_UNAVAILABLE) from None
    table = Table(
        "#",
        "portfolio",
        "nickname",
        "Sharpe",
        "PnL USD",
        "ROI %",
        "MDD %",
        "win rate",
        "copiers",
        "AUM USD",
        "days",
        "marks",
        title=f"Leaderboard {period}, by {sort}"
        + (f" (metric date {rows[0]['metric_date']})" if rows else ""),
    )
    for position, row in enumerate(rows, start=1):
        copiers = f"{row['copiers']}/{row['follower_cap']}" + (" FULL" if row["is_full"] else "")
        table.add_row(
            str(position),
            str(row["portfolio_id"]),
            row["nickname"] + (" (private)" if row["visibility"] == "private" else ""),
            _num(row["sharpe"], 2),
            _num(row["pnl_usd"], 2),
            _num(row["roi_pct"], 2),
            _num(row["mdd_pct"], 2),
            _num(None if row["win_rate"] is None else 100 * row["win_rate"], 1),
            copiers,
            _num(row["aum_usd"], 0),
            str(row["history_days"]),
            "complete" if row["marks_complete"] else f"{row['unmarked_days']} d missing",
        )
    console.print(table)


def handles_refusals_context():
    from copytrade.cli.common import refusals

    return refusals()


def _num(value, places: int) -> str:
    if value is None:
        return "—"
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if number != number:  # NaN
        return "—"
    return f"{number:,.{places}f}"


app.command("top")(top_command)


def register(leaders_app: typer.Typer) -> None:
    """Add `top` to the `copytrade leaders` group (owned by the leaders area)."""
    leaders_app.command("top")(top_command)
