"""`copytrade settle` and `copytrade validate`: settle profit shares and rebates, validate the ledger.

Settlement always validates first (the ``ledger_integrity`` checkpoint); there is no switch to pay
without it (R-LED-7). Exit codes: 0 done; 1 validation failed (nothing paid); 2 bad input
(nothing changed); 3 the ledger database is unreachable.
"""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from copytrade import clock
from copytrade.cli.common import (
    EXIT_PROBLEM,
    EXIT_UNAVAILABLE,
    Table,
    check_id,
    console,
    err_console,
    refusals,
)
from copytrade.config import get_settings
from copytrade.domain.errors import RuleViolation
from copytrade.domain.inputs import decimal_field
from copytrade.settlement.cycles import EVENT_TRIGGERS, parse_week

WEEKLY_HELP = "Settle the weekly cycle (R-SET-4): every copy, once per ISO week."


def _parse_at(value: str | None) -> datetime:
    if value is None:
        return clock.now()
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise RuleViolation(
            "at", value, "R-SET-4", "an instant looks like 2025-01-13T00:00:00+00:00"
        ) from None
    if at.tzinfo is None:
        raise RuleViolation(
            "at", value, "R-SET-4", "an instant must carry a time zone (e.g. +00:00)"
        )
    return at


def _parse_marks(marks: list[str], marks_file: Path | None, sessions=None):
    """Marks given by hand; none given: the recorded ``mark_prices`` (with ``sessions``)."""
    from copytrade.settlement.marks import NO_MARKS, RecordedMarks, SnapshotMarks, StaticMarks

    if marks and marks_file:
        raise RuleViolation("mark", marks, "R-SET-3", "give --mark or --marks-file, not both")
    if marks_file:
        return SnapshotMarks.load(marks_file)
    prices: dict[str, Decimal] = {}
    for item in marks:
        symbol, sep, price = item.partition("=")
        if not sep or not symbol.strip():
            raise RuleViolation("mark", item, "R-SET-3", "a mark looks like BTCUSDT=61000.5")
        try:  # a price the ledger can hold: finite, at most 8 decimals, bounded
            value = decimal_field(f"mark of {symbol.strip()}", price, "R-SET-3")
        except RuleViolation as exc:
            raise RuleViolation("mark", item, "R-SET-3", exc.message) from None
        if value <= 0:
            raise RuleViolation("mark", item, "R-SET-3", "a mark price must be positive")
        prices[symbol.strip().upper()] = value
    if prices:
        return StaticMarks(prices)
    return RecordedMarks(sessions) if sessions is not None else NO_MARKS


def _database() -> str:
    return make_url(get_settings().ledger_url).render_as_string(hide_password=True)


def settle(
    cycle: str = typer.Option(None, "--cycle", help="'weekly': " + WEEKLY_HELP),
    week: str = typer.Option(
        None, help="ISO week of the weekly cycle, e.g. 2025-W03 (default: this week)."
    ),
    copy_id: int = typer.Option(
        None, "--copy", help="Settle one copy for an event trigger (R-SET-5).", callback=check_id
    ),
    trigger: str = typer.Option(None, help=f"Event trigger: {', '.join(EVENT_TRIGGERS)}."),
    ref: str = typer.Option(None, help="Reference of a profit withdrawal (withdraw_profit only)."),
    pending_events: bool = typer.Option(
        False,
        "--pending-events",
        help="Settle every stopped copy whose final settlement has not run.",
    ),
    at: str = typer.Option(
        None, help="Settlement instant for events, ISO 8601 with zone (default: now)."
    ),
    mark: list[str] = typer.Option(
        [], "--mark", help="Mark price SYMBOL=PRICE (repeatable) for futures."
    ),
    marks_file: Path = typer.Option(
        None, help='Mark snapshot JSON: {"taken_at": "…", "prices": {"BTCUSDT": "61000"}}.'
    ),
    batch_size: int = typer.Option(10_000, min=1, help="Copies per committed batch."),
    data_docs: bool = typer.Option(
        False, help="Also write GX Data Docs of the validation (var/gx/)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Validate the ledger, then pay profit shares and rebates (weekly cycle or an event trigger).

    Examples: `copytrade settle --cycle weekly --mark BTCUSDT=61000`;
    `copytrade settle --copy 42 --trigger stop_copy`; `copytrade settle --pending-events`.
    """
    from copytrade.db import session_factory
    from copytrade.settlement import (
        RecordedMarks,
        SettlementBlocked,
        SettlementService,
        ledger_integrity_gate,
        weekly_cycle,
    )

    with refusals():
        modes = [bool(cycle), copy_id is not None, pending_events]
        if sum(modes) != 1:
            raise RuleViolation(
                "cycle",
                cycle,
                "R-SET-5",
                "choose one of --cycle weekly, --copy ID --trigger T, --pending-events",
            )
        if cycle and cycle != "weekly":
            raise RuleViolation("cycle", cycle, "R-SET-4", "the only scheduled cycle is 'weekly'")
        if copy_id is not None and not trigger:
            raise RuleViolation(
                "trigger",
                trigger,
                "R-SET-5",
                f"--copy needs --trigger, one of {', '.join(EVENT_TRIGGERS)}",
            )
        if trigger and copy_id is None:
            raise RuleViolation("copy", None, "R-SET-5", "--trigger needs --copy ID")
        url = get_settings().ledger_url
        marks = _parse_marks(mark, marks_file, session_factory(url))
        when = parse_week(week) if week is not None else _parse_at(at)
        if isinstance(marks, RecordedMarks):  # read before settlement's transaction opens
            marks.preload(when, weekly_cycle(when).as_of)
    progress = Progress(
        TextColumn("settling"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
    )
    task = progress.add_task("copies", total=None)

    def on_batch(event) -> None:
        if event.stage == "committed":
            progress.update(task, completed=event.done, total=event.total)

    service = SettlementService(
        session_factory(url),
        gate=ledger_integrity_gate(url, data_docs=data_docs),
        marks=marks,
        batch_size=batch_size,
        on_batch=on_batch,
    )
    try:
        with progress, refusals():
            if cycle:
                report = service.settle_weekly(when)
            elif pending_events:
                report = service.settle_pending_events(when)
            else:
                report = service.settle_copy(copy_id, trigger, ref=ref, at=when)
    except SettlementBlocked as blocked:
        _print_report(blocked.report, as_json)
        err_console.print(
            f"[bold red]blocked:[/] {blocked.report.blocked_reason} — nothing was paid (R-LED-7)"
        )
        raise typer.Exit(EXIT_PROBLEM) from None
    except OperationalError as exc:
        err_console.print(f"[bold red]unavailable:[/] ledger database {_database()}: {exc.orig}")
        raise typer.Exit(EXIT_UNAVAILABLE) from None
    _print_report(report, as_json)


def _print_report(report, as_json: bool) -> None:
    if as_json:
        console.print_json(
            json.dumps(
                {
                    **report.summary(),
                    "leaders": report.leader_rows(),
                    "withheld": report.withheld_rows(),
                }
            )
        )
        return
    console.print(
        f"[bold]{report.trigger}[/] as of {report.as_of.isoformat()}: {report.status}; "
        f"{report.copies_settled} copies settled in {len(report.cycle_keys)} cycle(s); "
        f"shares paid {report.shares_paid}, rebates paid {report.rebates_paid}"
    )
    if report.per_leader:
        table = Table(
            "leader",
            "asset",
            "shares paid",
            "rebates paid",
            "copies paid",
            title="Payouts per leader",
        )
        for row in report.leader_rows():
            table.add_row(
                str(row["leader_person_id"]),
                row["asset"],
                row["shares_paid"],
                row["rebates_paid"],
                str(row["copies_paid"]),
            )
        console.print(table)
    withheld = report.withheld_rows()
    if withheld:
        table = Table("copy", "status", "amount", "reason", title="Paused and deferred shares")
        for row in withheld[:50]:
            table.add_row(
                str(row["copy_id"]), row["status"], f"{row['amount']} {row['asset']}", row["reason"]
            )
        console.print(table)
        if len(withheld) > 50:
            console.print(f"… and {len(withheld) - 50} more")


def validate(
    data_docs: bool = typer.Option(True, help="Write GX Data Docs (var/gx/data_docs/index.html)."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON."),
) -> None:
    """Run the ledger_integrity checkpoint (R-LED-1…6, R-X-4); exit 1 if any expectation fails."""
    from copytrade.validation import validate_ledger

    try:
        with console.status("validating the ledger"):
            report = validate_ledger(get_settings().ledger_url, data_docs=data_docs)
    except OperationalError as exc:
        err_console.print(f"[bold red]unavailable:[/] ledger database {_database()}: {exc.orig}")
        raise typer.Exit(EXIT_UNAVAILABLE) from None
    except ConnectionError:
        # GX's TestConnectionError (a ConnectionError) when GX reaches the database before the
        # chain check does: the same meaning, the same exit code.
        err_console.print(
            f"[bold red]unavailable:[/] ledger database {_database()}: cannot connect"
        )
        raise typer.Exit(EXIT_UNAVAILABLE) from None
    if as_json:
        console.print_json(json.dumps({"passed": report.passed, "checks": report.rows()}))
    else:
        table = Table(
            "rule",
            "check",
            "table",
            "result",
            "offending rows",
            title=f"ledger_integrity on {report.database}",
        )
        for row in report.rows():
            style = "green" if row["result"] == "pass" else "bold red"
            table.add_row(
                row["rule"],
                row["check"],
                row["table"],
                Text(row["result"], style=style),
                str(row["offending_rows"]),
            )
        console.print(table)
        console.print(
            f"hash chain recomputed over {report.chain_checked} transfers; {report.seconds:.1f} s"
        )
        if report.data_docs:
            console.print(f"Data Docs: {report.data_docs}")
    if not report.passed:
        raise typer.Exit(EXIT_PROBLEM)
