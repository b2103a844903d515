"""Benchmark the ledger's share of recording a follower order; print one JSON line per batch size.

    python benchmarks/ledger_posting.py                                   # SQLite
    python benchmarks/ledger_posting.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test

What the copy engine posts when the followers' orders of one leader fill are recorded: per
follower fill the transfers of ``copytrade.ledger.fill_transfers`` — ``copy_fill``,
``trading_fee`` and the ``fee_rebate`` accrual — all in one ``Ledger.post_many`` call and one
commit, in the writer's own stream (as an engine shard posts). ``post_cpu_ms_per_order`` is this
process's CPU time (``time.process_time``: the Python side, what limits one engine process) for
``post_many`` and the commit, per follower order; ``post_wall_ms_per_order`` is the wall time.
Target (issue 12 item 5): ≤ 0.2 ms CPU per follower order on SQLite and PostgreSQL.

On PostgreSQL the benchmark works in a schema of its own (dropped afterwards).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from decimal import Decimal
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import models  # noqa: E402
from copytrade.db import make_engine  # noqa: E402
from copytrade.ledger import Ledger, Leg, TransferSpec  # noqa: E402
from copytrade.ledger.accounts import follower_cash  # noqa: E402
from copytrade.ledger.fill_transfers import fill_transfers  # noqa: E402

STREAM = 1  # an engine shard's stream; funding goes through stream 0 like the copies service


def schema_url(url: str, schema: str) -> str:
    return (
        make_url(url)
        .update_query_dict({"options": f"-csearch_path={schema}"})
        .render_as_string(hide_password=False)
    )


def fund(engine, followers: int) -> None:
    with Session(engine) as session, session.begin():
        Ledger(session).post_many(
            [
                TransferSpec(
                    f"fund:{c}",
                    "deposit",
                    (
                        Leg("external:deposits", "USDT", Decimal(-1_000_000)),
                        Leg(follower_cash(c), "USDT", Decimal(1_000_000)),
                    ),
                )
                for c in range(1, followers + 1)
            ]
        )


def fill_specs(fill: int, followers: int) -> list[TransferSpec]:
    """The transfers of one leader fill copied by ``followers`` copies (a spot buy each)."""
    specs: list[TransferSpec] = []
    for c in range(1, followers + 1):
        specs += fill_transfers(
            key=f"bench:{fill}:{c}",
            copy_id=c,
            portfolio_id=1,
            venue="binance",
            kind="spot",
            base="BTC",
            quote="USDT",
            side="buy",
            quantity=Decimal("0.00123"),
            price=Decimal("61234.56"),
            fee=Decimal("0.07532165"),
            fee_asset="USDT",
            realised_pnl=Decimal(0),
            refs={"copy_id": c, "client_order_id": f"ct-{fill}-{c}"},
        )
    return specs


def measure(url: str, followers: int, fills: int) -> dict:
    engine = make_engine(url)
    models.Base.metadata.create_all(engine)
    fund(engine, followers)
    batches = [fill_specs(f, followers) for f in range(fills + 1)]
    with Session(engine) as session, session.begin():  # warm up: caches, first statements
        Ledger(session).post_many(batches[0], stream=STREAM)
    cpu = wall = 0.0
    for specs in batches[1:]:
        c0, w0 = time.process_time(), time.perf_counter()
        with Session(engine) as session, session.begin():
            Ledger(session).post_many(specs, stream=STREAM)
        cpu += time.process_time() - c0
        wall += time.perf_counter() - w0
    with Session(engine) as session:
        assert Ledger(session).verify_chain().ok
    engine.dispose()
    orders = followers * fills
    return {
        "orders": orders,
        "followers_per_fill": followers,
        "transfers_per_order": len(batches[1]) // followers,
        "post_cpu_ms_per_order": round(cpu * 1000 / orders, 4),
        "post_wall_ms_per_order": round(wall * 1000 / orders, 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database-url", help="PostgreSQL URL (default: a fresh SQLite file)")
    parser.add_argument(
        "--followers", type=int, action="append", help="followers per leader fill (repeatable)"
    )
    parser.add_argument("--fills", type=int, default=20, help="leader fills per measurement")
    args = parser.parse_args()
    for followers in args.followers or [10, 100, 1000]:
        if args.database_url:
            schema = f"bench_{uuid.uuid4().hex[:10]}"
            admin = make_engine(args.database_url)
            with admin.begin() as conn:
                conn.execute(text(f'create schema "{schema}"'))
            try:
                result = measure(schema_url(args.database_url, schema), followers, args.fills)
            finally:
                with admin.begin() as conn:
                    conn.execute(text(f'drop schema "{schema}" cascade'))
                admin.dispose()
            database = "postgresql"
        else:
            with tempfile.TemporaryDirectory() as scratch:
                result = measure(f"sqlite:///{scratch}/ledger.db", followers, args.fills)
            database = "sqlite"
        print(
            json.dumps(
                {
                    "benchmark": "ledger_posting",
                    "database": database,
                    **result,
                    "load_avg_1m": round(os.getloadavg()[0], 2),
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
