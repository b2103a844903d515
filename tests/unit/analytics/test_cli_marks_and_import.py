"""`copytrade leaders import-fills` and `copytrade marks …` as users run them: counts printed,
bad rows quarantined one by one, bad options refused with exit 2 and nothing changed (R-IN-1/2)."""

from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from copytrade import migrate
from copytrade.cli import app
from copytrade.config import get_settings
from copytrade.db import make_engine
from models import LeaderFill, MarkPrice, QuarantinedEvent
from tests.support.engine_world import make_world

runner = CliRunner()
ONDO = "market/futures/ONDOUSDT-5m-2025.csv"


@pytest.fixture
def ledger(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("COPYTRADE_DATABASE_URL", url)
    monkeypatch.setenv("COPYTRADE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COLUMNS", "200")
    get_settings.cache_clear()
    migrate.upgrade(url)
    engine = make_engine(url)
    yield engine
    engine.dispose()
    get_settings.cache_clear()


def count(engine, model, *where) -> int:
    with Session(engine) as s:
        return s.scalar(select(func.count()).select_from(model).where(*where))


def words(result) -> str:
    """The output's words, without rich's table borders and line wrapping."""
    return " ".join(re.sub(r"[\u2500-\u257f]", " ", result.output).split())


def test_import_with_bad_rows_stores_the_rest_and_reports_counts_R_IN_1(ledger, tmp_path):
    with Session(ledger) as s, s.begin():
        pid = make_world(s).portfolio_id
    path = tmp_path / "fills.csv"
    path.write_text(
        "time,symbol,side,price,quantity,realised_pnl,position_side\n"
        "2025-03-01T10:00:00Z,BTCUSDT,buy,50000,0.1,,long\n"
        f"{'9' * 5_000_000}\n"
        "2025-03-01T10:05:00Z,BTCUSDT,buy,1e999,0.1,,long\n"
        "2025-03-01T10:06:00Z,BTCUSDT,buy,NaN,0.1,,long\n"
        "2025-03-01T10:07:00Z,BTCUSDT,buy,50000,-1,,long\n"
        "2025-03-01T10:08:00Z,BTCUSDT,flip,50000,1,,long\n"
        "yesterday,BTCUSDT,buy,50000,1,,long\n"
        "2025-03-01T11:00:00Z,BTCUSDT,sell,51000,0.1,100,long\n"
    )
    result = runner.invoke(app, ["leaders", "import-fills", str(path), "--portfolio", str(pid)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert (report["rows"], report["kept"], report["stored"], report["quarantined"]) == (8, 2, 2, 6)
    assert report["rejected"] == {"malformed": 6}
    assert count(ledger, LeaderFill) == 2
    assert count(ledger, QuarantinedEvent) == 6


@pytest.mark.parametrize(
    "args,message",
    [
        (["--portfolio", "0"], "--portfolio 0 must be a positive id"),
        (["--portfolio", "1", "--format", "xls"], "--format 'xls'"),
        (["--portfolio", "1", "--capital-since", "March"], "--capital-since 'March'"),
        (["--portfolio", "1", "--capital-since", "2025-12-01"], "is after the first imported fill"),
        (["--portfolio", "999"], "portfolio 999 does not exist"),
    ],
)
def test_import_bad_options_exit_2_and_change_nothing_R_IN_2(ledger, shared_data, args, message):
    with Session(ledger) as s, s.begin():
        make_world(s)
    file = str(shared_data / "leaders/binance-lead-trader-fills-2025-01-27_2025-03-21.csv")
    result = runner.invoke(app, ["leaders", "import-fills", file, *args])
    assert result.exit_code == 2, result.output
    assert message in words(result)
    assert count(ledger, LeaderFill) == 0 and count(ledger, QuarantinedEvent) == 0


def test_marks_load_then_list_and_reload_is_idempotent(ledger, shared_data):
    loaded = runner.invoke(app, ["marks", "load", str(shared_data / ONDO)])
    assert loaded.exit_code == 0, loaded.output
    assert "ONDOUSDT-5m-2025.csv 7,500 0 0" in words(loaded)
    again = runner.invoke(app, ["marks", "load", str(shared_data / ONDO)])
    assert "ONDOUSDT-5m-2025.csv 0 0 7,500" in words(again)
    listed = runner.invoke(app, ["marks", "list"])
    assert "usdm ONDOUSDT 2025-02-24 00:04 2025-03-22 00:59 7,500" in words(listed)
    pruned = runner.invoke(app, ["marks", "prune", "--keep-minutes-days", "1"])
    assert pruned.exit_code == 0 and "minute marks removed" in words(pruned)
    assert count(ledger, MarkPrice) == 27  # one close per day (27 days) once all are old


@pytest.mark.parametrize(
    "args,message",
    [
        (["load", "nope.csv"], "does not exist"),
        (["load", "{bad}"], "line 2: close 'x' is not a decimal number"),
        (["load", "{ondo}", "--market", "coinm"], "--market 'coinm' must be spot or usdm"),
        (["fetch", "--symbol", "X", "--since", "2025-13-01"], "--since/--until"),
        (["fetch", "--symbol", "X", "--since", "2025-03-02", "--until", "2025-03-01"], "after"),
        (["fetch", "--symbol", "X", "--since", "2025-03-01", "--interval", "3m"], "--interval"),
        (["prune", "--keep-minutes-days", "0"], "--keep-minutes-days 0 must be at least 1"),
    ],
)
def test_marks_bad_input_exits_2_and_stores_nothing(ledger, shared_data, tmp_path, args, message):
    bad = tmp_path / "BAD_USDT_USDT-5m.csv"
    bad.write_text("timestamp,open,high,low,close,volume\n2025-01-01 00:00:00,1,1,1,x,5\n")
    args = [a.format(bad=bad, ondo=shared_data / ONDO) for a in args]
    result = runner.invoke(app, ["marks", *args])
    assert result.exit_code == 2, result.output
    assert message in words(result)
    assert count(ledger, MarkPrice) == 0


def test_marks_fetch_with_the_exchange_down_exits_3(ledger):
    result = runner.invoke(
        app,
        ["marks", "fetch", "--symbol", "ONDOUSDT", "--since", "2025-03-01", "--until",
         "2025-03-02", "--exchange", "http://127.0.0.1:9"],
    )  # fmt: skip
    assert result.exit_code == 3, result.output
    assert "exchange unreachable" in words(result)


def test_leaders_top_without_a_warehouse_exits_3_saying_what_to_run(ledger):
    result = runner.invoke(app, ["leaders", "top"])
    assert result.exit_code == 3
    assert "run `copytrade metrics build`" in words(result)
    assert "Traceback" not in result.output
