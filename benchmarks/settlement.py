"""Benchmark settlement and the ledger_integrity checkpoint; print one JSON line per measurement.

    python benchmarks/settlement.py                       # 100,000 copies, ~1,000,000 fills
    python benchmarks/settlement.py --copies 5000 --naive-copies 1000   # quick look
    python benchmarks/settlement.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test
    python benchmarks/settlement.py --copies 20000 --naive-copies 0 --reuse --database-url URL

On PostgreSQL each run works in fresh schemas (or, with ``--reuse``, a fresh database cloned from
the population kept on the server: generating 100,000 copies takes minutes), VACUUM ANALYZEd once
populated, all dropped at the end. ``result_digest`` (every payout row, every transfer's key and
content digest) is equal between runs that paid and posted the same.

Three measurements, in one run:

1. ``settlement``: the weekly cycle over ``--copies`` copies (10 fills each) with the bulk service,
   batches of 5,000 copies, after the gate (the checkpoint is measured on its own, below).
2. ``settlement_naive``: the same cycle on a ``--naive-copies`` slice (the same first copies,
   in a database of their own) settled the obvious way: per copy, ORM queries for the copy, its
   fills and state, the ledger service's ``post`` and a commit. Its per-copy time is compared with
   the bulk run's (the slice's payouts are checked equal to the bulk run's first copies).
3. ``ledger_integrity_checkpoint``: the hash chain recomputed and every GX expectation run on the
   100,000-copy ledger after settlement.

Targets (issue 6): 100,000 copies < 30 s; ≥ 20× the naive loop per copy; checkpoint < 60 s.
Results are also written to ``benchmarks/results/settlement.jsonl`` (not committed).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import models  # noqa: E402
from copytrade.db import make_engine  # noqa: E402
from copytrade.domain.money import ZERO  # noqa: E402
from copytrade.ledger import Ledger, Leg  # noqa: E402
from copytrade.ledger.accounts import follower_cash, leader_rebates, person_spot  # noqa: E402
from copytrade.settlement import SettlementService, StaticMarks  # noqa: E402
from copytrade.settlement.cycles import weekly_cycle  # noqa: E402
from copytrade.settlement.decide import (  # noqa: E402
    CopyFacts,
    decide_share,
    portfolio_deferral,
    rebates_to_pay,
)
from copytrade.settlement.gate import gate_from_report  # noqa: E402
from copytrade.settlement.marks import LeaderFillsUnrealised, SymbolBook, mark_books  # noqa: E402
from copytrade.validation import validate_ledger  # noqa: E402
from models import (  # noqa: E402
    Copy,
    CopySettlementState,
    FollowerFill,
    LeadPortfolio,
    LedgerPosting,
    LedgerTransfer,
    SettlementCycle,
    SettlementPayout,
)
from tests.support.settlement import generate_population  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


def emit(record: dict) -> None:
    line = json.dumps(record, sort_keys=False)
    print(line, flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    with (RESULTS / "settlement.jsonl").open("a") as out:
        out.write(line + "\n")


def fresh_sqlite(path: Path) -> str:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    url = f"sqlite:///{path}"
    engine = make_engine(url)
    models.Base.metadata.create_all(engine)
    engine.dispose()
    return url


def fresh_postgres(server_url: str, schemas: list[str]) -> str:
    """Create an empty schema on the PostgreSQL server, the ledger's tables in it; return its URL."""
    import uuid

    from sqlalchemy.engine import make_url

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    _admin(server_url, f'create schema "{schema}"')
    schemas.append(schema)
    url = (
        make_url(server_url)
        .update_query_dict({"options": f"-csearch_path={schema}"})
        .render_as_string(hide_password=False)
    )
    engine = make_engine(url)
    models.Base.metadata.create_all(engine)
    engine.dispose()
    return url


def drop_schemas(server_url: str, schemas: list[str]) -> None:
    _admin(server_url, *(f'drop schema if exists "{schema}" cascade' for schema in schemas))


def _database_url(server_url: str, database: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(server_url).set(database=database).render_as_string(hide_password=False)


def _admin(server_url: str, *statements: str) -> list:
    """Run statements outside a transaction (CREATE/DROP DATABASE, schemas); return the last
    one's rows."""
    engine = make_engine(server_url).execution_options(isolation_level="AUTOCOMMIT")
    rows: list = []
    try:
        with engine.connect() as conn:
            for statement in statements:
                result = conn.exec_driver_sql(statement)
                rows = result.all() if result.returns_rows else []
    finally:
        engine.dispose()
    return rows


def pristine_postgres(server_url: str, copies: int, fills: int, databases: list[str]):
    """Return the URL of a fresh database cloned from the kept unsettled population, and its spec.

    The population (minutes to generate) is kept as database ``settle_pop_<copies>x<fills>`` on
    the server and copied with ``CREATE DATABASE … TEMPLATE`` (a file copy, statistics included).
    It is built under a temporary name and renamed when complete, so a killed run leaves none.
    Drop it with ``--drop-kept``.
    """
    import uuid

    kept = f"settle_pop_{copies}x{fills}"
    exists = _admin(server_url, f"SELECT 1 FROM pg_database WHERE datname = '{kept}'")
    generate_s = 0.0
    if exists:
        population = generate_population_spec(copies, fills)
    else:
        building = f"{kept}_building"
        _admin(server_url, f'DROP DATABASE IF EXISTS "{building}"', f'CREATE DATABASE "{building}"')
        url = _database_url(server_url, building)
        engine = make_engine(url)
        models.Base.metadata.create_all(engine)
        engine.dispose()
        population, generate_s = populate(url, copies, fills)
        analyze(url)
        _admin(server_url, f'ALTER DATABASE "{building}" RENAME TO "{kept}"')
    clone = f"bench_{uuid.uuid4().hex[:10]}"
    _admin(server_url, f'CREATE DATABASE "{clone}" TEMPLATE "{kept}"')
    databases.append(clone)
    return _database_url(server_url, clone), population, generate_s


def drop_databases(server_url: str, databases: list[str]) -> None:
    _admin(server_url, *(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)' for name in databases))


def analyze(url: str) -> None:
    """VACUUM ANALYZE a populated PostgreSQL ledger: what autovacuum does to an append-only ledger.

    The shared test server runs with ``autovacuum = off``; without this the covering postings
    indexes cannot be read alone (no page is all-visible) and every first read sets hint bits.
    """
    if url.startswith("postgresql"):
        engine = make_engine(url).execution_options(isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")
        engine.dispose()


def checkpoint_wal(path: Path) -> None:
    """Fold the WAL into the database file, so copying the file copies everything."""
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()


def generate_population_spec(copies: int, fills: int):
    """Return what ``generate_population`` returned for this shape, without writing anything."""
    from tests.support.settlement import EPOCH, Population, population_marks

    return Population(
        copies=copies,
        fills=copies * fills,
        transfers=0,
        portfolios=-(-copies // 100),
        as_of=EPOCH + timedelta(days=7),
        marks=population_marks(),
    )


def populate(url: str, copies: int, fills: int):
    engine = make_engine(url)
    started = time.perf_counter()
    with Session(engine) as session, session.begin():
        population = generate_population(
            session,
            copies=copies,
            fills_per_copy=fills,
            progress=lambda what, done, total: print(
                f"  generating {what}: {done:,}/{total:,}", file=sys.stderr, flush=True
            ),
        )
    engine.dispose()
    return population, time.perf_counter() - started


def payouts_of(url: str, limit: int | None = None) -> list[tuple]:
    engine = make_engine(url)
    with Session(engine) as session:
        query = select(
            SettlementPayout.copy_id,
            SettlementPayout.kind,
            SettlementPayout.asset,
            SettlementPayout.status,
            SettlementPayout.amount,
        ).order_by(SettlementPayout.copy_id, SettlementPayout.kind, SettlementPayout.asset)
        if limit:
            query = query.where(SettlementPayout.copy_id <= limit)
        rows = [tuple(r) for r in session.execute(query)]
    engine.dispose()
    return rows


def naive_settle(url: str, as_of: datetime, marks: StaticMarks) -> int:
    """Settle the weekly cycle one copy at a time through the ORM: what the bulk path replaces."""
    engine = make_engine(url)
    sessions = sessionmaker(engine, expire_on_commit=False)
    spec = weekly_cycle(as_of)
    with sessions() as session, session.begin():
        cycle = SettlementCycle(
            cycle_key=spec.key, kind="weekly", trigger="weekly", as_of=spec.as_of, status="running"
        )
        session.add(cycle)
        session.flush()
        cycle_id = cycle.id
        copy_ids = list(session.scalars(select(Copy.id).order_by(Copy.id)))
    deferrals: dict[int, str | None] = {}
    provider = LeaderFillsUnrealised(marks)
    for copy_id in copy_ids:
        with sessions() as session, session.begin():
            copy = session.get(Copy, copy_id)
            portfolio = session.get(LeadPortfolio, copy.portfolio_id)
            asset = portfolio.capital_asset
            if portfolio.mode == "futures" and portfolio.id not in deferrals:
                value = provider.unrealised(session, [portfolio.id], spec.as_of)[portfolio.id]
                deferrals[portfolio.id] = portfolio_deferral("futures", value)
            fills = session.scalars(
                select(FollowerFill).where(
                    FollowerFill.copy_id == copy_id, FollowerFill.traded_at <= spec.as_of
                )
            ).all()
            realised = sum((f.realised_pnl or ZERO for f in fills), ZERO)
            fees = sum((f.fee for f in fills if f.fee_asset == asset), ZERO)
            rebates: dict[str, Decimal] = defaultdict(lambda: ZERO)
            books: dict[str, SymbolBook] = defaultdict(SymbolBook)
            for f in fills:
                rebates[f.fee_asset] += f.rebate
                books[f.symbol].add(
                    f.side,
                    int(f.quantity.scaleb(8)),
                    int(f.price.scaleb(8)),
                    int((f.realised_pnl or ZERO).scaleb(8)),
                )
            marked = mark_books(books, marks, spec.as_of) if portfolio.mode == "futures" else None
            state = session.get(CopySettlementState, (copy_id, asset)) or CopySettlementState(
                copy_id=copy_id,
                asset=asset,
                share_paid=ZERO,
                peak_profit=ZERO,
                outstanding=ZERO,
                rebate_paid=ZERO,
            )
            ledger = Ledger(session)
            facts = CopyFacts(
                copy_id=copy_id,
                portfolio_id=portfolio.id,
                leader_person_id=portfolio.leader_person_id,
                mode=portfolio.mode,
                ratio=portfolio.profit_share_ratio,
                asset=asset,
                realised=realised,
                fees=fees,
                unrealised=marked.unrealised if marked and marked.unrealised is not None else ZERO,
                missing_marks=marked.missing if marked else (),
                share_paid=state.share_paid,
                peak_profit=state.peak_profit,
                balance=ledger.balance(follower_cash(copy_id), asset),
                rebates_due={
                    a: v - (state.rebate_paid if a == asset else ZERO) for a, v in rebates.items()
                },
            )
            share = decide_share(facts, deferrals.get(portfolio.id))
            leader = person_spot(portfolio.leader_person_id)
            share_transfer = None
            if share.status == "paid":
                share_transfer = ledger.transfer(
                    f"settle:{spec.key}:{copy_id}:share",
                    "profit_share",
                    [
                        Leg(follower_cash(copy_id), asset, -share.amount),
                        Leg(leader, asset, share.amount),
                    ],
                    refs={"copy_id": copy_id, "portfolio_id": portfolio.id, "cycle": spec.key},
                ).transfer_id
                state.share_paid += share.amount
            session.add(
                SettlementPayout(
                    cycle_id=cycle_id,
                    copy_id=copy_id,
                    portfolio_id=portfolio.id,
                    kind="profit_share",
                    asset=asset,
                    status=share.status,
                    amount=share.amount,
                    profit_basis=share.basis if share.basis is not None else ZERO,
                    realised=share.realised,
                    unrealised=share.unrealised,
                    ratio=portfolio.profit_share_ratio,
                    paid_before=share.paid_before,
                    reason=share.reason,
                    transfer_id=share_transfer,
                )
            )
            for rebate_asset, amount in rebates_to_pay(facts).items():
                transfer = ledger.transfer(
                    f"settle:{spec.key}:{copy_id}:rebate:{rebate_asset}",
                    "rebate_payout",
                    [
                        Leg(leader_rebates(portfolio.id), rebate_asset, -amount),
                        Leg(leader, rebate_asset, amount),
                    ],
                    refs={"copy_id": copy_id, "portfolio_id": portfolio.id, "cycle": spec.key},
                ).transfer_id
                session.add(
                    SettlementPayout(
                        cycle_id=cycle_id,
                        copy_id=copy_id,
                        portfolio_id=portfolio.id,
                        kind="rebate",
                        asset=rebate_asset,
                        status="paid",
                        amount=amount,
                        transfer_id=transfer,
                    )
                )
                state.rebate_paid += amount
            state.peak_profit = share.peak_after
            state.outstanding = share.amount if share.status in ("paused", "deferred") else ZERO
            state.last_cycle_id = cycle_id
            state.updated_at = datetime.now(UTC)
            session.merge(state)
    engine.dispose()
    return len(copy_ids)


def result_digest(url: str) -> str:
    """Return a sha256 over every payout row and every transfer's key and content digest.

    Equal digests mean identical payouts and postings (a transfer's digest covers its key, code
    and postings, not its time), so runs before and after a change can be compared.
    """
    import hashlib

    engine = make_engine(url)
    digest = hashlib.sha256()
    with Session(engine) as session:
        for row in payouts_of(url):
            digest.update(repr(row).encode())
        for key, content in session.execute(
            select(LedgerTransfer.idempotency_key, LedgerTransfer.digest).order_by(
                LedgerTransfer.idempotency_key
            )
        ):
            digest.update(f"{key}|{content}\n".encode())
    engine.dispose()
    return digest.hexdigest()[:16]


def ledger_size(url: str) -> tuple[int, int]:
    engine = make_engine(url)
    with Session(engine) as session:
        transfers = session.scalar(select(func.count()).select_from(LedgerTransfer))
        postings = session.scalar(select(func.count()).select_from(LedgerPosting))
    engine.dispose()
    return transfers, postings


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--copies", type=int, default=100_000)
    parser.add_argument("--fills-per-copy", type=int, default=10)
    parser.add_argument("--naive-copies", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=5_000)
    parser.add_argument("--workdir", type=Path, default=ROOT / "var" / "bench")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="Start from the unsettled copy of the population a previous run kept (SQLite: in "
        "--workdir; PostgreSQL: as database settle_pop_<copies>x<fills> on the server).",
    )
    parser.add_argument(
        "--drop-kept",
        action="store_true",
        help="PostgreSQL: drop the populations --reuse kept on the server, and exit.",
    )
    parser.add_argument(
        "--database-url", help="a PostgreSQL server to run on (default: SQLite files in --workdir)"
    )
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    if not args.database_url:
        run(args, "sqlite", lambda name: fresh_sqlite(args.workdir / f"{name}.db"))
        return
    if args.drop_kept:
        kept = _admin(
            args.database_url,
            "SELECT datname FROM pg_database WHERE starts_with(datname, 'settle_pop_')",
        )
        drop_databases(args.database_url, [name for (name,) in kept])
        return
    schemas: list[str] = []
    databases: list[str] = []
    try:
        run(
            args,
            "postgresql",
            lambda name: fresh_postgres(args.database_url, schemas),
            databases,
        )
    finally:
        drop_schemas(args.database_url, schemas)
        drop_databases(args.database_url, databases)


def run(args, database: str, fresh, databases: list[str] | None = None) -> None:
    # 1. the bulk service on the full population
    path = args.workdir / "settlement.db"
    pristine = args.workdir / f"population-{args.copies}x{args.fills_per_copy}.db"
    if database != "sqlite" and args.reuse:
        url, population, generate_s = pristine_postgres(
            args.database_url, args.copies, args.fills_per_copy, databases
        )
    elif database != "sqlite":
        url = fresh("settlement")
        population, generate_s = populate(url, args.copies, args.fills_per_copy)
        analyze(url)
    elif args.reuse and pristine.exists():
        url = fresh_sqlite(path)
        shutil.copyfile(pristine, path)
        population = generate_population_spec(args.copies, args.fills_per_copy)
        generate_s = 0.0
    else:
        url = fresh_sqlite(path)
        population, generate_s = populate(url, args.copies, args.fills_per_copy)
        checkpoint_wal(path)
        shutil.copyfile(path, pristine)
    marks = StaticMarks(population.marks)
    print("  validating before settlement", file=sys.stderr, flush=True)
    before = validate_ledger(url)
    started, cpu = time.perf_counter(), time.process_time()
    report = SettlementService(
        sessionmaker(make_engine(url), expire_on_commit=False),
        gate=gate_from_report(before),
        marks=marks,
        batch_size=args.batch_size,
    ).settle_weekly(population.as_of)
    settle_s, settle_cpu = time.perf_counter() - started, time.process_time() - cpu
    bulk_per_copy = settle_s / args.copies
    emit(
        {
            "benchmark": "settlement",
            "database": database,
            "copies": args.copies,
            "fills": population.fills,
            "generate_s": round(generate_s, 1),
            "settle_s": round(settle_s, 2),
            "settle_cpu_s": round(settle_cpu, 2),
            "per_copy_ms": round(bulk_per_copy * 1000, 4),
            "copies_per_s": round(args.copies / settle_s),
            "shares_paid": str(report.shares_paid),
            "rebates_paid": str(report.rebates_paid),
            "counts": dict(report.counts),
            "result_digest": result_digest(url),
            "target_s": 30,
            "ok": settle_s < 30,
            "load_avg_1m": round(os.getloadavg()[0], 2),
        }
    )

    # 2. the naive loop on the first copies, in a database of their own
    if args.naive_copies:
        naive(args, fresh, url, population, marks, bulk_per_copy, settle_cpu, database)

    # 3. the checkpoint on the settled full ledger
    checkpoint(args, url, population, database)


def naive(args, fresh, url, population, marks, bulk_per_copy, settle_cpu, database) -> None:
    naive_url = fresh("settlement_naive")
    populate(naive_url, args.naive_copies, args.fills_per_copy)
    analyze(naive_url)
    started, cpu = time.perf_counter(), time.process_time()
    naive_copies = naive_settle(naive_url, population.as_of, marks)
    naive_s, naive_cpu = time.perf_counter() - started, time.process_time() - cpu
    naive_per_copy = naive_s / naive_copies
    same = payouts_of(naive_url) == payouts_of(url, limit=args.naive_copies)
    emit(
        {
            "benchmark": "settlement_naive",
            "database": database,
            "copies": naive_copies,
            "settle_s": round(naive_s, 2),
            "settle_cpu_s": round(naive_cpu, 2),
            "per_copy_ms": round(naive_per_copy * 1000, 4),
            "speedup_per_copy": round(naive_per_copy / bulk_per_copy, 1),
            "speedup_per_copy_cpu": round(
                (naive_cpu / naive_copies) / (settle_cpu / args.copies), 1
            ),
            "same_payouts_as_bulk": same,
            "target_speedup": 20,
            "ok": naive_per_copy / bulk_per_copy >= 20 and same,
        }
    )


def checkpoint(args, url, population, database) -> None:
    transfers, postings = ledger_size(url)
    started, cpu = time.perf_counter(), time.process_time()
    after = validate_ledger(url)
    checkpoint_s, checkpoint_cpu = time.perf_counter() - started, time.process_time() - cpu
    emit(
        {
            "benchmark": "ledger_integrity_checkpoint",
            "database": database,
            "copies": args.copies,
            "fills": population.fills,
            "transfers": transfers,
            "postings": postings,
            "seconds": round(checkpoint_s, 1),
            "cpu_s": round(checkpoint_cpu, 1),
            "chain_recompute_s": round(after.chain_seconds, 1),
            "gx_checkpoint_s": round(after.checkpoint_seconds, 1),
            "expectations": len(after.outcomes),
            "passed": after.passed,
            "target_s": 60,
            "ok": checkpoint_s < 60 and after.passed,
            "load_avg_1m": round(os.getloadavg()[0], 2),
        }
    )


if __name__ == "__main__":
    main()
