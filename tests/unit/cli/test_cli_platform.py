"""The `copytrade` CLI for leaders, copies, wallets and the demo: good input works, bad input is
refused with exit code 2, a message naming the field and the rule, and no change (R-IN-2)."""

from __future__ import annotations

import re
from decimal import Decimal as D
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from copytrade import migrate
from copytrade.cli import app
from copytrade.config import get_settings
from copytrade.db import make_engine
from copytrade.ledger import Ledger
from models import (
    AuditEntry,
    CapacityRequest,
    Copy,
    ExchangeAccount,
    LeadPortfolio,
    LedgerTransfer,
    Person,
)

runner = CliRunner()


@pytest.fixture
def cli_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Point the CLI at a fresh, migrated SQLite database under a temporary home."""
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("COPYTRADE_DATABASE_URL", url)
    monkeypatch.setenv("COPYTRADE_HOME", str(tmp_path / "home"))
    get_settings.cache_clear()
    migrate.upgrade(url)
    yield url
    get_settings.cache_clear()


def run(*args: str):
    result = runner.invoke(app, list(args))
    result.text = " ".join(result.output.split())  # rich wraps long lines; compare words
    return result


def ok(*args: str):
    result = run(*args)
    assert result.exit_code == 0, result.output
    return result


def state(url: str) -> dict:
    engine = make_engine(url)
    with Session(engine) as session:
        counts = {
            m.__tablename__: session.scalar(select(func.count()).select_from(m))
            for m in (Person, LeadPortfolio, Copy, CapacityRequest, AuditEntry, LedgerTransfer)
        }
        balances = {(b.address, b.asset): b.amount for b in Ledger(session).balances()}
        statuses = sorted(session.execute(select(Copy.id, Copy.status)).all())
        caps = sorted(
            session.execute(
                select(
                    LeadPortfolio.id,
                    LeadPortfolio.follower_cap,
                    LeadPortfolio.status,
                    LeadPortfolio.nickname,
                    LeadPortfolio.description,
                )
            ).all()
        )
    engine.dispose()
    return {"counts": counts, "balances": balances, "statuses": statuses, "portfolios": caps}


def seed() -> tuple[int, int, str]:
    """Create a spot leader, a private futures leader and one follower through the CLI."""
    ok("wallets", "deposit", "--handle", "alice", "--amount", "5000", "--key", "a1")
    ok("wallets", "deposit", "--handle", "chen", "--amount", "5000", "--key", "c1")
    ok("wallets", "deposit", "--handle", "erik", "--amount", "1000", "--key", "e1")
    ok(
        "leaders",
        "apply",
        "--handle",
        "alice",
        "--mode",
        "spot",
        "--nickname",
        "AlphaAlice",
        "--description",
        "BTC swings",
        "--capital",
        "1000",
        "--accept-agreement",
    )
    out = ok(
        "leaders",
        "apply",
        "--handle",
        "chen",
        "--mode",
        "futures",
        "--nickname",
        "ChenPrivate",
        "--description",
        "invite only",
        "--capital",
        "2000",
        "--accept-agreement",
        "--private",
        "--profit-share",
        "20%",
    )
    code = re.search(r"invitation code: (\w+)", out.text).group(1)
    return 1, 2, code


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["leaders"],
        ["leaders", "apply"],
        ["leaders", "edit"],
        ["leaders", "close"],
        ["leaders", "list"],
        ["leaders", "capacity-request"],
        ["leaders", "capacity-decide"],
        ["leaders", "scan-impersonation"],
        ["copies"],
        ["copies", "start"],
        ["copies", "stop"],
        ["copies", "list"],
        ["copies", "edit"],
        ["copies", "add-funds"],
        ["copies", "withdraw-profit"],
        ["copies", "show"],
        ["leaders", "show"],
        ["wallets"],
        ["wallets", "deposit"],
        ["ledger", "balances"],
        ["db", "upgrade"],
    ],
)
def test_every_command_has_help_R_IN_2(command):
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0 and "Usage" in result.output


def test_good_flow_leaders_copies_ledger_R_LEAD_3_R_COPY_2_R_COPY_5_R_LEAD_7_R_LEAD_10(cli_db):
    spot, private, code = seed()
    assert len(code) == 8
    listing = ok("leaders", "list").text
    assert "AlphaAlice" in listing and "ChenPrivate" in listing and "0/300" in listing
    ok(
        "copies",
        "start",
        "--handle",
        "erik",
        "--portfolio",
        str(spot),
        "--allocation",
        "300",
        "--sizing",
        "fixed_amount",
        "--fixed-amount",
        "50",
        "--stop-loss",
        "20",
        "--symbol",
        "BTC/USDT",
    )
    ok(
        "copies",
        "start",
        "--handle",
        "erik",
        "--portfolio",
        str(private),
        "--allocation",
        "200",
        "--code",
        code,
        "--leverage",
        "4",
    )
    copies_out = ok("copies", "list", "--handle", "erik").text
    assert "300" in copies_out and "4x" in copies_out
    ok("copies", "stop", "1", "--handle", "erik")
    assert "stopped (stop_copy)" in ok("copies", "list", "--all").text
    ok("leaders", "capacity-request", str(spot), "--handle", "alice", "--cap", "400")
    ok("leaders", "capacity-decide", "1", "--approve", "--operator", "ops-anna", "--reason", "fine")
    assert "0/400" in ok("leaders", "list").text
    ok("leaders", "close", str(private), "--handle", "chen")
    assert "portfolio_closed" in ok("copies", "list", "--all").text
    assert "0 listings taken offline" in ok("leaders", "scan-impersonation").text
    balances = ok("ledger", "balances").text
    assert "leader:1:capital" in balances and "follower:1:cash" in balances
    s = state(cli_db)
    assert s["balances"][("person:3:spot", "USDT")] == D("500")


BAD = [
    (["wallets", "deposit", "--handle", "erik", "--amount", "-5"], "amount", "R-IN-2"),
    (["wallets", "deposit", "--handle", "erik", "--amount", "ten"], "amount", "R-IN-2"),
    (["wallets", "deposit", "--handle", "no spaces!", "--amount", "5"], "handle", "R-IN-2"),
    (
        [
            "leaders",
            "apply",
            "--handle",
            "dana",
            "--mode",
            "spot",
            "--nickname",
            "DanaDips",
            "--description",
            "dips",
            "--capital",
            "200",
            "--accept-agreement",
        ],
        "capital",
        "R-LEAD-1",
    ),
    (
        [
            "leaders",
            "apply",
            "--handle",
            "erik",
            "--mode",
            "futures",
            "--nickname",
            "ErikFut",
            "--description",
            "d",
            "--capital",
            "999",
            "--accept-agreement",
        ],
        "capital",
        "R-LEAD-2",
    ),
    (
        [
            "leaders",
            "apply",
            "--handle",
            "erik",
            "--mode",
            "spot",
            "--nickname",
            "ErikSpot",
            "--description",
            "d",
            "--capital",
            "600",
        ],
        "agreement_accepted",
        "R-LEAD-3",
    ),
    (
        [
            "leaders",
            "apply",
            "--handle",
            "erik",
            "--mode",
            "spot",
            "--nickname",
            "ErikSpot",
            "--description",
            "d",
            "--capital",
            "600",
            "--accept-agreement",
            "--private",
        ],
        "visibility",
        "R-LEAD-4",
    ),
    (
        [
            "leaders",
            "apply",
            "--handle",
            "erik",
            "--mode",
            "futures",
            "--nickname",
            "ErikFut",
            "--description",
            "d",
            "--capital",
            "1000",
            "--accept-agreement",
            "--private",
            "--profit-share",
            "35%",
        ],
        "profit_share_ratio",
        "R-LEAD-5",
    ),
    (
        [
            "leaders",
            "apply",
            "--handle",
            "erik",
            "--mode",
            "futures",
            "--nickname",
            "ErikFut",
            "--description",
            "code Q7W3E9R2",
            "--capital",
            "1000",
            "--accept-agreement",
            "--private",
        ],
        "description",
        "R-LEAD-6",
    ),
    (
        [
            "leaders",
            "apply",
            "--handle",
            "alice",
            "--mode",
            "spot",
            "--nickname",
            "AlphaAlice",
            "--description",
            "d",
            "--capital",
            "600",
            "--accept-agreement",
        ],
        "mode",
        "R-ACC-1",
    ),
    (
        ["leaders", "edit", "2", "--handle", "chen", "--description", "use K7 Q2 M9 XA"],
        "description",
        "R-LEAD-6",
    ),
    (
        ["leaders", "edit", "1", "--handle", "alice", "--profit-share", "0.2"],
        "profit_share_ratio",
        "R-LEAD-5",
    ),
    (["leaders", "close", "1", "--handle", "erik"], "handle", "R-LEAD-10"),
    (["leaders", "close", "99", "--handle", "alice"], "portfolio_id", "R-IN-2"),
    (
        ["leaders", "capacity-request", "1", "--handle", "alice", "--cap", "200"],
        "requested_cap",
        "R-LEAD-7",
    ),
    (["leaders", "capacity-decide", "7", "--approve", "--operator", "ops"], "request_id", "R-IN-2"),
    (
        ["copies", "start", "--handle", "erik", "--portfolio", "2", "--allocation", "100"],
        "invitation_code",
        "R-COPY-2",
    ),
    (
        ["copies", "start", "--handle", "erik", "--portfolio", "1", "--allocation", "5000"],
        "allocation",
        "R-COPY-2",
    ),
    (
        ["copies", "start", "--handle", "alice", "--portfolio", "1", "--allocation", "100"],
        "portfolio",
        "R-ACC-3",
    ),
    (
        [
            "copies",
            "start",
            "--handle",
            "erik",
            "--portfolio",
            "1",
            "--allocation",
            "100",
            "--leverage",
            "3",
        ],
        "leverage",
        "R-COPY-12",
    ),
    (
        [
            "copies",
            "start",
            "--handle",
            "erik",
            "--portfolio",
            "1",
            "--allocation",
            "100",
            "--below-min",
            "maybe",
        ],
        "below_min_policy",
        "R-COPY-6",
    ),
    (
        [
            "copies",
            "start",
            "--handle",
            "erik",
            "--portfolio",
            "1",
            "--allocation",
            "100",
            "--sizing",
            "fixed_amount",
        ],
        "fixed_amount",
        "R-COPY-1",
    ),
    (
        [
            "copies",
            "start",
            "--handle",
            "erik",
            "--portfolio",
            "1",
            "--allocation",
            "100",
            "--stop-loss",
            "150",
        ],
        "stop_loss_pct",
        "R-COPY-3",
    ),
    (
        [
            "copies",
            "start",
            "--handle",
            "erik",
            "--portfolio",
            "1",
            "--allocation",
            "100",
            "--daily-loss-limit",
            "0",
        ],
        "daily_loss_limit",
        "R-X-3",
    ),
    (["copies", "stop", "1", "--handle", "erik"], "copy_id", "R-IN-2"),
    (
        ["copies", "start", "--handle", "erik", "--portfolio", "1", "--allocation", "100"]
        + ["--api-key", "k1"],
        "credentials_ref",
        "R-IN-2",
    ),
    (
        ["copies", "start", "--handle", "erik", "--portfolio", "1", "--allocation", "100"]
        + ["--api-key", "k1", "--credentials-ref", "the-secret-itself"],
        "credentials_ref",
        "R-IN-2",
    ),
]


@pytest.mark.parametrize(("args", "field", "rule"), BAD, ids=[f"{r}-{f}" for _, f, r in BAD])
def test_bad_input_exit_2_names_field_and_rule_changes_nothing_R_IN_2(cli_db, args, field, rule):
    seed()
    before = state(cli_db)
    result = run(*args)
    assert result.exit_code == 2, result.output
    assert "refused" in result.text and field in result.text and f"({rule})" in result.text
    assert state(cli_db) == before


def test_malformed_option_type_exit_2_names_option_R_IN_2(cli_db):
    seed()
    before = state(cli_db)
    result = run("copies", "start", "--handle", "erik", "--portfolio", "one", "--allocation", "10")
    assert result.exit_code == 2 and "--portfolio" in result.text
    assert state(cli_db) == before


def test_deposit_key_makes_it_idempotent_R_IN_2(cli_db):
    ok("wallets", "deposit", "--handle", "erik", "--amount", "10", "--key", "same")
    again = ok("wallets", "deposit", "--handle", "erik", "--amount", "10", "--key", "same")
    assert "nothing changed" in again.text
    assert state(cli_db)["balances"][("person:1:spot", "USDT")] == D("10")


def test_unmigrated_database_exit_3(tmp_path, monkeypatch):
    monkeypatch.setenv("COPYTRADE_DATABASE_URL", f"sqlite:///{tmp_path / 'empty.db'}")
    get_settings.cache_clear()
    try:
        result = run("leaders", "list")
        assert result.exit_code == 3 and "copytrade db upgrade" in result.text
    finally:
        get_settings.cache_clear()


def test_demo_runs_as_python_m_demo_with_help_R_IN_2():
    """The demo is its own top-level package beside flows/ (``scripts/demo`` runs it)."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    done = subprocess.run(
        [sys.executable, "-m", "demo", "--help"], cwd=root, capture_output=True, text=True
    )
    assert done.returncode == 0 and "--fast" in done.stdout, done.stderr


def test_demo_sign_up_refuses_with_reasons_and_starts_fresh_R_LEAD_1_R_COPY_2(tmp_path):
    """The demo's first act (leaders apply, followers join) on a fresh database, twice: the same
    refusals with their reasons and the same copies each time. The whole demo (paper exchange,
    engine, settlement, metrics) runs in tests/e2e/test_demo.py."""
    from rich.console import Console
    from sqlalchemy.orm import sessionmaker

    from demo.story import FAST, DemoResult, _Story, demo_database, reset_database

    outcomes = []
    for _ in range(2):
        path, url = demo_database(tmp_path)
        reset_database(path)
        migrate.upgrade(url)
        engine = make_engine(url)
        try:
            console = Console(record=True, width=200)
            result = DemoResult(database_url=url, database_path=path)
            story = _Story(console, url, sessionmaker(engine), result, tmp_path, FAST)
            story.sign_up()
        finally:
            engine.dispose()
        text = console.export_text()
        assert "capital 200 USD is below the spot minimum of 500 USD (R-LEAD-1)" in text
        assert "invitation code is required (R-COPY-2)" in text
        assert len(result.refusals) == 2 and len(result.portfolios) == 3
        assert result.copies["sam->pepe"] and "stop_loss_pct=1" in text
        outcomes.append((result.portfolios, result.copies))
    assert outcomes[0] == outcomes[1]


def test_copy_start_links_the_followers_exchange_account_once_R_COPY_2_R_IN_2(cli_db):
    """The account the engine trades a copy on: linked by key and reference (never the secret);
    another person's key is refused and nothing changes."""
    seed()
    start = ("copies", "start", "--portfolio", "1", "--allocation", "100")
    ok(*start, "--handle", "erik", "--api-key", "erik-key", "--credentials-ref", "env:ERIK_SECRET")
    engine = make_engine(cli_db)
    with Session(engine) as session:
        copy = session.scalars(select(Copy)).one()
        account = session.get(ExchangeAccount, copy.exchange_account_id)
        assert (account.market, account.api_key_id, account.credentials_ref) == (
            "spot",
            "erik-key",
            "env:ERIK_SECRET",
        )
        assert account.person_id == copy.follower_person_id
    engine.dispose()
    ok("wallets", "deposit", "--handle", "fay", "--amount", "500", "--key", "f1")
    before = state(cli_db)
    taken = run(
        *start, "--handle", "fay", "--api-key", "erik-key", "--credentials-ref", "env:FAY_SECRET"
    )
    assert taken.exit_code == 2 and "api_key" in taken.text and "(R-IN-2)" in taken.text
    assert state(cli_db) == before


def test_a_nickname_that_looks_like_markup_is_shown_as_typed_R_IN_2(cli_db):
    """A leader's text is shown, never read as rich markup: "[/]" in a nickname or description
    ended every listing that showed it with a MarkupError (exit 1), for every user."""
    spot, _, _ = seed()
    odd = "[/]Alpha[bold]"
    edit = ("leaders", "edit", str(spot), "--handle", "alice")
    assert odd in ok(*edit, "--nickname", odd, "--description", "[red]swings[/]").output
    ok("copies", "start", "--handle", "erik", "--portfolio", str(spot), "--allocation", "300")
    assert odd in ok("leaders", "list").output
    assert odd in ok("leaders", "show", str(spot)).output
    assert odd in ok("copies", "list", "--handle", "erik").output
