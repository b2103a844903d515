"""Follower money actions through the CLI, on SQLite and PostgreSQL: `copies withdraw-profit`,
`add-funds`, `edit`, `show` and the advice of `copies start` (R-SET-5, R-COPY-2/3/9/12, R-IN-2).

Fills are recorded as the copy engine records them (``Scenario.fill``: the fill rows and their
ledger postings); every amount is worked out by hand in the comments.
"""

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
from models import AuditEntry, Copy, LedgerTransfer, SettlementCycle, SettlementPayout
from tests.support.settlement import EPOCH, Scenario

runner = CliRunner()


@pytest.fixture
def cli_url(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Point the CLI at a fresh, migrated database (SQLite file or PostgreSQL schema)."""
    monkeypatch.setenv("COPYTRADE_DATABASE_URL", db_url)
    monkeypatch.setenv("COPYTRADE_HOME", str(tmp_path / "home"))
    get_settings.cache_clear()
    migrate.upgrade(db_url)
    yield db_url
    get_settings.cache_clear()


def run(*args: str):
    result = runner.invoke(app, list(args))
    result.text = " ".join(result.output.split())
    return result


def ok(*args: str):
    result = run(*args)
    assert result.exit_code == 0, result.output
    return result


def refused(url: str, *args: str, field: str, rule: str):
    """Run a command that must be refused: exit 2, field and rule named, nothing changed."""
    before = state(url)
    result = run(*args)
    assert result.exit_code == 2, result.output
    assert "refused" in result.text and field in result.text and f"({rule})" in result.text
    assert state(url) == before
    return result


def state(url: str) -> dict:
    engine = make_engine(url)
    with Session(engine) as session:
        counts = {
            m.__tablename__: session.scalar(select(func.count()).select_from(m))
            for m in (Copy, AuditEntry, LedgerTransfer, SettlementCycle, SettlementPayout)
        }
        balances = {(b.address, b.asset): b.amount for b in Ledger(session).balances()}
        copies = [
            (c.id, c.allocation, c.stop_loss_pct, c.leverage, c.symbols, c.status)
            for c in session.scalars(select(Copy).order_by(Copy.id))
        ]
    engine.dispose()
    return {"counts": counts, "balances": balances, "copies": copies}


def record_fills(url: str, fills) -> None:
    """Record follower fills as the copy engine does (fill rows + ledger postings)."""
    engine = make_engine(url)
    with Session(engine) as session, session.begin():
        scenario = Scenario(session=session)
        for copy_id, symbol, side, qty, price, fee in fills:
            scenario.fill(copy_id, symbol, side, qty, price, fee=fee, at=EPOCH)
    engine.dispose()


def balance(url: str, address: str) -> D:
    engine = make_engine(url)
    with Session(engine) as session:
        value = Ledger(session).balance(address, "USDT")
    engine.dispose()
    return value


def seed() -> str:
    """alice leads spot (portfolio 1), chen private futures at 20 % (portfolio 2); erik follows."""
    ok("wallets", "deposit", "--handle", "alice", "--amount", "5000", "--key", "a1")
    ok("wallets", "deposit", "--handle", "chen", "--amount", "5000", "--key", "c1")
    ok("wallets", "deposit", "--handle", "erik", "--amount", "1000", "--key", "e1")
    common = ("--description", "swings", "--capital", "1000", "--accept-agreement")
    ok(
        "leaders",
        "apply",
        "--handle",
        "alice",
        "--mode",
        "spot",
        "--nickname",
        "AlphaAlice",
        *common,
    )
    out = ok(
        "leaders", "apply", "--handle", "chen", "--mode", "futures", "--nickname", "ChenPrivate",
        *common, "--private", "--profit-share", "20%",
    )  # fmt: skip
    return re.search(r"invitation code: (\w+)", out.text).group(1)


def test_start_shows_the_advice_that_applies_R_COPY_9(cli_url):
    seed()
    out = ok("copies", "start", "--handle", "erik", "--portfolio", "1", "--allocation", "500").text
    # a leader with no history, 500 of erik's 1,000 USDT (50 %), one leader followed
    assert "0 days of history; prefer leaders with at least 90 days" in out
    assert "this copy is 50.00 % of your capital; keep any single leader at or below 5 %" in out
    assert "you follow 1 leader; follow 3-5 complementary leaders" in out


def test_withdraw_profit_settles_first_then_moves_the_profit_R_SET_5(cli_url):
    seed()
    ok("copies", "start", "--handle", "erik", "--portfolio", "1", "--allocation", "500")
    # buy 0.01 BTC at 20,000 (fee 0.2), sell at 30,000 (fee 0.3): realised 100, fees 0.5
    record_fills(
        cli_url,
        [
            (1, "BTCUSDT", "buy", "0.01", "20000", "0.2"),
            (1, "BTCUSDT", "sell", "0.01", "30000", "0.3"),
        ],
    )
    # cash 500 − 200 − 0.2 + 300 − 0.3 = 599.5; share 10 % × 99.5 = 9.95 → cash 589.55;
    # withdrawable = min(589.55, 589.55 − 500 principal) = 89.55
    shown = ok("copies", "show", "1").text
    assert "realised PnL: 99.5 USDT (fills 100, fees 0.5, funding 0)" in shown
    assert "withdrawable now: 99.5 USDT" in shown  # before settling: the share is not paid yet
    refused(
        cli_url, "copies", "withdraw-profit", "1", "--handle", "erik", "--amount", "90",
        field="amount", rule="R-SET-5",
    )  # fmt: skip
    refused(
        cli_url, "copies", "withdraw-profit", "1", "--handle", "chen",
        field="handle", rule="R-SET-5",
    )  # fmt: skip
    out = ok("copies", "withdraw-profit", "1", "--handle", "erik", "--ref", "w1").text
    assert "profit share paid 9.95 USDT" in out and "withdrew 89.55 USDT" in out
    assert balance(cli_url, "person:3:spot") == D("589.55")  # 500 left + 89.55
    assert balance(cli_url, "follower:1:cash") == D("500")  # the principal stays
    assert balance(cli_url, "person:1:spot") == D("4010")  # 4000 + 9.95 share + 0.05 rebates
    before = state(cli_url)
    again = ok("copies", "withdraw-profit", "1", "--handle", "erik", "--ref", "w1").text
    assert "already made (89.55 USDT); nothing changed" in again
    assert state(cli_url) == before  # repeating the withdrawal pays nothing twice
    shown = ok("copies", "show", "1").text
    assert "shares paid: 9.95 USDT" in shown and "withdrawable now: 0 USDT" in shown
    refused(
        cli_url, "copies", "withdraw-profit", "1", "--handle", "erik",
        field="amount", rule="R-SET-5",
    )  # fmt: skip
    refused(
        cli_url, "copies", "withdraw-profit", "1", "--handle", "erik", "--ref", "has space",
        field="ref", rule="R-SET-9",
    )  # fmt: skip
    engine = make_engine(cli_url)
    with Session(engine) as session:
        (cycle,) = session.scalars(select(SettlementCycle)).all()
        assert (cycle.cycle_key, cycle.status) == ("event:withdraw_profit:copy:1:w1", "completed")
        actions = session.scalars(select(AuditEntry.action).order_by(AuditEntry.id)).all()
    engine.dispose()
    assert actions[-1] == "profit_withdrawn"
    ok("copies", "stop", "1", "--handle", "erik")
    refused(
        cli_url, "copies", "withdraw-profit", "1", "--handle", "erik", "--ref", "w2",
        field="copy_id", rule="R-SET-5",
    )  # fmt: skip


def test_show_futures_copy_marks_or_says_no_mark_and_keeps_margin_R_SET_3(cli_url):
    code = seed()
    ok(
        "copies", "start", "--handle", "erik", "--portfolio", "2", "--allocation", "500",
        "--code", code, "--leverage", "3",
    )  # fmt: skip
    record_fills(cli_url, [(1, "BTCUSDT", "buy", "0.01", "60000", "0.24")])
    shown = ok("copies", "show", "1").text
    assert "equity: no mark (BTCUSDT)" in shown and "unrealised PnL: no mark (BTCUSDT)" in shown
    assert "withdrawable now: no mark (BTCUSDT)" in shown
    marked = ok("copies", "show", "1", "--mark", "BTCUSDT=61000").text
    # unrealised 0.01 × 1,000 = 10; equity 500 − 0.24 + 10 = 509.76; margin 600 / 3 = 200;
    # withdrawable = min(499.76 − 200, 509.76 − 500) = 9.76
    assert "unrealised PnL: 10 USDT" in marked and "equity: 509.76 USDT" in marked
    assert "withdrawable now: 9.76 USDT" in marked
    assert "│ BTCUSDT │ 0.01 │ 60,000 │ 61,000 │ 10 │" in marked
    refused(
        cli_url, "copies", "withdraw-profit", "1", "--handle", "erik",
        field="mark", rule="R-SET-3",
    )  # fmt: skip


def test_add_funds_raises_the_principal_and_refuses_bad_amounts_R_COPY_2(cli_url):
    seed()
    ok("copies", "start", "--handle", "erik", "--portfolio", "1", "--allocation", "500")
    out = ok("copies", "add-funds", "1", "--handle", "erik", "--amount", "200", "--key", "k1")
    assert "principal 700 USDT" in out.text
    before = state(cli_url)
    ok("copies", "add-funds", "1", "--handle", "erik", "--amount", "200", "--key", "k1")
    assert state(cli_url) == before  # the same key adds nothing twice
    assert balance(cli_url, "follower:1:cash") == D("700")
    assert balance(cli_url, "person:3:spot") == D("300")
    for amount in ("301", "abc", "0.5", "-5", "1.000000001"):
        refused(
            cli_url, "copies", "add-funds", "1", "--handle", "erik", "--amount", amount,
            field="amount", rule="R-COPY-2",
        )  # fmt: skip
    refused(
        cli_url, "copies", "add-funds", "1", "--handle", "alice", "--amount", "10",
        field="handle", rule="R-COPY-2",
    )  # fmt: skip
    ok("copies", "stop", "1", "--handle", "erik")
    refused(
        cli_url, "copies", "add-funds", "1", "--handle", "erik", "--amount", "10",
        field="copy_id", rule="R-COPY-5",
    )  # fmt: skip


def test_edit_changes_settings_with_an_audit_entry_or_refuses_R_COPY_12_R_IN_2(cli_url):
    code = seed()
    ok(
        "copies", "start", "--handle", "erik", "--portfolio", "2", "--allocation", "500",
        "--code", code, "--leverage", "3", "--stop-loss", "30",
    )  # fmt: skip
    out = ok(
        "copies", "edit", "1", "--handle", "erik", "--stop-loss", "20", "--leverage", "5",
        "--symbol", "btc/usdt", "--slippage", "0.8", "--below-min", "round_up",
    ).text  # fmt: skip
    assert "stop_loss_pct 30 → 20" in out and "leverage 3 → 5" in out
    assert "symbols - → BTCUSDT" in out and "below_min_policy skip → round_up" in out
    assert state(cli_url)["copies"] == [(1, D("500"), D("20"), 5, ["BTCUSDT"], "active")]
    ok("copies", "edit", "1", "--handle", "erik", "--symbol", "off", "--stop-loss", "off")
    assert state(cli_url)["copies"] == [(1, D("500"), None, 5, None, "active")]
    engine = make_engine(cli_url)
    with Session(engine) as session:
        edits = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "copy_edited").order_by(AuditEntry.id)
        ).all()
    engine.dispose()
    assert len(edits) == 2 and edits[0].details["leverage"] == ["3", "5"]
    assert edits[1].details["stop_loss_pct"] == ["20", None]
    for args, field, rule in (
        (("--leverage", "11"), "leverage", "R-COPY-12"),
        (("--stop-loss", "150"), "stop_loss_pct", "R-COPY-3"),
        (("--slippage", "12"), "slippage_limit_pct", "R-COPY-12"),
        (("--max-cost", "-1"), "max_cost_per_order", "R-COPY-12"),
        (("--below-min", "sometimes"), "below_min_policy", "R-COPY-6"),
        (("--symbol", "BTC USDT!"), "symbols", "R-COPY-12"),
        (("--leverage", "off"), "leverage", "R-IN-2"),
        ((), "settings", "R-IN-2"),
        (("--leverage", "5"), "settings", "R-IN-2"),  # already 5: nothing to change
    ):
        refused(cli_url, "copies", "edit", "1", "--handle", "erik", *args, field=field, rule=rule)
    refused(
        cli_url, "copies", "edit", "1", "--handle", "chen", "--leverage", "2",
        field="handle", rule="R-COPY-12",
    )  # fmt: skip
    refused(
        cli_url, "copies", "edit", "9", "--handle", "erik", "--leverage", "2",
        field="copy_id", rule="R-IN-2",
    )  # fmt: skip


def test_leader_leverage_violation_is_recorded_once_and_shown_R_LEAD_8(cli_url):
    """At AUM ≥ 100,000 USD a leader position above 5× is recorded (the engine calls the
    service per opened position) and listed by `leaders show`; below the threshold it is not."""
    from copytrade.platform import leaders

    ok("wallets", "deposit", "--handle", "chen", "--amount", "150000", "--key", "c1")
    ok(
        "leaders", "apply", "--handle", "chen", "--mode", "futures", "--nickname", "ChenBig",
        "--description", "big", "--capital", "100000", "--accept-agreement",
    )  # fmt: skip
    assert "leader leverage violations (R-LEAD-8): none" in ok("leaders", "show", "1").text
    engine = make_engine(cli_url)
    with Session(engine) as session, session.begin():
        common = {"symbol": "BTCUSDT", "opened_at": EPOCH}
        assert (
            leaders.record_leader_leverage(session, 1, leverage=5, exchange_ref="t1", **common)
            is None
        )
        first = leaders.record_leader_leverage(session, 1, leverage=8, exchange_ref="t2", **common)
        again = leaders.record_leader_leverage(session, 1, leverage=8, exchange_ref="t2", **common)
        below = leaders.record_leader_leverage(
            session, 1, leverage=20, exchange_ref="t3", aum=D("99999.99"), **common
        )
        assert first is not None and again.id == first.id and below is None
        assert first.aum == D("100000")
    engine.dispose()
    shown = ok("leaders", "show", "1").text
    assert "AUM: 100,000 USD" in shown
    assert "│ 2025-01-06T00:00:00+00:00 │ BTCUSDT │ 8x │ 100,000 │ t2 │" in shown
    assert shown.count("│ BTCUSDT │") == 1
    refused(cli_url, "leaders", "show", "7", field="portfolio", rule="R-IN-2")


def test_edit_and_add_funds_keep_copy_leverage_within_R_LEAD_8(cli_url):
    """From 100,000 USD of AUM a copy may not raise its leverage above 5×, nor add funds that
    carry the portfolio there while above 5×; below it, both are fine."""
    ok("wallets", "deposit", "--handle", "chen", "--amount", "100000", "--key", "c1")
    ok("wallets", "deposit", "--handle", "erik", "--amount", "2000", "--key", "e1")
    ok(
        "leaders", "apply", "--handle", "chen", "--mode", "futures", "--nickname", "ChenBig",
        "--description", "big", "--capital", "98500", "--accept-agreement",
    )  # fmt: skip
    ok("copies", "start", "--handle", "erik", "--portfolio", "1", "--allocation", "1000",
       "--leverage", "8")  # fmt: skip
    # AUM 98,500 + 1,000 = 99,500: adding 500 reaches 100,000 with the copy at 8×
    refused(
        cli_url, "copies", "add-funds", "1", "--handle", "erik", "--amount", "500",
        field="leverage", rule="R-LEAD-8",
    )  # fmt: skip
    ok("copies", "add-funds", "1", "--handle", "erik", "--amount", "499")  # AUM 99,999
    ok("copies", "edit", "1", "--handle", "erik", "--leverage", "10")  # still below the threshold
    ok("copies", "edit", "1", "--handle", "erik", "--leverage", "5")
    ok("copies", "add-funds", "1", "--handle", "erik", "--amount", "1")  # AUM 100,000 at 5×
    refused(
        cli_url, "copies", "edit", "1", "--handle", "erik", "--leverage", "6",
        field="leverage", rule="R-LEAD-8",
    )  # fmt: skip
    ok("copies", "edit", "1", "--handle", "erik", "--leverage", "4")  # lowering is always allowed
