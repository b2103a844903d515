"""The copy engine end to end on the paper exchange through unmodified ccxt (R-COPY-*, R-IN-1).

The leader bot replays the real lead trader's 1000PEPE and ONDO fills on the real candles (the
paper clock jumps to each fill's time); 50 followers with mixed settings copy them.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from decimal import Decimal as D

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import sessionmaker

import models
from copytrade.config import get_settings
from copytrade.db import make_engine
from copytrade.engine.core import CopyEngine
from copytrade.engine.reconcile import reconcile
from copytrade.engine.runner import EngineRunner
from copytrade.engine.wiring import GatewayDirectory
from copytrade.exchange.factory import GatewayFactory
from copytrade.ledger import Ledger
from copytrade.paper.client import AsyncAdminClient
from models import Copy, FollowerFill, FollowerOrderIntent, LeaderFill
from tests.support import paper_exchange as paper_testing
from tests.support.engine_world import make_paper_world, real_leader_rows, replay_leader

pytestmark = pytest.mark.slow


def mixed_copies(n: int = 50) -> tuple[list[dict], list]:
    """Followers with mixed settings; returns (copy settings, paper balances)."""
    copies, balances = [], []
    policies = ["skip", "round_up", "accumulate"]
    for i in range(n):
        c: dict = {"allocation": str([2000, 500, 40, 5000, 150][i % 5]), "leverage": 1 + i % 10}
        c["below_min_policy"] = policies[i % 3]
        if i % 7 == 3:
            c.update(sizing_mode="fixed_amount", fixed_amount="60")
        if i % 11 == 5:
            c["close_only"] = True
        if i % 9 == 4:
            c["symbols"] = ["ONDOUSDT"]
        copies.append(c)
        balances.append(D("3") if i % 13 == 6 else None)  # short balance on the exchange
    return copies, balances


def invariants(sm, paper) -> dict:
    """Check: every leader fill × active copy × leg has exactly one intent with an outcome, and
    the exchange holds no two orders with one client id. Return counts."""
    with sm() as s:
        fills = s.scalars(select(LeaderFill)).all()
        copies = s.scalars(select(Copy)).all()
        intents = s.scalars(
            select(FollowerOrderIntent).where(FollowerOrderIntent.kind == "copy")
        ).all()
    per_fill = Counter((i.leader_fill_id, i.copy_id) for i in intents)
    for f in fills:
        for c in copies:
            assert per_fill[(f.id, c.id)] >= 1, f"leader fill {f.id} × copy {c.id} has no outcome"
    keys = Counter((i.leader_fill_id, i.copy_id, i.leg) for i in intents)
    assert max(keys.values()) == 1
    open_ = [i for i in intents if i.status != "done" or i.outcome is None]
    assert open_ == [], f"{len(open_)} intents without an outcome"
    assert all(i.reason for i in intents)
    orders = Counter()
    for account in paper.server.exchange.accounts.values():
        for order in account.orders.values():
            orders[(account.account_id, order.client_order_id)] += 1
    dupes = [k for k, v in orders.items() if v > 1]
    assert dupes == [], f"client ids sent twice: {dupes[:5]}"
    return {
        "leader_fills": len(fills),
        "intents": len(intents),
        "outcomes": Counter(i.outcome for i in intents),
        "reasons": Counter(i.reason_code for i in intents),
    }


@pytest.fixture
def paper():
    with paper_testing.run_paper_exchange(start="2025-02-24T00:00:00Z", speed=0) as handle:
        yield handle


@pytest.fixture
def sm(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'engine.db'}")
    models.Base.metadata.create_all(engine)
    yield sessionmaker(engine, expire_on_commit=False)
    engine.dispose()


async def _start(sm, paper, pw, timeout_ms=10_000):
    directory = GatewayDirectory(
        sm, paper.base_url, secrets=pw.secrets, kinds=("futures",), timeout_ms=timeout_ms
    )
    await directory.start()
    engine = CopyEngine(sm, directory, directory.markets_by_kind)
    runner = EngineRunner(engine, sweep_every=1.0, heartbeat_every=5.0)
    task = asyncio.create_task(runner.run())
    await asyncio.wait_for(runner.ready.wait(), 60)
    bot_factory = GatewayFactory("futures", paper.base_url)
    await bot_factory.start()
    bot = bot_factory.gateway(pw.leader_key, pw.leader_secret, "leader-bot")
    for symbol in ("1000PEPEUSDT", "ONDOUSDT"):
        await bot.set_leverage(symbol, 10)
    return directory, engine, runner, task, bot_factory, bot


async def _wait_until_copied(sm, expected_fills: int, timeout: float) -> bool:
    """Poll until ``expected_fills`` leader fills are in and no intent is open; False on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with sm() as s:
            n = s.scalar(select(func.count()).select_from(LeaderFill))
            open_ = s.scalar(
                select(func.count())
                .select_from(FollowerOrderIntent)
                .where(FollowerOrderIntent.status != "done")
            )
        if n >= expected_fills and not open_:
            return True
        await asyncio.sleep(0.5)
    return False


async def _settle(sm, engine, runner, expected_fills, timeout=120):
    if not await _wait_until_copied(sm, expected_fills, timeout):
        await reconcile(engine)


async def test_real_leader_replay_50_followers_one_outcome_each_and_exact_sizes_R_COPY_7(
    paper, sm, shared_data
):
    rows = real_leader_rows(shared_data)[:40]
    copies, balances = mixed_copies(50)
    pw = make_paper_world(sm, paper.admin, copies=copies, balances=balances)
    directory, engine, runner, task, bot_factory, bot = await _start(sm, paper, pw)
    try:
        states = await replay_leader(bot, paper.admin, rows, pause=0.05)
        expected = sum(max(1, len(s.trades)) for s in states if s.filled_quantity)
        await _settle(sm, engine, runner, expected)
    finally:
        runner.stop()
        await task
        await bot_factory.close()
        await directory.close()
    counts = invariants(sm, paper)
    assert counts["leader_fills"] >= len(states)
    assert counts["outcomes"]["filled"] > 0 and counts["outcomes"]["skipped"] > 0
    assert counts["reasons"]["below_minimum"] > 0 and counts["reasons"]["symbol_not_allowed"] > 0
    assert counts["reasons"]["close_only"] > 0
    # Hand-computed sizes: the first opening fill for a ratio copy with room to spare
    # (copy 8: 5000 USDT, leverage 9, ratio): floor(qty × equity / 10,000) to the lot step.
    with sm() as s:
        first = s.scalars(select(LeaderFill).order_by(LeaderFill.id)).first()
        copy_id = pw.world.copy_ids[8]
        intent = s.scalars(
            select(FollowerOrderIntent).where(
                FollowerOrderIntent.leader_fill_id == first.id,
                FollowerOrderIntent.copy_id == copy_id,
            )
        ).one()
        step = (
            directory.markets_by_kind["futures"][first.symbol].market_step_size
            if directory.factories
            else None
        )
        step = step or D("1")
        expected_qty = (first.quantity * D("5000") / D("10000")) // step * step
        assert intent.quantity == expected_qty, (first.symbol, first.quantity, intent.quantity)
        assert intent.outcome == "filled"
        fill = s.scalars(select(FollowerFill).where(FollowerFill.copy_id == copy_id)).first()
        assert (
            fill.leader_price is not None
            and fill.slippage_bps is not None
            and fill.copy_delay_ms is not None
        )
        assert Ledger(s).verify_chain().ok


async def test_faults_during_a_run_send_nothing_twice_and_lose_nothing_R_COPY_11(
    paper, sm, shared_data
):
    rows = real_leader_rows(shared_data)[:24]
    copies = [{"allocation": "2000", "leverage": 5} for _ in range(12)]
    pw = make_paper_world(sm, paper.admin, copies=copies)
    directory, engine, runner, task, bot_factory, bot = await _start(sm, paper, pw, timeout_ms=1500)
    ids = [pw.paper_ids[pw.world.copy_accounts[c]] for c in pw.world.copy_ids]
    order_paths = ["/fapi/v1/order"]
    try:
        admin = paper.admin
        admin.add_fault(
            "error_after", account_id=ids[0], count=3, paths=order_paths, methods=["POST"]
        )
        admin.add_fault(
            "timeout_after",
            account_id=ids[1],
            count=2,
            paths=order_paths,
            methods=["POST"],
            delay=3,
        )
        admin.add_fault(
            "rate_limit", account_id=ids[2], count=3, paths=order_paths, methods=["POST"]
        )
        admin.add_fault(
            "error_before", account_id=ids[3], count=2, paths=order_paths, methods=["POST"]
        )
        admin.add_fault(
            "duplicate_events", account_id=pw.paper_ids[pw.world.leader_account_id], count=5
        )
        half = len(rows) // 2
        states = await replay_leader(bot, admin, rows[:half], pause=0.05)
        # async: closing the websockets needs this event loop to answer the close handshake
        aadmin = AsyncAdminClient(paper.base_url, paper.admin_token)
        await aadmin.add_fault("drop_stream", account_id=pw.paper_ids[pw.world.leader_account_id])
        await aadmin.close()
        states += await replay_leader(bot, admin, rows[half:], prefix="lead2", pause=0.05)
        expected = sum(max(1, len(s.trades)) for s in states if s.filled_quantity)
        await asyncio.sleep(4)  # let timed-out answers arrive and sweeps run
        await _settle(sm, engine, runner, expected)
        await reconcile(engine)
        left = [f["kind"] for f in admin.faults() if f["kind"] != "duplicate_events"]
        assert left == [], f"faults never triggered: {left}"
    finally:
        runner.stop()
        await task
        await bot_factory.close()
        await directory.close()
    counts = invariants(sm, paper)
    assert counts["leader_fills"] >= expected


def _engine_env(db_url: str, paper_url: str, secrets: dict[str, str]) -> dict:
    env = dict(os.environ)
    env.update({ref.split(":", 1)[1]: secret for ref, secret in secrets.items()})
    host, port = paper_url.removeprefix("http://").split(":")
    env.update(
        COPYTRADE_DATABASE_URL=db_url,
        COPYTRADE_PAPER_HOST=host,
        COPYTRADE_PAPER_PORT=port,
        COPYTRADE_DATA_DIR=str(get_settings().data_dir),
        PYTHONPATH=os.pathsep.join([os.getcwd(), env.get("PYTHONPATH", "")]),
    )
    return env


async def test_kill_9_mid_dispatch_then_restart_keeps_the_invariants_R_COPY_11(
    paper, sm, shared_data, tmp_path
):
    rows = real_leader_rows(shared_data)[:10]
    copies = [{"allocation": "2000", "leverage": 5} for _ in range(20)]
    pw = make_paper_world(sm, paper.admin, copies=copies)
    db_url = str(sm.kw["bind"].url)
    env = _engine_env(db_url, paper.base_url, pw.secrets)
    cmd = [sys.executable, "-m", "copytrade", "engine", "run", "--heartbeat-every", "2"]
    log = open(tmp_path / "engine.log", "wb")  # noqa: SIM115 - shared by two engine processes
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    bot_factory = GatewayFactory("futures", paper.base_url)
    await bot_factory.start()
    bot = bot_factory.gateway(pw.leader_key, pw.leader_secret, "leader-bot")
    try:
        await bot.set_leverage("1000PEPEUSDT", 10)
        await bot.set_leverage("ONDOUSDT", 10)
        # wait until the engine has baselined the leader (it is following the stream)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with sm() as s:
                if s.scalar(select(func.count()).select_from(models.LeaderWatermark)):
                    break
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)
        # followers answer slowly: the engine is mid-dispatch when it is killed
        for aid in pw.world.copy_accounts.values():
            paper.admin.add_fault(
                "slow",
                account_id=pw.paper_ids[aid],
                count=1,
                paths=["/fapi/v1/order"],
                methods=["POST"],
                delay=1.5,
            )
        states = await replay_leader(bot, paper.admin, rows[:4])
        killed = False
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with sm() as s:
                if s.scalar(select(func.count()).select_from(FollowerOrderIntent)):
                    proc.send_signal(signal.SIGKILL)
                    killed = True
                    break
            await asyncio.sleep(0.05)
        assert killed, (tmp_path / "engine.log").read_text()[-2000:]
        proc.wait(10)
        states += await replay_leader(
            bot, paper.admin, rows[4:], prefix="lead2"
        )  # while it is down
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        expected = sum(max(1, len(s.trades)) for s in states if s.filled_quantity)
        await _wait_until_copied(sm, expected, 90)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        await bot_factory.close()
        log.close()
    counts = invariants(sm, paper)
    assert counts["leader_fills"] >= expected
