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
- ``cpu_ms_per_order``: CPU (user + system) per follower order over the trading phase (first
  burst → every intent settled) of the engine processes, the paper exchange process and the
  PostgreSQL backends serving the engines (``application_name``, sampled every 0.2 s);
- ``load_before`` / ``load_after``: the machine's load average (1, 5, 15 min): it is shared.

``--profile DIR`` runs the engines and the paper exchange under cProfile
(``DIR/shards-N-shard-I.prof``, ``DIR/shards-N-paper.prof``; cProfile's overhead lowers every
figure of that run).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import threading
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
from tests.support.paper_exchange import process_cpu_seconds, run_paper_exchange  # noqa: E402

PG_URL = os.environ.get(
    "COPYTRADE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _latest_ms(pairs: list[tuple]) -> float | None:
    return round(max((b - a).total_seconds() * 1000 for a, b in pairs), 1) if pairs else None


def figures(sm, leaders: int) -> dict:
    """Latency per leader fill and the sustained rate, from what the ledger database holds."""
    with sm() as s:
        first = s.scalar(select(func.min(LeaderFill.traded_at)))
        stages = s.execute(
            select(
                LeaderFill.traded_at,
                LeaderFill.received_at,
                func.min(FollowerOrderIntent.sent_at),
                func.max(FollowerOrderIntent.sent_at),
                func.max(FollowerOrderIntent.acked_at),
            )
            .join(FollowerOrderIntent, FollowerOrderIntent.leader_fill_id == LeaderFill.id)
            .group_by(LeaderFill.id, LeaderFill.traded_at, LeaderFill.received_at)
            .order_by(LeaderFill.traded_at)
        ).all()
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
    # Per burst (the leaders' fills in trade-time order, ``leaders`` at a time): the first burst
    # also sets every follower's leverage and opens every follower's connection.
    by_time = [ms for _, ms in sorted(zip((t for t, _, _ in per_fill), latencies, strict=True))]
    return {
        "follower_orders": orders,
        "follower_orders_per_s": round(orders / span) if span > 0 else None,
        "latency_ms_p50": round(statistics.median(latencies), 1),
        "latency_ms_p99": round(pct(latencies, 0.99), 1),
        "latency_ms_max": round(max(latencies), 1),
        "latency_ms_max_by_burst": [
            round(max(by_time[i : i + leaders]), 1) for i in range(0, len(by_time), leaders)
        ],
        # Where a burst's time goes: per burst, the latest of each stage of its fills, in ms
        # after the fill's trade (received by the engine, first and last order sent, last
        # answer; recording is ``latency_ms_max_by_burst``).
        "stages_ms_max_by_burst": [
            {
                name: _latest_ms([(row[0], row[k]) for row in chunk if row[k] is not None])
                for k, name in ((1, "received"), (2, "first_sent"), (3, "last_sent"), (4, "acked"))
            }
            for chunk in (stages[i : i + leaders] for i in range(0, len(stages), leaders))
        ],
        "leader_fills": len(per_fill),
    }


class BackendCpu:
    """CPU seconds of the PostgreSQL backends with one ``application_name`` (same machine), sampled
    from /proc while they live: pooled connections may open and close during the phase."""

    def __init__(self, sm, app: str) -> None:
        self.sm, self.app = sm, app
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _sample(self) -> None:
        with self.sm() as s:
            pids = s.scalars(
                text("select pid from pg_stat_activity where application_name = :a"),
                {"a": self.app},
            ).all()
        for pid in pids:
            try:
                cpu = process_cpu_seconds(pid)
            except (OSError, IndexError):
                continue
            self.first.setdefault(pid, cpu)
            self.last[pid] = cpu

    def _loop(self) -> None:
        while not self._stop.wait(0.2):
            self._sample()

    def __enter__(self) -> BackendCpu:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    @property
    def seconds(self) -> float:
        return sum(self.last[p] - self.first[p] for p in self.last)


def run(
    shards: int,
    leaders: int,
    followers: int,
    rounds: int,
    pause: float,
    workdir: Path,
    profile: Path | None = None,
):
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
    app = f"scale-{schema}"
    engine_url = make_url(url).update_query_dict({"application_name": app}).render_as_string(False)

    def prof(name: str) -> tuple[str, ...]:
        if profile is None:
            return ()
        return ("-m", "cProfile", "-o", str(profile / f"shards-{shards}-{name}.prof"))

    try:
        with run_paper_exchange(mode="process", python_args=prof("paper")) as paper:
            t0 = time.monotonic()
            worlds = fleet.build_leaders(sm, paper.admin, leaders, followers)
            setup_s = time.monotonic() - t0
            procs = fleet.ShardProcesses(
                fleet.environment(engine_url, paper, worlds),
                workdir / f"shards-{shards}",
                shards,
                python_args=prof("shard-{shard}"),
            )
            procs.workdir.mkdir(parents=True, exist_ok=True)
            t0 = time.monotonic()
            procs.start_all()
            fleet.wait_following(sm, worlds, procs, timeout=900)
            start_s = time.monotonic() - t0
            load_before = os.getloadavg()
            pids = {"engine": [p.pid for p in procs.procs.values()], "paper": [paper.pid]}
            cpu0 = {k: sum(map(process_cpu_seconds, v)) for k, v in pids.items()}

            async def trade() -> int:
                async with fleet.Leaders(paper.base_url, worlds) as lead:
                    await lead.burst(rounds, pause=pause)
                    return lead.fills

            with BackendCpu(sm, app) as backends:
                fills = asyncio.run(trade())
                fleet.wait_settled(sm, fills, procs, timeout=900)
            cpu = {k: sum(map(process_cpu_seconds, v)) - cpu0[k] for k, v in pids.items()}
            cpu["postgres"] = backends.seconds
            load_after = os.getloadavg()
            result = {"shards": shards, "leaders": leaders, "copies": leaders * followers}
            result.update(figures(sm, leaders))
            found = fleet.outcomes(sm)
            counts = asyncio.run(fleet.exchange_orders(paper.base_url, worlds, fleet.api_keys(sm)))
            result["cpu_ms_per_order"] = {
                k: round(v * 1000 / max(result["follower_orders"], 1), 3) for k, v in cpu.items()
            }
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
    parser.add_argument("--profile", type=Path, help="cProfile the engines and the exchange here")
    args = parser.parse_args()
    for name in ("leaders", "followers", "rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} {getattr(args, name)}: must be ≥ 1")
    if any(not 1 <= n <= 64 for n in args.shards) or args.pause < 0:
        parser.error(f"--shards {args.shards}: each must be 1..64; --pause must be ≥ 0")
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)  # cProfile -o does not make it
    with tempfile.TemporaryDirectory(prefix="scale-out-") as tmp:
        for n in args.shards:
            result = run(
                n, args.leaders, args.followers, args.rounds, args.pause, Path(tmp), args.profile
            )
            print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
