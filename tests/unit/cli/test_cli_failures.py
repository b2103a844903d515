"""Every failure a clear error, as users run the command (``python -m copytrade``): an unreachable
database or exchange is one line naming it (password hidden) and exit 3 on every command; a bad
--exchange is exit 2 naming the option; every command's --help states its exit codes (R-IN-2)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from copytrade.cli import EXIT_CODES, app
from copytrade.config import get_settings
from copytrade.db import make_engine
from models import Base
from models.trading import IngestGap
from tests.support.engine_world import make_world

DOWN = "postgresql+psycopg://ledger:s3cr3t-pw@127.0.0.1:1/ledger"


@pytest.fixture
def cli_db(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    engine = make_engine(url)
    Base.metadata.create_all(engine)
    monkeypatch.setenv("COPYTRADE_DATABASE_URL", url)
    get_settings.cache_clear()
    yield engine
    get_settings.cache_clear()
    engine.dispose()


def run_cli(*args: str, database_url: str = DOWN, **env: str) -> subprocess.CompletedProcess:
    environment = dict(os.environ, COPYTRADE_DATABASE_URL=database_url, **env)
    environment.pop("COPYTRADE_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "copytrade", *args],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    "args",
    [
        ["engine", "run", "--exchange", "http://127.0.0.1:9"],
        ["engine", "reconcile", "--exchange", "http://127.0.0.1:9"],
        ["engine", "status"],
        ["ledger", "verify-chain"],
        ["ledger", "balances"],
        ["db", "upgrade"],
        ["leaders", "import-fills", "{csv}", "--portfolio", "1"],
    ],
    ids=lambda a: " ".join(a[:2]),
)
def test_unreachable_dependency_is_one_line_and_exit_3_R_IN_2(args, tmp_path):
    csv = tmp_path / "fills.csv"
    csv.write_text(
        "time,symbol,side,price,quantity\n2025-02-01T00:00:00+00:00,ONDOUSDT,buy,1.2,10\n"
    )
    result = run_cli(*(str(csv) if a == "{csv}" else a for a in args))
    assert result.returncode == 3, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "unreachable" in lines[0] and "Traceback" not in result.stderr + result.stdout
    assert "s3cr3t-pw" not in result.stderr + result.stdout


def test_database_unreachable_names_the_url_with_the_password_hidden_R_IN_2():
    result = run_cli("ledger", "balances")
    assert result.stderr.strip().startswith(
        "database unreachable: postgresql+psycopg://ledger:***@127.0.0.1:1/ledger"
    )


def test_exchange_unreachable_names_the_exchange_R_IN_2(tmp_path):
    result = run_cli(
        "engine",
        "reconcile",
        "--exchange",
        "http://127.0.0.1:9",
        database_url=f"sqlite:///{tmp_path / 'ok.db'}",
    )
    assert result.returncode == 3, result.stderr
    assert result.stderr.startswith("exchange unreachable: http://127.0.0.1:9/")


@pytest.mark.parametrize("value", ["ftp://x", "http://", "paperr", "http://host:port"])
def test_engine_run_refuses_a_bad_exchange_with_exit_2_R_IN_2(value):
    result = CliRunner().invoke(app, ["engine", "run", "--exchange", value], terminal_width=300)
    out = " ".join(re.sub("[│╭╮╰╯─]", " ", result.output).split())
    assert result.exit_code == 2, out
    assert "--exchange" in out and "paper, binance, or an http(s)://host[:port] URL" in out


def _commands(typer_app, prefix=()):
    for command in typer_app.registered_commands:
        name = command.name or command.callback.__name__.replace("_", "-")
        yield (*prefix, name), command
    for group in typer_app.registered_groups:
        yield from _commands(group.typer_instance, (*prefix, group.name))


def test_every_command_states_its_exit_codes_in_its_help_R_IN_2():
    runner = CliRunner()
    for path, command in _commands(app):
        assert command.epilog and "Exit codes" in command.epilog, path
        result = runner.invoke(app, [*path, "--help"], terminal_width=200)
        assert result.exit_code == 0, (path, result.output)
        assert "Exit codes" in result.output, path
    assert "3 the database or the exchange cannot be reached" in EXIT_CODES


def test_engine_status_shows_a_close_only_portfolio_and_exits_1_R_IN_3(cli_db):
    with Session(cli_db) as session, session.begin():
        world = make_world(session, copies=[])
        session.add(
            IngestGap(
                portfolio_id=world.portfolio_id,
                kind="backfill_failed",
                detail="503 on userTrades",
            )
        )
    result = CliRunner().invoke(app, ["engine", "status"], terminal_width=200)
    assert result.exit_code == 1, result.output
    assert "close-only" in result.output and "backfill_failed" in result.output


def test_sqlite_file_in_a_folder_that_cannot_be_made_is_unreachable_exit_3_R_IN_2():
    result = run_cli("ledger", "balances", database_url="sqlite:////dev/null/nope/ledger.db")
    assert result.returncode == 3, result.stderr
    assert result.stderr.strip() == (
        "database unreachable: sqlite:////dev/null/nope/ledger.db (unable to open database file)"
    )


def test_missing_postgresql_table_anywhere_is_not_migrated_exit_3_R_IN_2():
    from sqlalchemy.exc import ProgrammingError

    from copytrade.cli.failures import describe

    class UndefinedTable(Exception):
        pass

    exc = ProgrammingError("SELECT 1", {}, UndefinedTable('relation "mark_prices" does not exist'))
    code, line = describe(exc)
    assert code == 3 and line.startswith("database not migrated:"), line
    assert 'relation "mark_prices" does not exist' in line


def test_marks_fetch_exchange_unreachable_is_one_line_without_the_query_R_IN_2(tmp_path):
    result = run_cli(
        *("marks", "fetch", "--symbol", "ONDOUSDT", "--since", "2025-01-27"),
        *("--until", "2025-01-28", "--exchange", "http://127.0.0.1:9"),
        database_url=f"sqlite:///{tmp_path / 'ok.db'}",
    )
    assert result.returncode == 3, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("exchange unreachable: http://127.0.0.1:9/")
    assert "?" not in lines[0] and "Traceback" not in result.stderr


def test_a_long_refusal_is_one_line_and_shows_markup_in_the_value_verbatim_R_IN_2(tmp_path):
    result = run_cli(
        *("wallets", "deposit", "--handle", "alice", "--amount", "[/]" + "9" * 90),
        database_url=f"sqlite:///{tmp_path / 'ok.db'}",
        COLUMNS="80",
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert "amount=[/]999" in result.stderr and "R-IN-2" in result.stderr


def _refused(*args: str) -> str:
    result = CliRunner().invoke(app, list(args), terminal_width=300)
    out = " ".join(re.sub("[│╭╮╰╯─]", " ", result.output).split())
    assert result.exit_code == 2, out
    return out


@pytest.mark.parametrize(
    "args",
    [
        ["copies", "stop", "99999999999999999999", "--handle", "bob"],
        ["leaders", "show", "2147483648"],
        ["settle", "--copy", "99999999999999999999", "--trigger", "stop_copy"],
        ["engine", "resync", "99999999999999999999"],
        ["leaders", "import-fills", "x.csv", "--portfolio", "0"],
    ],
    ids=lambda a: " ".join(a[:2]),
)
def test_an_id_beyond_the_ledgers_integers_is_refused_naming_it_R_IN_2(args):
    value = args[2] if args[2] != "x.csv" else args[-1]
    out = _refused(*args)
    assert f"{value} must be a positive id ≤ 2147483647 (R-IN-2)" in out


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["engine", "run", "--heartbeat-every", "nan"], "--heartbeat-every"),
        (["engine", "run", "--heartbeat-every", "0"], "--heartbeat-every"),
        (["paper", "serve", "--speed", "inf"], "--speed"),
        (["paper", "leader-bot", "--max-wait", "-1"], "--max-wait"),
        (["paper", "leader-bot", "--pace", "inf"], "--pace"),
        (["down", "--timeout", "nan"], "--timeout"),
    ],
)
def test_seconds_and_speeds_must_be_finite_numbers_R_IN_2(args, option):
    out = _refused(*args)
    assert f"{option} {args[-1]}" in out and "must be a finite number" in out


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["paper", "clear-faults", "--url", "ftp://x"],
            "'ftp://x' is not an http(s)://host[:port]",
        ),
        (["paper", "create-account", "--url", "http://h:port"], "'http://h:port' is not an http"),
        (
            ["marks", "fetch", "--symbol", "X", "--since", "2025-01-01", "--exchange", "paperr"],
            "exchange 'paperr' is not paper, binance",
        ),
        (["engine", "reconcile", "--exchange", ""], "'' is empty"),
        (["paper", "leader-bot", "--deposit", "-5"], "--deposit: -5 must be positive"),
        (["paper", "leader-bot", "--leverage", "0"], "--leverage"),
        (["paper", "leader-bot", "--credentials-file", "/nonexistent.json"], "does not exist"),
        (["paper", "serve", "--port", "99999"], "--port"),
        (["paper", "serve", "--start", "nope"], "start: 'nope' is not an instant"),
        (["paper", "serve", "--log-level", "nope"], "log_level: 'nope' is not one of"),
        (["metrics", "build", "--as-of", "2025-13-01"], "--as-of '2025-13-01' is not a day"),
        (["db", "upgrade", ""], "revision: '' is empty"),
        (["db", "revision", " "], "message: '' is empty"),
        (["marks", "prune", "--keep-minutes-days", "99999999999"], "--keep-minutes-days"),
        (["leaders", "top", "--limit", "99999999999999999999"], "--limit"),
    ],
    ids=lambda v: v if isinstance(v, str) else " ".join(v[:3]),
)
def test_bad_options_are_refused_before_anything_is_reached_R_IN_2(args, expected, monkeypatch):
    monkeypatch.setenv("COPYTRADE_PAPER_ADMIN_TOKEN", "t")
    monkeypatch.setenv("COPYTRADE_DATABASE_URL", DOWN)
    get_settings.cache_clear()
    try:
        out = _refused(*args)
    finally:
        get_settings.cache_clear()
    assert expected in out


def test_db_upgrade_to_an_unknown_revision_is_refused_R_IN_2(tmp_path, monkeypatch):
    monkeypatch.setenv("COPYTRADE_DATABASE_URL", f"sqlite:///{tmp_path / 'l.db'}")
    get_settings.cache_clear()
    try:
        out = _refused("db", "upgrade", "nope")
    finally:
        get_settings.cache_clear()
    assert "revision: 'nope'" in out and "Can't locate revision" in out


def test_a_secret_given_as_credentials_ref_is_not_echoed_R_IN_2():
    from copytrade.domain.errors import RuleViolation
    from copytrade.platform.accounts import check_credentials

    with pytest.raises(RuleViolation) as refused:
        check_credentials("key-1", "s3cr3t-api-secret")
    assert "s3cr3t" not in str(refused.value)
    assert "credentials_ref=<hidden, 17 characters>" in str(refused.value)
