"""`copytrade leaders`: apply for, edit, close and list lead portfolios; capacity; impersonation."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import typer

from copytrade.cli.common import ID_MAX, Table, check_id, console, refusals, refuse
from copytrade.cli.platform_db import money, transaction
from copytrade.domain.leaders import LeaderApplication
from copytrade.platform import leaders

app = typer.Typer(
    help="Lead portfolios: apply, edit, close, list; follower capacity; impersonation scan.",
    no_args_is_help=True,
)


@app.command()
def apply(
    handle: str = typer.Option(..., help="The applicant's handle (created if new)."),
    mode: str = typer.Option(..., help="spot or futures."),
    nickname: str = typer.Option(..., help="Public nickname (2-32 characters)."),
    description: str = typer.Option(..., help="Short portfolio description."),
    capital: str = typer.Option(
        ..., help="USDT moved from the spot wallet: spot 500-250,000, futures 1,000-500,000."
    ),
    accept_agreement: bool = typer.Option(
        False, "--accept-agreement", help="Accept the user service agreement (required)."
    ),
    private: bool = typer.Option(
        False, "--private", help="Futures only: joined with an invitation code."
    ),
    profit_share: str = typer.Option(
        None, help="Private futures only: 0 to 0.3 (or 0%-30%); others share 10 %."
    ),
) -> None:
    """Apply for a lead portfolio (R-LEAD-1..6, R-ACC-1); prints its id and invitation code."""
    application = LeaderApplication(
        mode=mode,
        nickname=nickname,
        description=description,
        capital=capital,
        agreement_accepted=accept_agreement,
        visibility="private" if private else "public",
        profit_share_ratio=profit_share,
    )
    with transaction() as session:
        portfolio = leaders.apply(session, handle, application)
        pid, code, ratio = portfolio.id, portfolio.invitation_code, portfolio.profit_share_ratio
    console.print(
        f"lead portfolio [bold]{pid}[/] opened for {handle}: {application.mode} "
        f"{'private' if code else 'public'}, profit share {money(ratio * 100)} %, "
        f"capital {money(portfolio.capital)} USDT"
    )
    if code:
        console.print(f"invitation code: [bold]{code}[/] (share it privately)")


@app.command()
def edit(
    portfolio_id: int = typer.Argument(..., help="Lead portfolio id.", callback=check_id),
    handle: str = typer.Option(..., help="The leader's handle."),
    nickname: str = typer.Option(
        None, help="New nickname (applies to all of the leader's portfolios)."
    ),
    description: str = typer.Option(None, help="New description."),
    profit_share: str = typer.Option(None, help="Always refused: fixed at creation (R-LEAD-5)."),
) -> None:
    """Edit a portfolio's nickname or description (R-LEAD-6, R-LEAD-9, R-ACC-1)."""
    with transaction() as session:
        p = leaders.edit_listing(
            session,
            portfolio_id,
            handle,
            nickname=nickname,
            description=description,
            profit_share_ratio=profit_share,
        )
        console.print(f"portfolio {p.id} now listed as {p.nickname!r}", markup=False)


@app.command()
def close(
    portfolio_id: int = typer.Argument(..., help="Lead portfolio id.", callback=check_id),
    handle: str = typer.Option(..., help="The leader's handle."),
    reason: str = typer.Option("", help="Reason recorded in the audit log."),
) -> None:
    """Close a portfolio (R-LEAD-10): every active copy stops; settlement follows."""
    with transaction() as session:
        closed = leaders.close(session, portfolio_id, handle, reason)
    console.print(
        f"portfolio {closed.portfolio_id} closed; {len(closed.stopped_copy_ids)} copies stopped "
        "(reason portfolio_closed), awaiting settlement"
    )


@app.command("list")
def list_(
    all_: bool = typer.Option(False, "--all", help="Include closed portfolios."),
) -> None:
    """List lead portfolios with followers, cap and listing state."""
    with transaction() as session:
        rows = leaders.list_portfolios(session, include_closed=all_)
    table = Table(
        "id",
        "leader",
        "nickname",
        "mode",
        "visibility",
        "share",
        "capital",
        "followers",
        "status",
        title="Lead portfolios",
    )
    for r in rows:
        state = r.status if r.is_listed or r.status != "active" else "offline"
        if r.status == "active" and r.is_full:
            state += " (full)"
        table.add_row(
            str(r.id),
            r.leader,
            r.nickname,
            r.mode,
            r.visibility,
            f"{money(r.ratio * 100)} %",
            money(r.capital),
            f"{r.followers}/{r.follower_cap}",
            state,
        )
    console.print(table)


@app.command()
def show(
    portfolio_id: int = typer.Argument(..., help="Lead portfolio id.", callback=check_id),
) -> None:
    """Show a lead portfolio: terms, followers, AUM and leader leverage violations (R-LEAD-8)."""
    from copytrade.platform.leaders import portfolio_aum

    with transaction() as session:
        p = leaders.get_portfolio(session, portfolio_id)
        row = next(r for r in leaders.list_portfolios(session, include_closed=True) if r.id == p.id)
        aum = portfolio_aum(session, p)
        violations = leaders.leverage_violations(session, p.id)
    state = (
        row.status if row.is_listed or row.status != "active" else f"offline ({row.offline_reason})"
    )
    console.print(
        f"portfolio {row.id}: {row.nickname} by {row.leader} ({row.mode}, {row.visibility})",
        markup=False,  # the nickname is the leader's text, not rich markup
    )
    console.print(f"status: {state}")
    console.print(f"profit share: {money(row.ratio * 100)} %")
    console.print(f"capital: {money(row.capital)} USDT; AUM: {money(aum)} USD")
    console.print(f"followers: {row.followers}/{row.follower_cap}")
    if not violations:
        console.print("leader leverage violations (R-LEAD-8): none")
        return
    table = Table(
        "opened at",
        "symbol",
        "leverage",
        "AUM (USD)",
        "trade",
        title="Leader leverage violations (R-LEAD-8)",
    )
    for v in violations:
        table.add_row(
            v.opened_at.isoformat(timespec="seconds"),
            v.symbol,
            f"{v.leverage}x",
            money(v.aum),
            v.exchange_ref,
        )
    console.print(table)


@app.command("capacity-request")
def capacity_request(
    portfolio_id: int = typer.Argument(..., help="Lead portfolio id.", callback=check_id),
    handle: str = typer.Option(..., help="The leader's handle."),
    cap: str = typer.Option(
        ..., help="Requested follower cap (above the current one, at most 1000)."
    ),
) -> None:
    """Ask an operator to raise the follower cap (R-LEAD-7)."""
    with transaction() as session:
        request = leaders.request_capacity(session, portfolio_id, handle, cap)
        console.print(
            f"capacity request {request.id}: {request.current_cap} → {request.requested_cap} (pending)"
        )


@app.command("capacity-decide")
def capacity_decide(
    request_id: int = typer.Argument(..., help="Capacity request id.", callback=check_id),
    approve: bool = typer.Option(..., "--approve/--reject", help="The operator's decision."),
    operator: str = typer.Option(..., help="The deciding operator's name."),
    reason: str = typer.Option("", help="Reason recorded with the decision."),
) -> None:
    """Approve or reject a capacity request (R-LEAD-7); both are recorded."""
    with transaction() as session:
        request = leaders.decide_capacity(
            session, request_id, approve=approve, operator=operator, reason=reason
        )
        console.print(f"capacity request {request.id} {request.status} by {operator}")


@app.command("scan-impersonation")
def scan_impersonation(
    operator: str = typer.Option("system", help="Actor recorded in the audit log."),
) -> None:
    """Take offline listings imitating an advanced leader's nickname (R-LEAD-9)."""
    with transaction() as session:
        takedowns = leaders.scan_impersonation(session, actor=operator)
    for t in takedowns:
        console.print(
            f"portfolio {t.portfolio_id} {t.nickname!r} taken offline: imitates "
            f"{t.imitated_nickname!r} (portfolio {t.imitated_portfolio_id})"
        )
    console.print(f"{len(takedowns)} listings taken offline")


@app.command("import-fills")
def import_fills(
    file: Path = typer.Argument(
        ..., help="Leader fills: the Binance copy-trading export or the plain CSV."
    ),
    portfolio: int = typer.Option(
        ..., "--portfolio", help="Lead portfolio the fills belong to.", callback=check_id
    ),
    fmt: str = typer.Option(
        None, "--format", help="binance-copy-trading or plain (default: detected)."
    ),
    capital_since: str = typer.Option(
        None,
        "--capital-since",
        help="UTC day (YYYY-MM-DD) the portfolio's capital counts from; default the day of the "
        "file's first fill (docs/metrics.md).",
    ),
) -> None:
    """Import a leader's past fills (R-IN-1): bad rows quarantined one by one, the rest stored.

    Prints the counts as JSON. Idempotent: importing the same file again stores nothing.
    """
    from copytrade.engine.importer import import_fills as run_import

    if not file.is_file():
        raise refuse(f"file {file} does not exist (R-IN-2)")
    if fmt not in (None, "binance-copy-trading", "plain"):
        raise refuse(f"--format {fmt!r} is not binance-copy-trading or plain (R-IN-2)")
    since = None
    if capital_since is not None:
        try:
            since = date.fromisoformat(capital_since)
        except ValueError:
            raise refuse(f"--capital-since {capital_since!r} is not a day YYYY-MM-DD") from None
    with transaction() as session:
        report = run_import(session, portfolio, file, fmt, capital_since=since)
    console.print_json(json.dumps(report.as_dict()))


@app.command()
def report(
    handle: str = typer.Argument(..., help="The leader's handle, or a lead portfolio id."),
    output: Path = typer.Option(..., "--output", help="FILE.html or FILE.png to write."),
    portfolio: int = typer.Option(
        None,
        "--portfolio",
        help="Which of the leader's portfolios (when there are several).",
        callback=check_id,
    ),
) -> None:
    """Draw a leader's equity, drawdown and monthly returns over 7/30/90 days and all time, with
    the R-MET figures (from the warehouse: run `copytrade metrics build` first)."""
    from copytrade.analytics import report as leader_report
    from copytrade.analytics.leaderboard import NoWarehouse, WarehouseUnavailable
    from copytrade.analytics.warehouse import Warehouse
    from copytrade.cli.common import EXIT_UNAVAILABLE, err_console

    if output.suffix.lower() not in (".html", ".png"):
        raise refuse(f"--output {output.name!r} must end in .html or .png")
    if not output.parent.is_dir():
        raise refuse(f"--output {str(output)!r}: folder {str(output.parent)!r} does not exist")
    portfolio_id = _portfolio_of(handle, portfolio)
    try:
        with refusals():
            data = leader_report.load(Warehouse.default(), portfolio_id)
    except (NoWarehouse, WarehouseUnavailable) as exc:
        err_console.print(f"[bold red]no warehouse:[/] {exc}")
        raise typer.Exit(EXIT_UNAVAILABLE) from None
    written = leader_report.write(data, output)
    console.print(
        f"report of portfolio {portfolio_id} ({data.nickname}) written to {written}", markup=False
    )


def _portfolio_of(handle: str, portfolio: int | None) -> int:
    """A portfolio id from a handle (its only portfolio, or --portfolio among them) or an id."""
    from sqlalchemy import select

    from models import LeadPortfolio, Person

    if handle.isdigit():
        if not 1 <= int(handle) <= ID_MAX:
            raise refuse(f"handle: {handle} must be a positive portfolio id ≤ {ID_MAX} (R-IN-2)")
        return int(handle)
    with transaction() as session:
        ids = list(
            session.scalars(
                select(LeadPortfolio.id)
                .join(Person, Person.id == LeadPortfolio.leader_person_id)
                .where(Person.handle == handle)
                .order_by(LeadPortfolio.id)
            )
        )
    if not ids:
        raise refuse(f"handle {handle!r} has no lead portfolio")
    if portfolio is not None:
        if portfolio not in ids:
            raise refuse(f"--portfolio {portfolio} is not one of {handle}'s portfolios {ids}")
        return portfolio
    if len(ids) > 1:
        raise refuse(f"{handle} has portfolios {ids}: choose one with --portfolio")
    return ids[0]
