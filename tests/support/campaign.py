"""A fault campaign run as an operator would, for the end-to-end test and the benchmark (R-IN-3).

PostgreSQL ledger; the paper exchange in its own process (``copytrade paper serve``); a futures
leader replaying the real lead trader's fills (``copytrade paper leader-bot``, looping the file
for long runs); N followers; ``copytrade engine run`` as a subprocess. While the leader trades:
every fault kind ``copytrade paper fault`` offers, ``kill -9`` of the engine at random moments
(alternately while orders are in flight), 503s on the leader's ``userTrades`` while the engine
restarts, and one database session dropped with ``pg_terminate_backend``. Then the engine catches
up, ``copytrade engine reconcile`` and ``copytrade validate`` run, and ``check`` compares the
ledger with the exchange. Test support (``tests/support``): the platform never imports it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import sessionmaker

from copytrade import migrate
from copytrade.config import get_settings
from copytrade.db import make_engine
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
from tests.support.engine_world import make_paper_world

SYMBOLS = ("1000PEPEUSDT", "ONDOUSDT")
FILE_FILLS = 484  # the real trader's 1000PEPE and ONDO fills: one pass of the leader bot
ORDER_PATH = "/fapi/v1/order"
FAULT_KINDS = (
    "rate_limit",
    "ban",
    "error_before",
    "error_after",
    "timeout_after",
    "slow",
    "drop_stream",
    "duplicate_events",
    "reorder_events",
)
ZERO = Decimal(0)


@dataclass
class CampaignConfig:
    pg_url: str  # a fresh, empty schema
    pg_server_url: str  # the server itself, to drop the engine's sessions
    workdir: Path
    fills: int = 320
    followers: int = 30
    kills: int = 5
    seed: int = 20261207
    pause: tuple[float, float] = (6.0, 12.0)  # seconds between two kills
    max_wait: float = 0.25  # the bot's longest wall-clock wait between two fills
    app_name: str = "ct-campaign-engine"  # the engine's application_name in pg_stat_activity


@dataclass
class CampaignOutcome:
    """What happened and what ``check`` found (every list empty: the campaign passed)."""

    figures: dict = field(default_factory=dict)
    problems: dict[str, list[str]] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return not any(self.problems.values())


class _Operator:
    """The processes of one campaign, driven through the CLI as an operator would."""

    def __init__(self, env: dict, base_url: str, workdir: Path) -> None:
        self.env, self.base_url, self.workdir = env, base_url, workdir
        self.log_path = workdir / "engine.log"
        self.engine: subprocess.Popen | None = None
        self.starts = 0
        self.log_mark = 0
        self.kills: list[str] = []
        self.faults: list[str] = []
        self.db_sessions_dropped = 0

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "copytrade", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    def fault(self, kind: str, *options: str) -> None:
        result = self.cli("paper", "fault", kind, "--url", self.base_url, *options)
        if result.returncode != 0:
            raise RuntimeError(f"paper fault {kind}: {result.stderr[-500:]}")
        self.faults.append(kind)

    def start_engine(self) -> None:
        self.log_mark = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            self.engine = subprocess.Popen(
                [sys.executable, "-m", "copytrade", "engine", "run", "-v"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.starts += 1

    def wait_ready(self, timeout: float = 180.0) -> None:
        """Wait until the engine started last says it is ready (following every leader).

        The last kill may come after the replay ended, and the restarted engine is then still
        starting when the catch-up is complete; a SIGTERM before its signal handler is set
        ends it like any starting process (-15), which is not what an operator's stop tests.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with open(self.log_path, "rb") as log:
                log.seek(self.log_mark)
                if b"ready:" in log.read():
                    return
            if self.engine.poll() is not None:
                raise RuntimeError(f"engine exit {self.engine.returncode} while starting")
            time.sleep(0.2)
        raise RuntimeError(f"engine not ready after {timeout:.0f} s")

    def kill_engine(self, why: str) -> None:
        self.engine.send_signal(signal.SIGKILL)
        self.engine.wait(10)
        self.kills.append(why)

    def bot(self, credentials: Path, limit: int, max_wait: float) -> subprocess.Popen:
        with open(self.workdir / "bot.log", "ab") as log:
            return subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "copytrade",
                    "paper",
                    "leader-bot",
                    "--url",
                    self.base_url,
                    "--credentials-file",
                    str(credentials),
                    "--limit",
                    str(limit),
                    "--max-wait",
                    str(max_wait),
                ],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )


def follower_settings(rng: random.Random, n: int) -> list[dict]:
    """Ratio copies with room for the leader's largest positions; mixed leverage and policies.

    Leverage stays ≤ 5: the portfolio's AUM passes 100,000 USDT, beyond which higher leverage is
    refused for openings (R-LEAD-8) and such copies would rightly not follow.
    """
    return [
        {
            "allocation": str(rng.choice([4000, 5000, 6000])),
            "leverage": rng.randint(2, 5),
            "below_min_policy": ("skip", "accumulate")[i % 2],
        }
        for i in range(n)
    ]


def _open_intents(sm) -> int:
    with sm() as s:
        return s.scalar(
            select(func.count())
            .select_from(FollowerOrderIntent)
            .where(FollowerOrderIntent.status != "done")
        )


def _kill_mid_dispatch(op: _Operator, sm, admin, followers: int, timeout: float = 60.0) -> None:
    """Slow orders down, wait until intents are persisted but unanswered, then kill -9.

    The wait is long enough to span the replay's quiet stretches on a loaded machine: a kill
    made because nothing came in flight is counted apart, not as mid-dispatch.
    """
    admin.add_fault("slow", count=followers, paths=[ORDER_PATH], methods=["POST"], delay=1.5)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _open_intents(sm):
            op.kill_engine("mid-dispatch")
            return
        time.sleep(0.02)
    op.kill_engine("no order in flight within the wait")


def _drop_sessions(server_url: str, app_name: str, wait: float = 60.0) -> int:
    """Terminate the engine's database sessions; wait for one while a restarted engine (slow to
    start on a loaded machine) has not connected yet."""
    admin = make_engine(server_url)
    deadline = time.monotonic() + wait
    try:
        while True:
            with admin.begin() as conn:
                dropped = conn.execute(
                    text(
                        "select count(pg_terminate_backend(pid)) from pg_stat_activity "
                        "where application_name = :app"
                    ),
                    {"app": app_name},
                ).scalar_one()
            if dropped or time.monotonic() >= deadline:
                return dropped
            time.sleep(0.2)
    finally:
        admin.dispose()


async def exchange_view(base_url: str, pw, keys: dict[int, str], followers: bool = True) -> dict:
    """Read the exchange: the leader's trades and position; each follower's positions and orders."""
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
        if not followers:
            return out
        for copy_id, account_id in pw.world.copy_accounts.items():
            secret = pw.secrets[f"env:CT_SECRET_{account_id}"]
            gw = factory.gateway(keys[account_id], secret, f"check-{copy_id}")
            out["followers"][copy_id] = {p.symbol: p.quantity for p in await gw.positions()}
            orders = []
            for symbol in SYMBOLS:
                start = None
                while True:  # allOrders pages from an order id, 1,000 at a time
                    params = {"orderId": start} if start else {}
                    page = await gw.exchange.fetch_orders(gw._unified(symbol), None, 1000, params)
                    orders += [
                        (
                            o["info"].get("clientOrderId"),
                            symbol,
                            o["info"].get("side"),
                            Decimal(str(o["info"].get("executedQty") or 0)),
                            int(o["info"]["orderId"]),
                        )
                        for o in page
                        if start is None or int(o["info"]["orderId"]) >= start
                    ]
                    if len(page) < 1000:
                        break
                    start = max(int(o["info"]["orderId"]) for o in page) + 1
            out["orders"][copy_id] = orders
    return out


def run_campaign(config: CampaignConfig) -> CampaignOutcome:
    """Run one campaign end to end and check it; return the figures and the problems found."""
    from tests.support.paper_exchange import run_paper_exchange

    rng = random.Random(config.seed)
    started = time.monotonic()
    load_before = os.getloadavg()
    migrate.upgrade(config.pg_url)
    db = make_engine(config.pg_url)
    sm = sessionmaker(db, expire_on_commit=False)
    engine_url = (
        make_url(config.pg_url)
        .update_query_dict({"application_name": config.app_name})
        .render_as_string(hide_password=False)
    )
    outcome = CampaignOutcome()
    try:
        with run_paper_exchange(mode="process", start="2025-01-26T21:00:00Z", speed=1.0) as paper:
            pw = make_paper_world(sm, paper.admin, copies=follower_settings(rng, config.followers))
            with sm() as s:
                keys = {a.id: a.api_key_id for a in s.scalars(select(ExchangeAccount))}
            op = _Operator(_environment(engine_url, paper, pw), paper.base_url, config.workdir)
            reconcile, validate = _campaign(config, rng, op, sm, paper, pw)
            view = asyncio.run(exchange_view(paper.base_url, pw, keys))
        outcome.figures = {
            "leader_fills": sum(len(v) for v in view["leader_trades"].values()),
            "followers": config.followers,
            "kills": len(op.kills),
            "kills_mid_dispatch": op.kills.count("mid-dispatch"),
            "engine_starts": op.starts,
            "db_sessions_dropped": op.db_sessions_dropped,
            "faults": sorted(set(op.faults)),
            "seconds": round(time.monotonic() - started, 1),
            "load_before": [round(x, 2) for x in load_before],
            "load_after": [round(x, 2) for x in os.getloadavg()],
            "reconcile_exit": reconcile.returncode,
            "validate_exit": validate.returncode,
        }
        outcome.problems = check(sm, view, pw, op, reconcile, validate, outcome.figures)
        (config.workdir / "outcome.json").write_text(
            json.dumps({"figures": outcome.figures, "problems": outcome.problems}, default=str)
        )
    finally:
        db.dispose()
    return outcome


def _environment(engine_url: str, paper, pw) -> dict:
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
    return env


def _campaign(config, rng, op: _Operator, sm, paper, pw):
    leader_id = pw.paper_ids[pw.world.leader_account_id]
    followers = [pw.paper_ids[pw.world.copy_accounts[c]] for c in pw.world.copy_ids]
    credentials = config.workdir / "leader.json"
    credentials.write_text(
        json.dumps(
            {"account_id": leader_id, "api_key": pw.leader_key, "api_secret": pw.leader_secret}
        )
    )
    bot = None
    try:
        op.start_engine()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # following the leader: its symbols are baselined
            with sm() as s:
                if s.scalar(select(func.count()).select_from(LeaderWatermark)):
                    break
            time.sleep(0.2)
        else:
            raise RuntimeError(op.log_path.read_text()[-3000:])
        passes = [min(FILE_FILLS, config.fills - n) for n in range(0, config.fills, FILE_FILLS)]
        bot = op.bot(credentials, passes.pop(0), config.max_wait)
        victims = rng.sample(followers, 5)
        for kind, victim, extra in (
            ("rate_limit", victims[0], ["--count", "3", "--retry-after", "1"]),
            ("ban", victims[1], ["--count", "1", "--retry-after", "1"]),
            ("error_before", victims[2], ["--count", "2"]),
            ("error_after", victims[3], ["--count", "3"]),
            ("timeout_after", victims[4], ["--count", "1", "--delay", "11"]),
        ):
            op.fault(kind, "--account-id", victim, "--path", ORDER_PATH, *extra)
        op.fault("duplicate_events", "--account-id", leader_id, "--count", "5")
        op.fault("reorder_events", "--account-id", leader_id, "--count", "5")
        for n in range(config.kills):
            time.sleep(rng.uniform(*config.pause))
            if n == 1:
                if _drop_sessions(config.pg_server_url, config.app_name) < 1:
                    raise RuntimeError("no engine database session to drop")
                op.db_sessions_dropped += 1
                time.sleep(rng.uniform(2, 4))
            if n == 2:
                op.fault("drop_stream", "--account-id", leader_id)
                time.sleep(rng.uniform(1, 3))
            if op.engine.poll() is not None:
                op.start_engine()  # it may have exited on the dropped session
                time.sleep(3)
            if n % 2 == 0:
                _kill_mid_dispatch(op, sm, paper.admin, config.followers)
                op.faults.append("slow")
            else:
                op.kill_engine("random")
            time.sleep(rng.uniform(1, 3))  # down a while; the restart meets 503s on userTrades
            if n % 3 == 0:
                op.fault(
                    "error_before",
                    "--account-id",
                    leader_id,
                    "--path",
                    "/fapi/v1/userTrades",
                    "--count",
                    "3",
                )
            op.start_engine()
            if bot.poll() is not None and passes:  # the next pass over the file
                bot = op.bot(credentials, passes.pop(0), config.max_wait)
        while True:
            if bot.wait(1800) != 0:
                raise RuntimeError((config.workdir / "bot.log").read_text()[-3000:])
            if not passes:
                break
            bot = op.bot(credentials, passes.pop(0), config.max_wait)
        paper.admin.clear_faults()
        view = asyncio.run(exchange_view(paper.base_url, pw, {}, followers=False))
        expected = sum(len(v) for v in view["leader_trades"].values())
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:  # the engine catches up with the exchange
            with sm() as s:
                stored = s.scalar(select(func.count()).select_from(LeaderFill))
            if stored >= expected and not _open_intents(sm):
                break
            time.sleep(0.5)
        op.wait_ready()
        op.engine.send_signal(signal.SIGTERM)
        if (code := op.engine.wait(60)) != 0:
            raise RuntimeError(f"engine exit {code} on SIGTERM: {op.log_path.read_text()[-3000:]}")
        # With the engine stopped the operator's reconcile acts itself (a running engine's
        # portfolios are left to it): every fill and position compared with the exchange.
        reconcile = op.cli("engine", "reconcile")
        validate = op.cli("validate")
        return reconcile, validate
    finally:
        if bot is not None and bot.poll() is None:
            bot.kill()
        if op.engine is not None and op.engine.poll() is None:
            op.engine.kill()


def check(sm, view, pw, op: _Operator, reconcile, validate, figures: dict) -> dict[str, list]:
    """Compare the ledger with the exchange; return the problems found, by invariant."""
    problems: dict[str, list] = {}
    with sm() as s:
        stored = {
            sym: set(
                s.scalars(select(LeaderFill.exchange_trade_id).where(LeaderFill.symbol == sym))
            )
            for sym in SYMBOLS
        }
        quarantined = Counter(q.reason_code for q in s.scalars(select(QuarantinedEvent)))
        intents = s.scalars(select(FollowerOrderIntent)).all()
        fills = s.scalars(select(LeaderFill)).all()
        copies = s.scalars(select(Copy)).all()
        chain_ok = Ledger(s).verify_chain().ok
    problems["lost_leader_fills"] = [
        f"{symbol}#{t}"
        for symbol in SYMBOLS
        for t in view["leader_trades"][symbol] - stored[symbol]
    ]
    problems["fills_not_on_exchange"] = [
        f"{symbol}#{t}"
        for symbol in SYMBOLS
        for t in stored[symbol] - view["leader_trades"][symbol]
    ]
    problems["quarantined_not_duplicate"] = [
        f"{k}: {n}" for k, n in quarantined.items() if k != "duplicate"
    ]
    recorded = {i.client_order_id for i in intents}
    problems["duplicate_client_ids"], problems["orders_not_recorded"] = [], []
    for copy_id, orders in view["orders"].items():
        counts = Counter(o[0] for o in orders)
        problems["duplicate_client_ids"] += [f"{copy_id}:{c}" for c, n in counts.items() if n > 1]
        problems["orders_not_recorded"] += [f"{copy_id}:{c}" for c in counts if c not in recorded]
    copied = [i for i in intents if i.kind == "copy"]
    keys = Counter((i.leader_fill_id, i.copy_id, i.leg) for i in copied)
    per_fill = {(i.leader_fill_id, i.copy_id) for i in copied}
    problems["not_one_outcome"] = (
        [f"{k} has {n} intents" for k, n in keys.items() if n > 1]
        + [
            f"fill {f.id} × copy {c.id}: no intent"
            for f in fills
            for c in copies
            if (f.id, c.id) not in per_fill
        ]
        + [f"intent {i.id} without outcome" for i in intents if i.status != "done" or not i.outcome]
        + [f"intent {i.id} without reason" for i in intents if not i.reason]
    )
    problems["not_proportional"] = proportionality(sm, view, pw)
    report = {}
    with contextlib.suppress(ValueError):
        report = json.loads(reconcile.stdout)
    problems["reconcile"] = (
        []
        if reconcile.returncode == 0
        else [f"exit {reconcile.returncode}: {reconcile.stdout[-800:]}"]
    )
    problems["validate"] = (
        []
        if validate.returncode == 0 and chain_ok
        else [f"exit {validate.returncode}: {validate.stdout[-800:]} {validate.stderr[-800:]}"]
    )
    log_text = op.log_path.read_text(errors="replace")
    problems["secrets_in_log"] = [ref for ref, secret in pw.secrets.items() if secret in log_text]
    # How often the engine's view of the leader's position before a fill differed from the
    # position the exchange's trades give in trade-id order (late fills legitimately do).
    view_differs = 0
    for symbol in SYMBOLS:
        position = ZERO
        for f in sorted(
            (f for f in fills if f.symbol == symbol), key=lambda f: int(f.exchange_trade_id)
        ):
            view_differs += f.position_before != position
            position += f.quantity if f.side == "buy" else -f.quantity
    fill_ids = {f.id: f"{f.symbol}#{f.exchange_trade_id}" for f in fills}
    figures.update(
        rejections=dict(
            Counter(
                f"{fill_ids.get(i.leader_fill_id)} leg {i.leg}: {(i.reason or '')[:90]}"
                for i in copied
                if i.outcome == "rejected"
            ).most_common(5)
        ),
        leader_view_differs=view_differs,
        stored_leader_fills=sum(len(v) for v in stored.values()),
        intents=len(copied),
        outcomes=dict(Counter(i.outcome for i in copied)),
        reasons=dict(Counter(i.reason_code for i in copied).most_common(8)),
        follower_orders=sum(len(v) for v in view["orders"].values()),
        quarantined=dict(quarantined),
        missing_found_by_reconcile=len(report.get("missing_found", [])),
    )
    return problems


def proportionality(sm, view, pw) -> list[str]:
    """Return the followers whose position is not the leader's × their ratio, within rounding.

    A ratio copy's opening is the leader's quantity × copy equity / leader equity *at that fill*
    (the ratio moves with both equities), rounded down to the lot step (R-COPY-6); a reduction
    takes the same fraction of what the follower holds. So at the end a follower holds between
    ``r_min`` and ``r_max`` × the leader's position — the smallest and largest ratio its openings
    used (read back from the intents' exact ``computed_quantity``) — less at most one step per
    opening since the leader was last flat and one minimum order (skipped or accumulated below the
    market minimum), and never more. Above all: never on the other side of the leader.
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
        ratios: dict[tuple[int, str], list[Decimal]] = {}
        reasons: dict[tuple[int, str], Counter] = {}
        for i in s.scalars(select(FollowerOrderIntent).where(FollowerOrderIntent.kind == "copy")):
            f = fills[i.leader_fill_id]
            reasons.setdefault((i.copy_id, i.symbol), Counter())[i.reason_code] += 1
            if i.leg == 0 and f.is_opening and i.computed_quantity > 0:
                ratios.setdefault((i.copy_id, i.symbol), []).append(
                    i.computed_quantity / f.quantity
                )
        held = {(p.copy_id, p.symbol): p.quantity for p in s.scalars(select(CopyPosition))}
        recorded = {o.client_order_id: o.filled_quantity for o in s.scalars(select(FollowerOrder))}
    for copy_id in pw.world.copy_ids:
        for symbol in SYMBOLS:
            market = markets[symbol]
            step = market.market_step_size
            minimum = max(market.market_min_qty, market.min_notional / view["prices"][symbol])
            leader = view["leader_positions"].get(symbol, ZERO)
            mine = view["followers"][copy_id].get(symbol, ZERO)
            used = ratios.get((copy_id, symbol)) or [ZERO]
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
                    (cid, side, qty, recorded.get(cid))
                    for cid, sym, side, qty, _ in view["orders"][copy_id]
                    if sym == symbol and recorded.get(cid) != qty
                ]
                problems.append(
                    f"copy {copy_id} {symbol}: holds {mine} (engine: {held.get((copy_id, symbol))}),"
                    f" leader {leader}, ratios {low:.4f}..{high:.4f}, openings {openings[symbol]},"
                    f" outcomes {dict(reasons.get((copy_id, symbol), {}))}, exchange ≠ ledger:"
                    f" {differ[:5]}"
                )
    return problems
