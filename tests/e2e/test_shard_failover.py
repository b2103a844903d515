"""Two copy engine shards on PostgreSQL, one killed with ``kill -9`` mid-burst and restarted.

As an operator runs them: the paper exchange in its own process, ``copytrade engine run --shard
I/2`` subprocesses, several leaders trading through the exchange's API. While the leaders trade,
shard 1 is killed; a second process for the live shard 0 is refused (exit 3, one line); shard 1
is started again. Then every leader fill × copy has exactly one outcome (R-COPY-11), no client
order id reached the exchange twice, every order on the exchange is recorded, each shard posted
to its own ledger stream, and ``copytrade ledger verify-chain`` passes (R-X-4).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading

import pytest
from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from copytrade import migrate
from copytrade.db import make_engine
from copytrade.engine.shards import shard_of
from models import LeaderFill, LedgerTransfer
from tests.support import fleet
from tests.support.paper_exchange import run_paper_exchange

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

LEADERS, FOLLOWERS, ROUNDS = 6, 4, 8


def test_a_killed_shard_restarts_and_every_fill_copy_has_one_outcome_R_COPY_11_R_X_4(
    pg_url, tmp_path
):
    migrate.upgrade(pg_url)
    db = make_engine(pg_url)
    sm = sessionmaker(db, expire_on_commit=False)
    try:
        with run_paper_exchange(mode="process") as paper:
            worlds = fleet.build_leaders(sm, paper.admin, LEADERS, FOLLOWERS)
            owned = fleet.by_shard(worlds, 2)
            assert owned[0] and owned[1], f"both shards must own a leader: {owned}"
            env = fleet.environment(pg_url, paper, worlds)
            shards = fleet.ShardProcesses(env, tmp_path, 2)
            shards.start_all()
            try:
                fleet.wait_following(sm, worlds, shards)
                burst_done, traded = threading.Event(), {}

                async def trade() -> None:
                    async with fleet.Leaders(paper.base_url, worlds) as leaders:
                        await leaders.burst(ROUNDS, pause=0.3)
                        traded["fills"] = leaders.fills

                def trade_in_thread() -> None:
                    try:
                        asyncio.run(trade())
                    finally:
                        burst_done.set()

                trader = threading.Thread(target=trade_in_thread)
                trader.start()
                # mid-burst: some fills copied already, more to come
                while fleet.stored_fills(sm) < LEADERS and not burst_done.is_set():
                    burst_done.wait(0.05)
                assert not burst_done.is_set(), "the burst ended before the kill"
                shards.kill9(1)

                refused = shards.second(0)
                assert refused.returncode == 3, refused.stdout + refused.stderr
                lines = [line for line in refused.stderr.splitlines() if line.strip()]
                assert len(lines) == 1 and "shard 0/2 is already running" in lines[0], lines
                assert "Traceback" not in refused.stdout + refused.stderr

                trader.join()
                shards.start(1)  # PostgreSQL freed the killed session's locks with it
                fleet.wait_settled(sm, traded["fills"], shards)
                codes = shards.stop_all()
            finally:
                shards.kill_all()
            assert codes == {0: 0, 1: 0}

            found = fleet.outcomes(sm)
            assert found == {"twice": [], "missing": [], "no_outcome": []}
            counts = asyncio.run(fleet.exchange_orders(paper.base_url, worlds, fleet.api_keys(sm)))
            assert counts and max(counts.values()) == 1, "a client order id was sent twice"
            assert set(counts) <= fleet.recorded_orders(sm), "an order on the exchange is unknown"
        with sm() as s:
            streams = set(s.scalars(select(LedgerTransfer.stream).distinct()))
            caught_up = s.scalars(
                select(LeaderFill.portfolio_id).where(LeaderFill.source == "backfill")
            ).all()
        assert {0, 1} <= streams, streams
        # the fills shard 1's leaders made while it was down came in by its restart's backfill
        assert caught_up and {shard_of(pid, 2) for pid in caught_up} == {1}
        verify = subprocess.run(
            [sys.executable, "-m", "copytrade", "ledger", "verify-chain"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert verify.returncode == 0, verify.stdout + verify.stderr
    finally:
        db.dispose()
