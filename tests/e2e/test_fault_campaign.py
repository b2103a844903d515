"""A fault campaign run as an operator would (issue 11, R-IN-3, R-COPY-7/11, R-X-4).

PostgreSQL ledger; the paper exchange in its own process (``copytrade paper serve``); a futures
leader replaying the real lead trader's fills (``copytrade paper leader-bot``); 30 followers;
``copytrade engine run`` as a subprocess. During the replay: every fault kind ``copytrade paper
fault`` offers, 5 × ``kill -9`` of the engine (three of them while orders are in flight), 503s on
the leader's ``userTrades`` while the engine restarts, and one database session dropped with
``pg_terminate_backend``. Then: 0 lost leader fills against the exchange's trade list, 0 duplicate
client order ids on the exchange and every exchange order recorded, exactly one outcome per leader
fill × copy × leg, every follower's position proportional to the leader's, the reconciliation
and the ledger validation clean, no secret in the engine's log. Seeded and bounded (≈ 3 min).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal as D
from pathlib import Path

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import sessionmaker

from copytrade import migrate
from copytrade.config import get_settings
from copytrade.db import make_engine
from copytrade.engine.fixtures import make_paper_world
from copytrade.exchange.factory import GatewayFactory
from copytrade.ledger import Ledger
from models import (
    Copy,
    CopyPosition,
    ExchangeAccount,
    FollowerOrder,
    FollowerOrderIntent,
    LeaderFill,
    LeaderWatermark,
    QuarantinedEvent,
)

pytestmark = [pytest.mark.slow, pytest.mark.postgres]
paper_testing = pytest.importorskip("copytrade.paper.testing")

SEED = 20261207
FILLS = 320  # leader orders replayed (the real trader's 1000PEPE and ONDO fills)
FOLLOWERS = 30
KILLS = 5
SYMBOLS = ("1000PEPEUSDT", "ONDOUSDT")
ORDER_PATH = "/fapi/v1/order"
APP = "ct-campaign-engine"  # the engine's PostgreSQL application_name: only its sessions dropped


def follower_settings(rng: random.Random, n: int) -> list[dict]:
    """Ratio copies with room for the leader's largest positions; mixed leverage and policies.

    Leverage stays ≤ 5: the portfolio's AUM passes 100,000 USDT, beyond which higher leverage
    is refused for openings (R-LEAD-8) and such copies would rightly not follow.
    """
    return [
        {
            "allocation": str(rng.choice([4000, 5000, 6000])),
            "leverage": rng.randint(2, 5),
            "below_min_policy": ("skip", "accumulate")[i % 2],
        }
        for i in range(n)
    ]


@dataclass
class Campaign:
    """The processes of one campaign and what happened to them."""

    tmp: Path
    env: dict
    base_url: str
    log_path: Path
    engine: subprocess.Popen | None = None
    starts: int = 0
    kills: list[str] = field(default_factory=list)
    faults: list[str] = field(default_factory=list)

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [sys.executable, "-m", "copytrade", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        if check:
            assert result.returncode == 0, (args, result.stdout[-2000:], result.stderr[-2000:])
        return result

    def fault(self, kind: str, *options: str) -> None:
        self.cli("paper", "fault", kind, "--url", self.base_url, *options)
        self.faults.append(kind)

    def start_engine(self) -> None:
        with open(self.log_path, "ab") as log:
            self.engine = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "copytrade",
                    "engine",
                    "run",
                    "-v",
                    "--heartbeat-every",
                    "5",
                ],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.starts += 1

    def kill_engine(self, why: str) -> None:
        self.engine.send_signal(signal.SIGKILL)
        self.engine.wait(10)
        self.kills.append(why)


def _open_intents(sm) -> int:
    with sm() as s:
        return s.scalar(
            select(func.count())
            .select_from(FollowerOrderIntent)
            .where(FollowerOrderIntent.status != "done")
        )


def _kill_mid_dispatch(campaign: Campaign, sm, admin, timeout: float = 20.0) -> None:
    """Slow every order down, wait until intents are persisted but unanswered, then kill -9."""
    admin.add_fault("slow", count=FOLLOWERS, paths=[ORDER_PATH], methods=["POST"], delay=1.5)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _open_intents(sm):
            campaign.kill_engine("mid-dispatch")
            return
        time.sleep(0.02)
    campaign.kill_engine("no order in flight within the wait")


def _drop_engine_db_sessions(server_url: str) -> int:
    admin = make_engine(server_url)
    with admin.begin() as conn:
        dropped = conn.execute(
            text(
                "select count(pg_terminate_backend(pid)) from pg_stat_activity "
                "where application_name = :app"
            ),
            {"app": APP},
        ).scalar_one()
    admin.dispose()
    return dropped


async def _exchange_view(
    base_url: str, pw, follower_accounts: dict[int, int], keys: dict[int, str]
) -> dict:
    """Read the exchange: the leader's trades and position, each follower's positions and orders."""
    out: dict = {"leader_trades": {}, "followers": {}, "orders": {}}
    async with GatewayFactory("futures", base_url) as factory:
        leader = factory.gateway(pw.leader_key, pw.leader_secret, "check-leader")
        for symbol in SYMBOLS:
            trades, start = [], 0
            while True:
                page = await leader.my_trades(symbol, str(start), 1000)
                trades += page
                if len(page) < 1000:
                    break
                start = max(int(t.trade_id) for t in page) + 1
            out["leader_trades"][symbol] = {t.trade_id for t in trades}
        out["leader_positions"] = {p.symbol: p.quantity for p in await leader.positions()}
        out["markets"] = {symbol: leader.market(symbol) for symbol in SYMBOLS}
        out["prices"] = {symbol: await leader.last_price(symbol) for symbol in SYMBOLS}
        for copy_id, account_id in follower_accounts.items():
            secret = pw.secrets[f"env:CT_SECRET_{account_id}"]
            gw = factory.gateway(keys[account_id], secret, f"check-{copy_id}")
            out["followers"][copy_id] = {p.symbol: p.quantity for p in await gw.positions()}
            ids = []
            for symbol in SYMBOLS:
                orders = await gw.exchange.fetch_orders(gw._unified(symbol), None, 1000)
                ids += [
                    (
                        o["info"].get("clientOrderId"),
                        symbol,
                        o["info"].get("side"),
                        D(str(o["info"].get("executedQty") or 0)),
                        o["info"].get("status"),
                    )
                    for o in orders
                ]
            out["orders"][copy_id] = ids
    return out


def test_fault_campaign_loses_no_leader_fill_and_keeps_followers_proportional_R_IN_3(
    pg_url, pg_server_url, shared_data, tmp_path
):
    rng = random.Random(SEED)
    assert migrate.upgrade(pg_url)
    db = make_engine(pg_url)
    sm = sessionmaker(db, expire_on_commit=False)
    engine_url = (
        make_url(pg_url)
        .update_query_dict({"application_name": APP})
        .render_as_string(hide_password=False)
    )
    with paper_testing.run_paper_exchange(
        mode="process", start="2025-01-26T21:00:00Z", speed=1.0
    ) as paper:
        copies = follower_settings(rng, FOLLOWERS)
        pw = make_paper_world(sm, paper.admin, copies=copies)
        with sm() as s:
            keys = {a.id: a.api_key_id for a in s.scalars(select(ExchangeAccount))}
        leader_paper_id = pw.paper_ids[pw.world.leader_account_id]
        credentials = tmp_path / "leader.json"
        credentials.write_text(
            json.dumps(
                {
                    "account_id": leader_paper_id,
                    "api_key": pw.leader_key,
                    "api_secret": pw.leader_secret,
                }
            )
        )
        host, port = paper.base_url.removeprefix("http://").split(":")
        env = dict(os.environ)
        env.pop("COPYTRADE_DEBUG", None)
        env.update({ref.split(":", 1)[1]: secret for ref, secret in pw.secrets.items()})
        env.update(
            COPYTRADE_DATABASE_URL=engine_url,
            COPYTRADE_PAPER_HOST=host,
            COPYTRADE_PAPER_PORT=port,
            COPYTRADE_PAPER_ADMIN_TOKEN=paper.admin_token,
            COPYTRADE_DATA_DIR=str(get_settings().data_dir),
            PYTHONPATH=os.pathsep.join([os.getcwd(), env.get("PYTHONPATH", "")]),
        )
        campaign = Campaign(tmp_path, env, paper.base_url, tmp_path / "engine.log")
        follower_paper = [pw.paper_ids[pw.world.copy_accounts[c]] for c in pw.world.copy_ids]
        bot = None
        try:
            campaign.start_engine()
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:  # following the leader: symbols baselined
                with sm() as s:
                    if s.scalar(select(func.count()).select_from(LeaderWatermark)):
                        break
                time.sleep(0.2)
            else:
                pytest.fail(campaign.log_path.read_text()[-3000:])
            with open(tmp_path / "bot.log", "wb") as bot_log:
                bot = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "copytrade",
                        "paper",
                        "leader-bot",
                        "--url",
                        paper.base_url,
                        "--credentials-file",
                        str(credentials),
                        "--limit",
                        str(FILLS),
                        "--max-wait",
                        "0.25",
                    ],
                    env=env,
                    stdout=bot_log,
                    stderr=subprocess.STDOUT,
                )
            # every kind of fault the paper exchange offers, as an operator arms them
            victims = rng.sample(follower_paper, 5)
            for kind, victim, extra in (
                ("rate_limit", victims[0], ["--count", "3", "--retry-after", "1"]),
                ("ban", victims[1], ["--count", "1", "--retry-after", "1"]),
                ("error_before", victims[2], ["--count", "2"]),
                ("error_after", victims[3], ["--count", "3"]),
                ("timeout_after", victims[4], ["--count", "1", "--delay", "11"]),
            ):
                campaign.fault(kind, "--account-id", victim, "--path", ORDER_PATH, *extra)
            campaign.fault("duplicate_events", "--account-id", leader_paper_id, "--count", "5")
            campaign.fault("reorder_events", "--account-id", leader_paper_id, "--count", "5")
            plan = ["mid-dispatch", "random", "mid-dispatch", "random", "mid-dispatch"]
            dropped_db = dropped_stream = False
            for n, kind in enumerate(plan):
                time.sleep(rng.uniform(6, 12))
                if n == 1 and not dropped_db:
                    assert _drop_engine_db_sessions(pg_server_url) >= 1
                    dropped_db = True
                    time.sleep(rng.uniform(2, 4))
                if n == 2 and not dropped_stream:
                    campaign.fault("drop_stream", "--account-id", leader_paper_id)
                    dropped_stream = True
                    time.sleep(rng.uniform(1, 3))
                if campaign.engine.poll() is not None:
                    campaign.start_engine()  # it may have died of the dropped session
                    time.sleep(3)
                if kind == "mid-dispatch":
                    _kill_mid_dispatch(campaign, sm, paper.admin)
                else:
                    campaign.kill_engine("random")
                # down for a while; the restart's backfill meets 503s on userTrades first
                time.sleep(rng.uniform(1, 3))
                if n in (0, 3):
                    campaign.fault(
                        "error_before",
                        "--account-id",
                        leader_paper_id,
                        "--path",
                        "/fapi/v1/userTrades",
                        "--count",
                        "3",
                    )
                campaign.start_engine()
            assert bot.wait(240) == 0, (tmp_path / "bot.log").read_text()[-3000:]
            paper.admin.clear_faults()
            # let the engine catch up with the exchange: every leader trade stored, no open order
            view = asyncio.run(_exchange_view(paper.base_url, pw, {}, keys))
            expected = sum(len(v) for v in view["leader_trades"].values())
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                with sm() as s:
                    stored = s.scalar(select(func.count()).select_from(LeaderFill))
                if stored >= expected and not _open_intents(sm):
                    break
                time.sleep(0.5)
            reconcile = campaign.cli("engine", "reconcile", check=False)
            campaign.engine.send_signal(signal.SIGTERM)
            assert campaign.engine.wait(60) == 0, campaign.log_path.read_text()[-3000:]
            validate = campaign.cli("validate", check=False)
            view = asyncio.run(
                _exchange_view(paper.base_url, pw, dict(pw.world.copy_accounts.items()), keys)
            )
        finally:
            if bot is not None and bot.poll() is None:
                bot.kill()
            if campaign.engine is not None and campaign.engine.poll() is None:
                campaign.engine.kill()
    log_text = campaign.log_path.read_text(errors="replace")

    # the campaign happened as planned
    assert len(campaign.kills) == KILLS and campaign.kills.count("mid-dispatch") >= 3
    assert {
        "rate_limit",
        "ban",
        "error_before",
        "error_after",
        "timeout_after",
        "duplicate_events",
        "reorder_events",
        "drop_stream",
    } <= set(campaign.faults)

    # 0 lost leader fills: the exchange's trade list equals the stored leader fills
    with sm() as s:
        stored = {
            sym: set(
                s.scalars(select(LeaderFill.exchange_trade_id).where(LeaderFill.symbol == sym))
            )
            for sym in SYMBOLS
        }
        quarantined = Counter(q.reason_code for q in s.scalars(select(QuarantinedEvent)))
    exchange_fills = sum(len(v) for v in view["leader_trades"].values())
    assert exchange_fills >= 300, exchange_fills
    for symbol in SYMBOLS:
        lost = view["leader_trades"][symbol] - stored[symbol]
        assert lost == set(), f"{len(lost)} {symbol} leader fills lost: {sorted(lost)[:10]}"
        assert stored[symbol] <= view["leader_trades"][symbol]
    assert set(quarantined) <= {"duplicate"}, quarantined

    # 0 duplicate client order ids, and every exchange order is a recorded intent
    with sm() as s:
        intents = s.scalars(select(FollowerOrderIntent)).all()
        fills = s.scalars(select(LeaderFill)).all()
        copy_rows = s.scalars(select(Copy)).all()
    recorded = {i.client_order_id for i in intents}
    for copy_id, orders in view["orders"].items():
        ids = [o[0] for o in orders]
        dupes = [cid for cid, n in Counter(ids).items() if n > 1]
        assert dupes == [], f"copy {copy_id}: client ids sent twice: {dupes[:5]}"
        assert set(ids) <= recorded, f"copy {copy_id}: orders never recorded"

    # exactly one outcome per leader fill × copy × leg
    copied = [i for i in intents if i.kind == "copy"]
    keys = Counter((i.leader_fill_id, i.copy_id, i.leg) for i in copied)
    assert max(keys.values()) == 1
    per_fill = {(i.leader_fill_id, i.copy_id) for i in copied}
    missing = [(f.id, c.id) for f in fills for c in copy_rows if (f.id, c.id) not in per_fill]
    assert missing == [], f"{len(missing)} leader fill × copy without an intent"
    assert [i.id for i in intents if i.status != "done" or i.outcome is None] == []
    assert all(i.reason for i in intents)

    # every follower's position proportional to the leader's (R-COPY-6 rounding, see below)
    deviations = _proportionality(sm, view, pw)
    assert deviations == [], deviations[:5]

    # the operator's checks are clean; no secret reached the log
    assert reconcile.returncode == 0, reconcile.stdout[-3000:] + reconcile.stderr[-2000:]
    assert json.loads(reconcile.stdout)["drift"] == []
    assert validate.returncode == 0, validate.stdout[-3000:] + validate.stderr[-2000:]
    with sm() as s:
        assert Ledger(s).verify_chain().ok
    for secret in pw.secrets.values():
        assert secret not in log_text
    assert "Traceback" not in log_text or "database lost" in log_text
    db.dispose()


def _proportionality(sm, view, pw) -> list[str]:
    """Return the followers whose position is not the leader's × their ratio, within rounding.

    A ratio copy's opening is the leader's quantity × copy equity / leader equity *at that fill*
    (the ratio moves with both equities), rounded down to the lot step (R-COPY-6); a reduction
    takes the same fraction of what the follower holds. So at the end a follower holds between
    ``r_min`` and ``r_max`` × the leader's position — the smallest and largest ratio its openings
    used (read back from the intents' exact ``computed_quantity``) — less at most one step per
    opening since the leader was last flat and one minimum order (skipped or accumulated below the
    market minimum), and never more. Most important: never the other side of the leader.
    """
    markets = view["markets"]
    problems = []
    with sm() as s:
        fills = {f.id: f for f in s.scalars(select(LeaderFill))}
        openings = {}
        for symbol in SYMBOLS:
            count = 0
            for f in sorted(
                (f for f in fills.values() if f.symbol == symbol),
                key=lambda f: int(f.exchange_trade_id),
            ):
                count = (0 if f.position_before == 0 else count) + bool(f.is_opening)
            openings[symbol] = count
        ratios: dict[tuple[int, str], list[D]] = {}
        reasons: dict[tuple[int, str], Counter] = {}
        for i in s.scalars(select(FollowerOrderIntent).where(FollowerOrderIntent.kind == "copy")):
            f = fills[i.leader_fill_id]
            reasons.setdefault((i.copy_id, i.symbol), Counter())[i.reason_code] += 1
            if i.leg == 0 and f.is_opening and i.computed_quantity > 0:
                ratios.setdefault((i.copy_id, i.symbol), []).append(
                    i.computed_quantity / f.quantity
                )
        held = {(p.copy_id, p.symbol): p.quantity for p in s.scalars(select(CopyPosition))}
        recorded = {
            o.client_order_id: (o.filled_quantity, o.exchange_status)
            for o in s.scalars(select(FollowerOrder))
        }
        intent_of = {
            i.client_order_id: (i.kind, i.status, i.outcome, i.reason_code, i.quantity)
            for i in s.scalars(select(FollowerOrderIntent))
        }
    for copy_id in pw.world.copy_ids:
        for symbol in SYMBOLS:
            market = markets[symbol]
            step = market.market_step_size
            minimum = max(market.market_min_qty, market.min_notional / view["prices"][symbol])
            leader = view["leader_positions"].get(symbol, D(0))
            mine = view["followers"][copy_id].get(symbol, D(0))
            used = ratios.get((copy_id, symbol)) or [D(0)]
            low, high = min(used), max(used)
            if leader == 0:
                ok = mine == 0
            elif mine and (mine > 0) != (leader > 0):
                ok = False  # the issue-11 failure: a follower short while the leader is long
            else:
                slack = step * (openings[symbol] + 1) + minimum
                ok = abs(leader) * low - slack <= abs(mine) <= abs(leader) * high + step
            if not ok:
                differ = [
                    (cid, side, qty, status, recorded.get(cid), intent_of.get(cid))
                    for cid, sym, side, qty, status in view["orders"][copy_id]
                    if sym == symbol and (recorded.get(cid) or (None,))[0] != qty
                ]
                problems.append(f"copy {copy_id} {symbol}: exchange ≠ ledger: {differ[:6]}")
                problems.append(
                    f"copy {copy_id} {symbol}: holds {mine} (engine: {held.get((copy_id, symbol))}),"
                    f" leader {leader}, ratios {low:.4f}..{high:.4f}, openings "
                    f"{openings[symbol]}, outcomes {dict(reasons.get((copy_id, symbol), {}))}"
                )
    return problems
