"""Many leaders trading at once over a paper exchange, copied by sharded engine processes.

For the shard failover test and ``benchmarks/scale_out.py``: a PostgreSQL ledger, the paper
exchange in its own process, L futures leaders with F followers each, and each shard a
``copytrade engine run --shard I/N`` subprocess, as an operator runs them. The leaders trade
through the exchange's own API (ccxt), so every fill reaches the engines by the user-data stream.
Test support (``tests/support``): the platform never imports it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import sessionmaker

from copytrade.config import get_settings
from copytrade.engine.shards import shard_of
from copytrade.exchange.factory import GatewayFactory
from copytrade.exchange.protocol import OrderRequest
from models import (
    Copy,
    ExchangeAccount,
    FollowerOrder,
    FollowerOrderIntent,
    LeaderFill,
    LeaderWatermark,
)
from tests.support.engine_world import PaperWorld, make_paper_world

SYMBOL = "XRPUSDT"
LEADER_QTY = Decimal("500")  # followers copy 2,000 × 5 / 100,000 of it: above XRP's minimums
COPY = {"allocation": "2000", "leverage": 5}


def build_leaders(sm: sessionmaker, admin, leaders: int, followers: int) -> list[PaperWorld]:
    """Create ``leaders`` lead portfolios with ``followers`` funded copies each (DB and paper)."""
    return [
        make_paper_world(
            sm,
            admin,
            copies=[dict(COPY) for _ in range(followers)],
            capital=Decimal("100000"),
            leader_funds=Decimal("1000000"),
        )
        for _ in range(leaders)
    ]


def by_shard(worlds: list[PaperWorld], shards: int) -> Counter:
    return Counter(shard_of(w.world.portfolio_id, shards) for w in worlds)


def environment(db_url: str, paper, worlds: list[PaperWorld]) -> dict[str, str]:
    """The engine processes' environment: ledger, paper exchange, every account's secret."""
    host, port = paper.base_url.removeprefix("http://").split(":")
    env = dict(os.environ)
    env.pop("COPYTRADE_DEBUG", None)
    for w in worlds:
        env.update({ref.split(":", 1)[1]: secret for ref, secret in w.secrets.items()})
    env.update(
        COPYTRADE_DATABASE_URL=db_url,
        COPYTRADE_PAPER_HOST=host,
        COPYTRADE_PAPER_PORT=port,
        COPYTRADE_PAPER_ADMIN_TOKEN=paper.admin_token,
        COPYTRADE_DATA_DIR=str(get_settings().data_dir),
        PYTHONPATH=os.pathsep.join([os.getcwd(), env.get("PYTHONPATH", "")]),
    )
    return env


@dataclass
class ShardProcesses:
    """``copytrade engine run --shard I/N`` processes, each logging to ``workdir/shard-I.log``."""

    env: dict[str, str]
    workdir: Path
    count: int
    python_args: tuple[str, ...] = ()  # before ``-m`` (``-m cProfile -o FILE`` to profile)
    procs: dict[int, subprocess.Popen] = field(default_factory=dict)
    _offsets: dict[int, int] = field(default_factory=dict)

    def argv(self, index: int) -> list[str]:
        return [
            sys.executable,
            *(arg.replace("{shard}", str(index)) for arg in self.python_args),
            "-m",
            "copytrade",
            "engine",
            "run",
            "--shard",
            f"{index}/{self.count}",
            "--heartbeat-every",
            "3600",
        ]

    def log(self, index: int) -> Path:
        return self.workdir / f"shard-{index}.log"

    def ready(self, index: int) -> bool:
        """Whether shard ``index``'s latest start printed its ready line."""
        text = self.log(index).read_text(errors="replace") if self.log(index).exists() else ""
        return "ready:" in text[self._offsets.get(index, 0) :]

    def start(self, index: int) -> subprocess.Popen:
        log_path = self.log(index)
        self._offsets[index] = len(log_path.read_text(errors="replace")) if log_path.exists() else 0
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                self.argv(index), env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        self.procs[index] = proc
        return proc

    def start_all(self) -> None:
        for i in range(self.count):
            self.start(i)

    def kill9(self, index: int) -> None:
        self.procs[index].send_signal(signal.SIGKILL)
        self.procs[index].wait(10)

    def second(self, index: int, timeout: float = 120) -> subprocess.CompletedProcess:
        """Run another process for shard ``index`` to completion (it should be refused)."""
        return subprocess.run(
            self.argv(index), env=self.env, capture_output=True, text=True, timeout=timeout
        )

    def stop_all(self, timeout: float = 60) -> dict[int, int]:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        return {i: proc.wait(timeout) for i, proc in self.procs.items()}

    def kill_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)

    def check_alive(self) -> None:
        for i, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(
                    f"shard {i} exited {proc.returncode}: {self.log(i).read_text()[-3000:]}"
                )


def wait_following(sm, worlds, shards: ShardProcesses, timeout: float = 300) -> None:
    """Return once every leader's symbol is baselined (its engine follows the stream) and every
    shard said it is ready (all its follower gateways built)."""
    want = {w.world.portfolio_id for w in worlds}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        shards.check_alive()
        with sm() as s:
            have = set(
                s.scalars(
                    select(LeaderWatermark.portfolio_id).where(LeaderWatermark.symbol == SYMBOL)
                )
            )
        if want <= have and all(shards.ready(i) for i in shards.procs):
            return
        time.sleep(0.25)
    raise RuntimeError(f"engines not following within {timeout}s: {sorted(want - have)}")


class Leaders:
    """The leaders' own API clients: each places market orders on the paper exchange."""

    def __init__(self, base_url: str, worlds: list[PaperWorld]) -> None:
        self.base_url, self.worlds = base_url, worlds
        self.placed: list[tuple[int, str, datetime]] = []  # (portfolio, side, acknowledged at)
        self._factory: GatewayFactory | None = None
        self._gateways: list = []
        self._rounds = 0

    async def __aenter__(self) -> Leaders:
        self._factory = GatewayFactory("futures", self.base_url)
        await self._factory.start()
        self._gateways = [
            self._factory.gateway(w.leader_key, w.leader_secret, f"leader-{i}")
            for i, w in enumerate(self.worlds)
        ]
        await asyncio.gather(*(g.set_leverage(SYMBOL, 10) for g in self._gateways))
        return self

    async def __aexit__(self, *exc) -> None:
        await self._factory.close()

    async def burst(self, rounds: int, pause: float = 0.0) -> None:
        """Every leader trades ``rounds`` times at once: buy, sell (reduce-only), buy, …"""
        for _ in range(rounds):
            side = "buy" if self._rounds % 2 == 0 else "sell"
            tag = f"{self._rounds}-{time.time_ns() % 10**9}"
            await asyncio.gather(
                *(
                    g.place_order(
                        OrderRequest(
                            SYMBOL, side, LEADER_QTY, f"L{i}-{tag}", reduce_only=side == "sell"
                        )
                    )
                    for i, g in enumerate(self._gateways)
                )
            )
            self._rounds += 1
            if pause:
                await asyncio.sleep(pause)

    @property
    def fills(self) -> int:
        return self._rounds * len(self._gateways)


def open_intents(sm) -> int:
    with sm() as s:
        return s.scalar(
            select(func.count())
            .select_from(FollowerOrderIntent)
            .where(FollowerOrderIntent.status != "done")
        )


def stored_fills(sm) -> int:
    with sm() as s:
        return s.scalar(select(func.count()).select_from(LeaderFill))


def wait_settled(sm, expected_fills: int, shards: ShardProcesses, timeout: float = 300) -> None:
    """Return once every leader fill is stored and every intent has its outcome."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        shards.check_alive()
        if stored_fills(sm) >= expected_fills and not open_intents(sm):
            return
        time.sleep(0.25)
    raise RuntimeError(
        f"not settled within {timeout}s: {stored_fills(sm)}/{expected_fills} fills stored, "
        f"{open_intents(sm)} intents open"
    )


def outcomes(sm) -> dict[str, list[str]]:
    """Every leader fill × copy of its portfolio has exactly one copy intent, done, with an
    outcome (R-COPY-11); return the exceptions by kind (all empty: as it should be)."""
    with sm() as s:
        fills = s.execute(select(LeaderFill.id, LeaderFill.portfolio_id)).all()
        copies = s.execute(select(Copy.id, Copy.portfolio_id)).all()
        intents = s.execute(
            select(
                FollowerOrderIntent.leader_fill_id,
                FollowerOrderIntent.copy_id,
                FollowerOrderIntent.leg,
                FollowerOrderIntent.status,
                FollowerOrderIntent.outcome,
            ).where(FollowerOrderIntent.kind == "copy")
        ).all()
    per_portfolio: dict[int, list[int]] = {}
    for copy_id, pid in copies:
        per_portfolio.setdefault(pid, []).append(copy_id)
    keys = Counter((f, c, leg) for f, c, leg, _, _ in intents)
    have = {(f, c) for f, c, _, _, _ in intents}
    return {
        "twice": [f"{k}: {n} intents" for k, n in keys.items() if n > 1],
        "missing": [
            f"fill {f} × copy {c}"
            for f, pid in fills
            for c in per_portfolio.get(pid, [])
            if (f, c) not in have
        ],
        "no_outcome": [
            f"fill {f} × copy {c}"
            for f, c, _, status, out in intents
            if status != "done" or not out
        ],
    }


async def exchange_orders(base_url: str, worlds: list[PaperWorld], keys: dict[int, str]) -> Counter:
    """Count every follower order on the exchange by client order id (over all followers)."""
    counts: Counter = Counter()
    sem = asyncio.Semaphore(32)
    async with GatewayFactory("futures", base_url) as factory:

        async def one(w: PaperWorld, account_id: int) -> None:
            gw = factory.gateway(
                keys[account_id], w.secrets[f"env:CT_SECRET_{account_id}"], f"check-{account_id}"
            )
            async with sem:
                start = None
                while True:  # allOrders pages from an order id, 1,000 at a time
                    params = {"orderId": start} if start else {}
                    page = await gw.exchange.fetch_orders(gw._unified(SYMBOL), None, 1000, params)
                    for o in page:
                        if start is None or int(o["info"]["orderId"]) >= start:
                            counts[o["info"].get("clientOrderId")] += 1
                    if len(page) < 1000:
                        break
                    start = max(int(o["info"]["orderId"]) for o in page) + 1

        await asyncio.gather(
            *(one(w, acc) for w in worlds for acc in w.world.copy_accounts.values())
        )
    return counts


def api_keys(sm) -> dict[int, str]:
    with sm() as s:
        return {a.id: a.api_key_id for a in s.scalars(select(ExchangeAccount))}


def recorded_orders(sm) -> set[str]:
    with sm() as s:
        return set(s.scalars(select(FollowerOrder.client_order_id)))
