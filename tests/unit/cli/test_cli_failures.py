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
