"""Copy latency on the paper exchange: leader fill → last follower order acknowledged.

    python benchmarks/copy_latency.py --followers 100 --followers 1000 [--fills 200] [--naive-fills 5]
        [--database-url postgresql+psycopg://postgres@127.0.0.1:5432/test]

For each N, prints one JSON line: latency p50/p99 over ``--fills`` leader fills (from the leader
fill's exchange time to the last of the N follower orders acknowledged, real ccxt against the
paper exchange in its own process on loopback), sizing throughput (follower orders decided per
second by ``copytrade.domain.sizing`` for a book of N copies), CPU milliseconds per follower
order in the engine process and in the exchange process, and the naive design (one Prefect task
per follower order, same N, same gateways) over ``--naive-fills`` leader fills with the ratio of
medians. ``record_cpu_ms_per_order`` is the CPU of the record stage (``engine/record.py``:
outcomes, orders, follower fills, ledger postings, positions in one transaction) per follower
order, the recording thread's CPU time around each call. The ledger is SQLite in a temporary directory, or with
``--database-url`` a PostgreSQL server, in a fresh schema per N that is dropped afterwards.
Nothing here asserts a time; it measures and prints.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402
from sqlalchemy.exc import OperationalError  # noqa: E402
from sqlalchemy.orm import sessionmaker  # noqa: E402

import models  # noqa: E402
from copytrade.config import get_settings  # noqa: E402
from copytrade.db import make_engine  # noqa: E402
from copytrade.domain.sizing import CopyBook, CopySettings, FillSpec, size_fill  # noqa: E402
from copytrade.engine.core import CopyEngine  # noqa: E402
from copytrade.engine.runner import EngineRunner  # noqa: E402
from copytrade.engine.wiring import GatewayDirectory  # noqa: E402
from copytrade.exchange.factory import GatewayFactory  # noqa: E402
from copytrade.exchange.protocol import OrderRequest  # noqa: E402
from copytrade.gcpause import GcPause  # noqa: E402
from tests.support.engine_world import make_paper_world  # noqa: E402
from tests.support.paper_exchange import run_paper_exchange  # noqa: E402

SYMBOL = "XRPUSDT"
LEADER_QTY = Decimal("500")  # XRP; followers copy at 1000/100,000 × … see allocations below


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(q * (len(ordered) - 1))))
    return ordered[k]


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def sizing_throughput(n: int, market, repeats: int, hold_gc: bool = True) -> tuple[float, float]:
    settings = [
        CopySettings(
            i,
            equity=Decimal(500 + (i * 37) % 20_000),
            cash=Decimal(500 + (i * 53) % 20_000),
            ratio_mode=i % 4 != 0,
            fixed_amount=Decimal(100),
            policy=("skip", "round_up", "accumulate")[i % 3],
            leverage=1 + i % 10,
            max_cost=Decimal(5000) if i % 5 == 0 else None,
        )
        for i in range(1, n + 1)
    ]
    book = CopyBook.build(settings)
    spec = FillSpec(
        symbol=market.symbol,
        side="buy",
        opening=True,
        quantity=Decimal("1234.5"),
        price=Decimal("0.6"),
        leader_position_before=Decimal(0),
        leader_equity=Decimal(100_000),
        reference_price=Decimal("0.601"),
        market=market,
    )
    size_fill(book, spec)
    # The engine sizes with automatic collection held (GcPause, from a fill's arrival to its
    # acks), so it is measured the same way; in this process's big heap (the ccxt clients) a
    # collection pass would otherwise land in the loop and halve the figure at N=100.
    pause = GcPause()
    if hold_gc:
        pause.hold()
    try:
        start, cpu = time.perf_counter(), time.process_time()
        for _ in range(repeats):
            size_fill(book, spec)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    finally:
        pause.release()
    # Per CPU second as well: on a shared machine wall time also counts other people's work.
    return n * repeats / wall, n * repeats / max(cpu, 1e-9)


async def naive_fill(gateways, n_orders: int, tag: str, quantity: Decimal, side: str) -> float:
    """One leader fill the naive way: a Prefect flow with one task per follower order."""
    from prefect import flow, task

    @task(name="send-follower-order")
    async def send(index: int) -> str:
        gw = gateways[index]
        try:
            state = await gw.place_order(
                OrderRequest(SYMBOL, side, quantity, f"nv{tag}-{index}", reduce_only=side == "sell")
            )
        except Exception as exc:  # counted, so a slow naive run still yields its wall time
            return f"error:{type(exc).__name__}"
        return state.status

    @flow(name="naive-copy")
    async def copy_fill() -> list:
        # Every order is its own task run, all concurrent on this event loop (the gateways'
        # shared aiohttp session lives here): the naive design at its most favourable.
        return await asyncio.gather(*(send(i) for i in range(n_orders)))

    start = time.perf_counter()
    statuses = await copy_fill()
    elapsed = time.perf_counter() - start
    errors = sum(1 for x in statuses if str(x).startswith("error"))
    if errors:
        print(f"naive fill {tag}: {errors} of {n_orders} task orders failed", file=sys.stderr)
    return elapsed


@contextmanager
def ledger_url(database_url: str | None, db_dir: Path, n: int):
    """A fresh ledger database URL: SQLite in ``db_dir``, or a new PostgreSQL schema (dropped)."""
    if not database_url:
        yield f"sqlite:///{db_dir / f'bench-{n}.db'}"
        return
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    admin = make_engine(database_url)
    with admin.begin() as conn:
        conn.execute(text(f'create schema "{schema}"'))
    try:
        url = make_url(database_url).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'drop schema "{schema}" cascade'))
        admin.dispose()


class RecordTimer:
    """CPU time spent in the engine's record stage, and the orders it recorded. The stage runs
    on the engine's recording thread (several fills per transaction): that thread's CPU."""

    def __init__(self, engine: CopyEngine) -> None:
        self.cpu, self.orders, self.active = 0.0, 0, False
        real = engine.record_many

        def timed(batches):
            cpu = time.thread_time()
            try:
                real(batches)
            finally:
                if self.active:
                    self.cpu += time.thread_time() - cpu
                    self.orders += sum(len(b.intents) for b in batches)

        engine.record_many = timed

    def ms_per_order(self) -> float | None:
        return round(self.cpu * 1000 / self.orders, 4) if self.orders else None


async def run_one(paper, n: int, fills: int, naive_fills: int, db_url: str) -> dict:
    eng = make_engine(db_url)
    models.Base.metadata.create_all(eng)
    sm = sessionmaker(eng, expire_on_commit=False)
    copies = [{"allocation": "2000", "leverage": 5} for _ in range(n)]
    pw = make_paper_world(
        sm, paper.admin, copies=copies, capital=Decimal("100000"), leader_funds=Decimal("1000000")
    )
    directory = GatewayDirectory(sm, paper.base_url, secrets=pw.secrets, kinds=("futures",))
    await directory.start()
    engine = CopyEngine(sm, directory, directory.markets_by_kind)
    engine.keep_reports = True
    record_timer = RecordTimer(engine)
    runner = EngineRunner(engine, sweep_every=30.0, heartbeat_every=3600)
    task = asyncio.create_task(runner.run())
    await asyncio.wait_for(runner.ready.wait(), 120)
    bot_factory = GatewayFactory("futures", paper.base_url)
    await bot_factory.start()
    bot = bot_factory.gateway(pw.leader_key, pw.leader_secret, "leader-bot")
    await bot.set_leverage(SYMBOL, 10)
    # Warm up: connections of every follower client, leverage set once per account.
    warm = 3
    for k in range(warm):
        await _leader_fill(bot, engine, k, "buy")
    engine.reports.clear()
    record_timer.active = True
    cpu0, paper_cpu0 = time.process_time(), proc_cpu_seconds(paper.pid) if paper.pid else 0.0
    for k in range(fills):
        side = "buy" if k % 2 == 0 else "sell"
        await _leader_fill(bot, engine, warm + k, side)
    cpu = time.process_time() - cpu0
    record_timer.active = False
    paper_cpu = (proc_cpu_seconds(paper.pid) if paper.pid else 0.0) - paper_cpu0
    reports = [r for r in engine.reports if r.last_ack_at and r.leader_time]
    latencies = [(r.last_ack_at - r.leader_time).total_seconds() * 1000 for r in reports]
    engine_side = [(r.last_ack_at - r.received_at).total_seconds() * 1000 for r in reports]
    sizing_ms = [(r.sized_at - r.received_at).total_seconds() * 1000 for r in reports]
    to_send_ms = [(r.first_sent_at - r.sized_at).total_seconds() * 1000 for r in reports]
    dispatch_ms = [(r.last_ack_at - r.first_sent_at).total_seconds() * 1000 for r in reports]
    stream_ms = [(r.received_at - r.leader_time).total_seconds() * 1000 for r in reports]
    orders = sum(r.sent for r in reports)
    runner.stop()
    await task
    market = directory.markets_by_kind.get("futures", {}).get(SYMBOL)

    naive, naive_error = [], None
    if naive_fills:
        from prefect.testing.utilities import prefect_test_harness

        gateways = [directory(pw.world.copy_accounts[c]) for c in pw.world.copy_ids]
        try:
            with prefect_test_harness(server_startup_timeout=120):
                for k in range(naive_fills):
                    side = "buy" if k % 2 == 0 else "sell"
                    naive.append(
                        await naive_fill(gateways, n, f"{n}-{k}", Decimal("10"), side) * 1000
                    )
        except Exception as exc:  # report, do not lose the engine's figures
            naive_error = f"{type(exc).__name__}: {exc}"[:300]
    await bot_factory.close()
    await directory.close()
    eng.dispose()
    result = {
        "followers": n,
        "database": make_url(db_url).get_backend_name(),
        "leader_fills": len(latencies),
        "follower_orders": orders,
        "latency_ms_p50": round(statistics.median(latencies), 2),
        "latency_ms_p99": round(pct(latencies, 0.99), 2),
        "latency_ms_max": round(max(latencies), 2),
        "engine_receive_to_last_ack_ms_p50": round(statistics.median(engine_side), 2),
        "stream_to_engine_ms_p50": round(statistics.median(stream_ms), 2),
        "size_and_persist_ms_p50": round(statistics.median(sizing_ms), 2),
        "persisted_to_first_send_ms_p50": round(statistics.median(to_send_ms), 2),
        "first_send_to_last_ack_ms_p50": round(statistics.median(dispatch_ms), 2),
        "engine_cpu_ms_per_order": round(cpu * 1000 / max(orders, 1), 4),
        "exchange_cpu_ms_per_order": round(paper_cpu * 1000 / max(orders, 1), 4)
        if paper.pid
        else None,
        "record_cpu_ms_per_order": record_timer.ms_per_order(),
        "record_orders": record_timer.orders,
        "load_average_1m": round(os.getloadavg()[0], 2),
    }
    if market is not None:
        per_wall, per_cpu = sizing_throughput(n, market, max(20, 200_000 // n))
        result["sizing_orders_per_s"] = round(per_wall)
        result["sizing_orders_per_cpu_s"] = round(per_cpu)
        with_gc, _ = sizing_throughput(n, market, max(20, 200_000 // n), hold_gc=False)
        result["sizing_orders_per_s_gc_enabled"] = round(with_gc)
    if naive_error:
        result["naive_error"] = naive_error
    if naive:
        result["naive_prefect_ms_p50"] = round(statistics.median(naive), 1)
        result["naive_fills"] = len(naive)
        result["speedup_vs_naive_p50"] = round(
            statistics.median(naive) / result["latency_ms_p50"], 1
        )
    return result


async def _leader_fill(bot, engine, k: int, side: str) -> None:
    before = len(engine.reports)
    await bot.place_order(
        OrderRequest(
            SYMBOL,
            side,
            LEADER_QTY,
            f"bench-{k}-{time.time_ns() % 10**9}",
            reduce_only=side == "sell",
        )
    )
    deadline = time.monotonic() + 60
    while len(engine.reports) <= before and time.monotonic() < deadline:
        await asyncio.sleep(0.002)
    await asyncio.sleep(0.02)  # let the stream settle between fills


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--followers", type=int, action="append", help="N (repeatable)")
    parser.add_argument("--fills", type=int, default=200)
    parser.add_argument("--naive-fills", type=int, default=3)
    parser.add_argument("--thread", action="store_true", help="run the paper exchange in-process")
    parser.add_argument(
        "--database-url", help="a PostgreSQL server URL (default: SQLite in a temporary directory)"
    )
    args = parser.parse_args()
    if args.database_url:
        _check_database(args.database_url)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("prefect").setLevel(logging.ERROR)
    ns = args.followers or [100]
    os.environ.setdefault("COPYTRADE_DATA_DIR", str(get_settings().data_dir))
    with tempfile.TemporaryDirectory() as tmp:
        mode = "thread" if args.thread else "process"
        with run_paper_exchange(mode=mode, start="2021-11-16T00:00:00Z", speed=0) as paper:
            paper.pid = _child_pid(paper)
            for n in ns:
                with ledger_url(args.database_url, Path(tmp), n) as url:
                    result = asyncio.run(run_one(paper, n, args.fills, args.naive_fills, url))
                print(json.dumps(result), flush=True)


def _check_database(url: str) -> None:
    """Exit 2 for a URL that is not PostgreSQL, 3 (one line) when the server cannot be reached."""
    try:
        shown = make_url(url).render_as_string()  # the password hidden
        backend = make_url(url).get_backend_name()
    except Exception:
        shown, backend = "the value given", None
    if backend != "postgresql":
        print(
            f"--database-url: {shown} is not a PostgreSQL URL "
            "(postgresql+psycopg://user@host:port/db)",
            file=sys.stderr,
        )
        sys.exit(2)
    try:
        probe = make_engine(url, connect_args={"connect_timeout": 3})
        with probe.connect():
            pass
        probe.dispose()
    except OperationalError as exc:
        print(f"database {shown} unreachable: {str(exc.orig).splitlines()[0]}", file=sys.stderr)
        sys.exit(3)


def _child_pid(paper) -> int | None:
    """Find the paper exchange's process id (process mode) by its listening port."""
    port = paper.base_url.rsplit(":", 1)[1]
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"paper" in cmd and b"serve" in cmd and port.encode() in cmd:
            return int(proc.name)
    return None


if __name__ == "__main__":
    main()
