"""`copytrade settle` and `copytrade validate`: exit codes, refusals, output (R-IN-2, R-LED-7)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from typer.testing import CliRunner

import models
from copytrade.cli import app
from copytrade.config import get_settings
from copytrade.db import make_engine
from tests.support.settlement import EPOCH

DAY = timedelta(days=1)


@pytest.fixture
def cli(monkeypatch, db_url, tmp_path):
    monkeypatch.setenv("COPYTRADE_DATABASE_URL", db_url)
    monkeypatch.setenv("COPYTRADE_HOME", str(tmp_path / "home"))
    get_settings.cache_clear()
    runner = CliRunner()
    yield lambda *args: runner.invoke(app, list(args))
    get_settings.cache_clear()


def seed(build):
    def case(s):
        c = s.copy(s.portfolio(mode="futures", ratio="0.1"))
        s.fill(c, "BTCUSDT", "buy", "1", "60000", fee="6", at=EPOCH + DAY)
        s.fill(c, "BTCUSDT", "sell", "0.5", "62000", fee="3.1", at=EPOCH + 2 * DAY)
        return c

    return build(case)


def test_settle_weekly_then_rerun_prints_payouts_R_SET_4_R_SET_9(cli, build, view):
    c = seed(build)
    first = cli(
        "settle", "--cycle", "weekly", "--week", "2025-W03", "--mark", "BTCUSDT=61000", "--json"
    )
    assert first.exit_code == 0, first.output
    summary = json.loads(first.stdout)
    assert (summary["status"], summary["shares_paid"]) == ("completed", "149.09000000")
    assert summary["leaders"][0]["rebates_paid"] == "0.91000000"
    again = cli("settle", "--cycle", "weekly", "--week", "2025-W03", "--mark", "BTCUSDT=61000")
    assert again.exit_code == 0 and "already_completed" in again.stdout
    assert [p.status for p in view.shares(c)] == ["paid"]


def test_validate_passes_then_fails_after_an_edit_and_settle_is_blocked_R_LED_7(
    cli, build, engine, view
):
    seed(build)
    ok = cli("validate", "--json")
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["passed"] is True
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "update ledger_accounts set balance = balance + 1 where address = 'platform:fees'"
        )
    failed = cli("validate", "--no-data-docs", "--json")
    assert failed.exit_code == 1
    assert [c["check"] for c in json.loads(failed.stdout)["checks"] if c["result"] == "FAIL"] == [
        "balances_equal_sum_of_postings"
    ]
    blocked = cli("settle", "--cycle", "weekly", "--week", "2025-W03", "--mark", "BTCUSDT=61000")
    assert blocked.exit_code == 1 and "nothing was paid" in blocked.output
    assert view.payouts() == []


@pytest.mark.parametrize(
    "args,field",
    [
        ((), "cycle"),
        (("--cycle", "monthly"), "cycle"),
        (("--copy", "1"), "trigger"),
        (("--trigger", "stop_copy"), "cycle"),
        (("--cycle", "weekly", "--mark", "BTCUSDT"), "mark"),
        (("--cycle", "weekly", "--mark", "BTCUSDT=-1"), "mark"),
        (("--cycle", "weekly", "--mark", "BTCUSDT=1e999"), "mark"),  # finite, but beyond any
        (("--cycle", "weekly", "--mark", "BTCUSDT=nan"), "mark"),  # amount the ledger holds
        (("--cycle", "weekly", "--mark", "BTCUSDT=0.000000001"), "mark"),  # 9 decimals
        (("--cycle", "weekly", "--week", "2025-13"), "week"),
        (("--copy", "1", "--trigger", "stop_copy", "--at", "2025-01-13T00:00:00"), "at"),
        (("--copy", "99", "--trigger", "stop_copy"), "copy"),
    ],
)
def test_bad_input_is_refused_naming_the_field_and_changes_nothing_R_IN_2(
    monkeypatch, sqlite_url, args, field
):
    """Input handling does not depend on the database: checked on SQLite."""
    engine = make_engine(sqlite_url)
    models.Base.metadata.create_all(engine)
    monkeypatch.setenv("COPYTRADE_DATABASE_URL", sqlite_url)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["settle", *args])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 2, result.output
    assert f"{field}=" in result.output and "refused" in result.output
    with engine.connect() as conn:
        assert conn.exec_driver_sql("select count(*) from settlement_cycles").scalar() == 0
    engine.dispose()


def test_unreachable_database_exits_3(monkeypatch, tmp_path):
    monkeypatch.setenv(
        "COPYTRADE_DATABASE_URL", "postgresql+psycopg://nobody:secret@127.0.0.1:1/none"
    )
    monkeypatch.setenv("COPYTRADE_HOME", str(tmp_path))
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["validate", "--no-data-docs"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 3 and "unavailable" in result.output
    assert "secret" not in result.output


def _record_mark(db_url, at, price: str) -> None:
    from decimal import Decimal

    from sqlalchemy.orm import Session

    from copytrade.marks.store import Mark, record

    engine = make_engine(db_url)
    with Session(engine) as s, s.begin():
        record(s, [Mark("BTCUSDT", "usdm", at, Decimal(price))])
    engine.dispose()


def _week_instant():
    from copytrade.settlement import parse_week, weekly_cycle

    return weekly_cycle(parse_week("2025-W03")).as_of


def test_settle_weekly_pays_futures_shares_at_the_recorded_marks_R_SET_3(cli, build, db_url):
    """No price by hand: the engine's mark recorded one minute before the cycle's instant pays
    the same share as `--mark BTCUSDT=61000` does (149.09)."""
    seed(build)
    _record_mark(db_url, _week_instant() - timedelta(minutes=1), "61000")
    paid = cli("settle", "--cycle", "weekly", "--week", "2025-W03", "--json")
    assert paid.exit_code == 0, paid.output
    summary = json.loads(paid.stdout)
    assert (summary["shares_paid"], summary["deferred"]) == ("149.09000000", 0)


def test_a_stale_recorded_mark_defers_with_the_reason_R_SET_3(cli, build, db_url):
    seed(build)
    _record_mark(db_url, _week_instant() - timedelta(hours=1), "61000")
    stale = cli("settle", "--cycle", "weekly", "--week", "2025-W03", "--json")
    assert stale.exit_code == 0, stale.output
    summary = json.loads(stale.stdout)
    assert (summary["shares_paid"], summary["deferred"]) == ("0", 1)
    assert "is 1:00:00 old, beyond the 0:05:00 freshness bound" in stale.stdout
