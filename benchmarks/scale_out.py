"""Scale-out of the copy engine: many leaders at once, 1 shard and then 2 shards (issue 16).

    python benchmarks/scale_out.py [--leaders 20] [--followers 250] [--rounds 4] [--shards 1 2]

Per shard count, on a fresh PostgreSQL schema (COPYTRADE_TEST_PG_URL; made and dropped) and a
fresh paper exchange in its own process: ``--leaders`` futures leaders with ``--followers`` copies
each, every shard a ``copytrade engine run --shard I/N`` process, and ``--rounds`` bursts in
which every leader places a market order at the same moment (buy, sell, buy, …). It prints one
JSON line per shard count:

- ``follower_orders``: follower orders acknowledged by the exchange and recorded (with their
  ledger postings, in the same transaction);
- ``follower_orders_per_s``: those orders over the time from the first leader fill of the run to
  the last order recorded (sustained, bursts and pauses included);
- ``latency_ms_p50`` / ``latency_ms_p99``: per leader fill, its exchange time → the last follower
  order of that fill recorded;
- ``lost``: leader fill × copy pairs without exactly one outcome; ``duplicates``: client order ids
  seen twice on the exchange (or twice among the intents);
- ``load_before`` / ``load_after``: the machine's load average (1, 5, 15 min): it is shared.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, select, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402
from sqlalchemy.orm import sessionmaker  # noqa: E402

from copytrade import migrate  # noqa: E402
from copytrade.db import make_engine  # noqa: E402
from models import FollowerOrder, FollowerOrderIntent, LeaderFill  # noqa: E402
from tests.support import fleet  # noqa: E402
from tests.support.paper_exchange import run_paper_exchange  # noqa: E402

PG_URL = os.environ.get(
    "COPYTRADE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def figures(sm) -> dict:
    """Latency per leader fill and the sustained rate, from what the ledger database holds."""
    with sm() as s:
        first = s.scalar(select(func.min(LeaderFill.traded_at)))
        per_fill = s.execute(
            select(LeaderFill.traded_at, func.max(FollowerOrder.created_at), func.count())
            .join(FollowerOrderIntent, FollowerOrderIntent.leader_fill_id == LeaderFill.id)
            .join(FollowerOrder, FollowerOrder.intent_id == FollowerOrderIntent.id)
            .where(FollowerOrder.exchange_order_id.is_not(None))
            .group_by(LeaderFill.id, LeaderFill.traded_at)
        ).all()
    latencies = [(last - traded).total_seconds() * 1000 for traded, last, _ in per_fill]
    orders = sum(n for _, _, n in per_fill)
    last = max(last for _, last, _ in per_fill)
    span = (last - first).total_seconds()
    return {
        "follower_orders": orders,
        "follower_orders_per_s": round(orders / span) if span > 0 else None,
        "latency_ms_p50": round(statistics.median(latencies), 1),
        "latency_ms_p99": round(pct(latencies, 0.99), 1),
        "latency_ms_max": round(max(latencies), 1),
        "leader_fills": len(per_fill),
    }


def run(shards: int, leaders: int, followers: int, rounds: int, pause: float, workdir: Path):
    schema = f"bench_scale_{uuid.uuid4().hex[:10]}"
    admin = make_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'create schema "{schema}"'))
    url = (
        make_url(PG_URL)
        .update_query_dict({"options": f"-csearch_path={schema}"})
        .render_as_string(hide_password=False)
    )
    migrate.upgrade(url)
    db = make_engine(url)
    sm = sessionmaker(db, expire_on_commit=False)
    procs = None
    try:
        with run_paper_exchange(mode="process") as paper:
            t0 = time.monotonic()
            worlds = fleet.build_leaders(sm, paper.admin, leaders, followers)
            setup_s = time.monotonic() - t0
            procs = fleet.ShardProcesses(
                fleet.environment(url, paper, worlds), workdir / f"shards-{shards}", shards
            )
            procs.workdir.mkdir(parents=True, exist_ok=True)
            t0 = time.monotonic()
            procs.start_all()
            fleet.wait_following(sm, worlds, procs, timeout=900)
            start_s = time.monotonic() - t0
            load_before = os.getloadavg()

            async def trade() -> int:
                async with fleet.Leaders(paper.base_url, worlds) as lead:
                    await lead.burst(rounds, pause=pause)
                    return lead.fills

            fills = asyncio.run(trade())
            fleet.wait_settled(sm, fills, procs, timeout=900)
            load_after = os.getloadavg()
            result = {"shards": shards, "leaders": leaders, "copies": leaders * followers}
            result.update(figures(sm))
            found = fleet.outcomes(sm)
            counts = asyncio.run(fleet.exchange_orders(paper.base_url, worlds, fleet.api_keys(sm)))
            result["lost"] = len(found["missing"]) + len(found["no_outcome"])
            result["duplicates"] = len(found["twice"]) + sum(1 for n in counts.values() if n > 1)
            result["setup_s"] = round(setup_s, 1)
            result["engines_start_s"] = round(start_s, 1)
            result["load_before"] = [round(x, 2) for x in load_before]
            result["load_after"] = [round(x, 2) for x in load_after]
            result["cpus"] = os.cpu_count()
            procs.stop_all()
            return result
    finally:
        if procs is not None:
            procs.kill_all()
        db.dispose()
        with admin.begin() as conn:
            conn.execute(text(f'drop schema "{schema}" cascade'))
        admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leaders", type=int, default=20)
    parser.add_argument("--followers", type=int, default=250, help="copies per leader")
    parser.add_argument("--rounds", type=int, default=4, help="bursts: every leader trades once")
    parser.add_argument("--pause", type=float, default=1.0, help="seconds between two bursts")
    parser.add_argument("--shards", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    for name in ("leaders", "followers", "rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} {getattr(args, name)}: must be ≥ 1")
    if any(not 1 <= n <= 64 for n in args.shards) or args.pause < 0:
        parser.error(f"--shards {args.shards}: each must be 1..64; --pause must be ≥ 0")
    with tempfile.TemporaryDirectory(prefix="scale-out-") as tmp:
        for n in args.shards:
            result = run(n, args.leaders, args.followers, args.rounds, args.pause, Path(tmp))
            print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
