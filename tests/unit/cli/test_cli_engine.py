"""`copytrade engine …` / `leaders import-fills` / `copies resync`: help, bad input refused with
exit 2 and nothing changed (R-IN-2), the real leader file imported (R-IN-1)."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from copytrade.cli import app
from copytrade.config import get_settings
from copytrade.db import make_engine
from models import Base, LeaderFill
from tests.support.engine_world import make_world


def text(result) -> str:
    """Return the output with rich's line wrapping undone."""
    return " ".join(result.output.split())


REAL = "leaders/binance-lead-trader-fills-2025-01-27_2025-03-21.csv"


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


def test_every_engine_command_has_help():
    runner = CliRunner()
    for args in (
        ["engine", "--help"],
        ["engine", "run", "--help"],
        ["engine", "reconcile", "--help"],
        ["engine", "stop-copy", "--help"],
        ["copies", "resync", "--help"],
        ["copies", "close-position", "--help"],
        ["leaders", "import-fills", "--help"],
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, (args, result.output)


def test_import_fills_refuses_bad_input_and_changes_nothing_R_IN_2(cli_db, tmp_path, shared_data):
    runner = CliRunner()
    missing = runner.invoke(
        app, ["leaders", "import-fills", str(tmp_path / "nope.csv"), "--portfolio", "1"]
    )
    assert missing.exit_code == 2 and "does not exist" in text(missing)
    bad_id = runner.invoke(
        app, ["leaders", "import-fills", str(shared_data / REAL), "--portfolio", "0"]
    )
    assert bad_id.exit_code == 2 and "portfolio" in text(bad_id)
    no_portfolio = runner.invoke(
        app, ["leaders", "import-fills", str(shared_data / REAL), "--portfolio", "42"]
    )
    assert no_portfolio.exit_code == 2 and "portfolio 42 does not exist" in text(no_portfolio)
    bad_format = runner.invoke(
        app,
        ["leaders", "import-fills", str(shared_data / REAL), "--portfolio", "1", "--format", "xls"],
    )
    assert bad_format.exit_code == 2 and "format" in text(bad_format)
    with cli_db.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(LeaderFill)) == 0


def test_import_fills_real_file_R_IN_1(cli_db, shared_data):
    from sqlalchemy.orm import Session

    with Session(cli_db) as s, s.begin():
        world = make_world(s)
    result = CliRunner().invoke(
        app,
        [
            "leaders",
            "import-fills",
            str(shared_data / REAL),
            "--portfolio",
            str(world.portfolio_id),
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert (report["stored"], report["duplicates"], report["kept"]) == (1465, 263, 1465)
    assert report["pnl_compared"] + report["pnl_no_basis"] == report["closing"] == 407


def test_resync_of_an_unknown_copy_is_refused_R_IN_2(cli_db):
    result = CliRunner().invoke(app, ["copies", "resync", "0"])
    assert result.exit_code == 2 and "copy_id" in text(result)
