"""Benchmark: orders per second the paper exchange sustains from ccxt clients, and one order's latency.

Starts ``copytrade paper serve`` in its own process, opens N accounts (10, 100, 1,000 by default),
and drives them with unmodified ``ccxt.binance`` async clients sharing one aiohttp session and one
loaded market set (optionally from several client processes). Each account keeps one market order
in flight (closed loop: buy, sell, buy …) for ``--seconds``; ccxt's client-side throttle is off so
that the exchange, not ccxt's per-key limiter, is measured. Latency is the round trip of one
``create_order`` as the client sees it (p50/p99 over every order of the run), plus an idle
measurement (one account, orders one after another).

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TARGET_ORDERS_PER_SECOND = 2_000


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _place(client, call: str, side: str, client_order_id: str) -> None:
    """One market order through ccxt: the unified ``create_order`` or ccxt's own signed endpoint.

    ``implicit`` is ``privatePostOrder``, the method ``create_order`` itself ends in (ccxt signs,
    sends and error-maps it) without the unified layer's market lookup, precision and parsing:
    about a third of the client CPU, which on two shared cores is what limits the rate.
    """
    if call == "implicit":
        await client.private_post_order(
            {
                "symbol": "BTCUSDT",
                "side": side.upper(),
                "type": "MARKET",
                "quantity": "0.001",
                "newClientOrderId": client_order_id,
            }
        )
    else:
        await client.create_order(
            "BTC/USDT", "market", side, "0.001", None, {"clientOrderId": client_order_id}
        )


async def _drive(
    base_url: str, accounts: list[dict], seconds: float, warmup: float, call: str
) -> dict:
    import aiohttp

    from copytrade.exchange.factory import new_client

    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    session = aiohttp.ClientSession(connector=connector)
    loader = new_client("spot", base_url, session=session)
    await loader.load_markets()
    clients = []
    for acc in accounts:
        client = new_client("spot", base_url, acc["api_key"], acc["api_secret"], session=session)
        client.enableRateLimit = False
        client.set_markets_from_exchange(loader)
        clients.append(client)
    latencies: list[float] = []
    errors = 0
    done = 0
    total = 0
    cpu0 = time.process_time()
    start = time.perf_counter()
    measure_from = start + warmup
    stop = measure_from + seconds

    async def loop(client, index: int) -> None:
        nonlocal done, errors, total
        side = "buy"
        n = 0
        while True:
            t0 = time.perf_counter()
            if t0 >= stop:
                return
            try:
                await _place(client, call, side, f"b{index}-{n}")
            except Exception:
                errors += 1
                await asyncio.sleep(0.01)
                continue
            t1 = time.perf_counter()
            n += 1
            total += 1
            side = "sell" if side == "buy" else "buy"
            if t0 >= measure_from:
                latencies.append(t1 - t0)
                done += 1

    await asyncio.gather(*(loop(c, i) for i, c in enumerate(clients)))
    elapsed = time.perf_counter() - measure_from
    cpu = time.process_time() - cpu0
    for c in clients:
        c.session = None  # shared; closed below
    await loader.close()
    await session.close()
    return {
        "orders": done,
        "total": total,
        "cpu": cpu,
        "elapsed": elapsed,
        "latencies": latencies,
        "errors": errors,
    }


def _client_process(
    base_url: str, accounts: list[dict], seconds: float, warmup: float, call: str, out
) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    out.put(asyncio.run(_drive(base_url, accounts, seconds, warmup, call)))


def run_level(
    base_url: str,
    accounts: list[dict],
    seconds: float,
    procs: int,
    warmup: float,
    server_pid: int | None,
    call: str = "create_order",
) -> dict:
    """Drive ``accounts`` from ``procs`` client processes; return throughput, latency and CPU."""
    from tests.support.paper_exchange import process_cpu_seconds

    procs = max(1, min(procs, len(accounts)))
    queue: mp.Queue = mp.get_context("fork").Queue()
    chunks = [accounts[i::procs] for i in range(procs)]
    workers = [
        mp.get_context("fork").Process(
            target=_client_process, args=(base_url, chunk, seconds, warmup, call, queue)
        )
        for chunk in chunks
    ]
    for w in workers:
        w.start()
    cpu0 = process_cpu_seconds(server_pid) if server_pid else None
    results = [queue.get() for _ in workers]
    cpu1 = process_cpu_seconds(server_pid) if server_pid else None
    for w in workers:
        w.join()
    orders = sum(r["orders"] for r in results)
    total = sum(r["total"] for r in results)
    elapsed = max(r["elapsed"] for r in results)
    # Server CPU over the whole level (warm-up included) per order it served in that time.
    server_ms = 1000 * (cpu1 - cpu0) / total if cpu0 is not None and total else None
    client_ms = 1000 * sum(r["cpu"] for r in results) / total if total else None
    latencies = [x for r in results for x in r["latencies"]]
    return {
        "accounts": len(accounts),
        "client_processes": procs,
        "client_call": call,
        "orders": orders,
        "orders_per_second": round(orders / elapsed, 1),
        "p50_ms": round(_percentile(latencies, 0.50) * 1000, 2),
        "p99_ms": round(_percentile(latencies, 0.99) * 1000, 2),
        "errors": sum(r["errors"] for r in results),
        "server_cpu_ms_per_order": round(server_ms, 3) if server_ms else None,
        "server_capacity_orders_per_second": round(1000 / server_ms) if server_ms else None,
        "client_cpu_ms_per_order": round(client_ms, 3) if client_ms else None,
    }


async def _idle_latency(base_url: str, account: dict, n: int) -> dict:
    import aiohttp

    from copytrade.exchange.factory import new_client

    async with aiohttp.ClientSession() as session:
        client = new_client(
            "spot", base_url, account["api_key"], account["api_secret"], session=session
        )
        client.enableRateLimit = False
        await client.load_markets()
        samples = []
        side = "buy"
        for i in range(n + 20):
            t0 = time.perf_counter()
            await client.create_order(
                "BTC/USDT", "market", side, "0.001", None, {"clientOrderId": f"idle-{i}"}
            )
            if i >= 20:
                samples.append(time.perf_counter() - t0)
            side = "sell" if side == "buy" else "buy"
        client.session = None
        await client.close()
    return {
        "orders": n,
        "p50_ms": round(statistics.median(samples) * 1000, 2),
        "p99_ms": round(_percentile(samples, 0.99) * 1000, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", default="10,100,1000", help="Comma-separated account counts.")
    parser.add_argument("--seconds", type=float, default=10.0, help="Measured seconds per level.")
    parser.add_argument(
        "--warmup", type=float, default=2.0, help="Unmeasured seconds before each level."
    )
    parser.add_argument(
        "--client-procs", type=int, default=1, help="Client processes driving the load."
    )
    parser.add_argument(
        "--client-call",
        choices=("create_order", "implicit"),
        default="create_order",
        help="ccxt's unified create_order, or its implicit privatePostOrder endpoint method.",
    )
    parser.add_argument("--idle-orders", type=int, default=500, help="Orders for the idle latency.")
    parser.add_argument(
        "--url", default=None, help="Use a running paper exchange (needs its admin token)."
    )
    args = parser.parse_args()
    os.environ.setdefault(
        "COPYTRADE_DATA_DIR", str(Path(__file__).resolve().parent.parent.parent / "shared" / "data")
    )

    from copytrade.config import get_settings
    from copytrade.paper.admin_token import resolve
    from copytrade.paper.client import AdminClient
    from tests.support.paper_exchange import run_paper_exchange

    levels = [int(x) for x in args.accounts.split(",") if x]
    needed = max(levels)

    def bench(base_url: str, admin: AdminClient, pid: int | None) -> dict:
        accounts = []
        for i in range(needed):
            acc = admin.create_account(f"bench-{i}", spot={"USDT": "1000000", "BTC": "10"})
            accounts.append({"api_key": acc.api_key, "api_secret": acc.api_secret})
        idle = asyncio.run(_idle_latency(base_url, accounts[0], args.idle_orders))
        runs = [
            run_level(
                base_url,
                accounts[:n],
                args.seconds,
                args.client_procs,
                args.warmup,
                pid,
                args.client_call,
            )
            for n in levels
        ]
        return {"idle": idle, "runs": runs}

    started = time.time()
    load_at_start = os.getloadavg()[0]
    if args.url:
        admin = AdminClient(args.url, resolve(get_settings()))
        result = bench(args.url, admin, None)
    else:
        with run_paper_exchange(mode="process", speed=1.0) as paper:
            result = bench(paper.base_url, paper.admin, paper.pid)
    best = max(r["orders_per_second"] for r in result["runs"])
    capacities = [
        r["server_capacity_orders_per_second"]
        for r in result["runs"]
        if r["server_capacity_orders_per_second"]
    ]
    line = {
        "benchmark": "paper_exchange",
        "cpu_count": os.cpu_count(),
        "target_orders_per_second": TARGET_ORDERS_PER_SECOND,
        "target_met": all(
            r["orders_per_second"] >= TARGET_ORDERS_PER_SECOND for r in result["runs"]
        ),
        "best_orders_per_second": best,
        "server_capacity_orders_per_second": min(capacities) if capacities else None,
        "load_average_at_start": load_at_start,
        "idle_round_trip": result["idle"],
        "runs": result["runs"],
        "seconds_per_level": args.seconds,
        "wall_seconds": round(time.time() - started, 1),
    }
    print(json.dumps(line))


if __name__ == "__main__":
    main()
