"""Benchmark the metrics warehouse: the full refresh as a user waits for it, the incremental step,
and dbt against a pandas per-leader loop.

Prints JSON lines, each with the machine's load average (`load_1min`, `load_5min`: the machine is
shared and every time grows with the load): the synthetic ledger (leaders × days, fills), the time
to write it, the full refresh — `extract_s` (ledger → warehouse sources), `dbt_build_s` and their
sum `full_refresh_s` — the incremental extract and build after one more day of data, and the same
metrics computed by a straightforward pandas loop per leader (tests.support.reference) on a
slice of leaders, extrapolated to all of them, with the ratio.

The ratio is taken on the same work: the loop computes daily equity, returns and the four periods
of leader metrics, so it is compared with a `dbt build` of `leader_metrics` and the models it is
built from (seeds and models, no data tests — the loop checks nothing), on a fresh warehouse over
the same extract. That selection still computes the copies' books, which the loop leaves out. The
ratio to the whole `dbt build` (copy quality, capacity, leaderboard and every data test) is printed
beside it.

Targets on the 2-core machine: full refresh (extract + build) < 60 s; incremental (extract +
build) < 10 s; ≥ 10× the pandas loop.

    python benchmarks/metrics.py                       # 10,000 leaders × 365 days, 10,000,000 fills
    python benchmarks/metrics.py --leaders 200 --days 30 --fills 100000   # quick
    python benchmarks/metrics.py --workdir DIR --keep-ledger   # keep the written ledger; repeats
                                                               # start from a copy of it
    python benchmarks/metrics.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/metrics_bench
        # the ledger on PostgreSQL (that database is dropped and created anew) and the dbt models
        # on the PostgreSQL target, in its schema metrics_bench (--target duckdb to compare)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import models  # noqa: E402
from copytrade.analytics.warehouse import (  # noqa: E402
    PRODUCTION_EXCLUDE,
    Warehouse,
    build,
    run_dbt,
)
from copytrade.db import make_engine  # noqa: E402
from tests.support import reference  # noqa: E402
from tests.support.synthetic import SyntheticConfig, generate  # noqa: E402

PG_SCHEMA = "metrics_bench"  # the warehouse schema of a PostgreSQL benchmark run
SAME_WORK = ("build", "--select", "+leader_metrics")


def emit(**record) -> None:
    """Print one JSON line, with the load average: the machine is shared, times grow with it."""
    one, five, _ = os.getloadavg()
    record.setdefault("load_1min", round(one, 2))
    record.setdefault("load_5min", round(five, 2))
    print(json.dumps(record), flush=True)


def composition(run) -> dict:
    """What a dbt build ran: node counts and summed node seconds of models and data tests.

    Node seconds add up the time of nodes that ran in parallel (dbt threads), so they exceed the
    wall time; the split says where the build spends its work. The 1-minute load average is
    recorded beside it: the machine is shared, and times grow with the load.
    """
    tests = [s for u, s in run.node_seconds.items() if u.startswith("test.")]
    models = [s for u, s in run.node_seconds.items() if not u.startswith("test.")]
    return {
        "models_and_seeds": len(models),
        "data_tests": len(tests),
        "model_node_s": round(sum(models), 1),
        "test_node_s": round(sum(tests), 1),
        "load_1min": round(os.getloadavg()[0], 2),
    }


def same_work_build(root: Path, extract_dir: Path) -> float:
    """Time `leader_metrics` and its upstream models (no data tests) on a fresh warehouse."""
    warehouse = Warehouse(
        kind="duckdb",
        path=root / "warehouse.duckdb",
        extract_dir=extract_dir,
        artifacts_dir=root / "dbt",
    )
    shutil.rmtree(root, ignore_errors=True)
    run_dbt(warehouse, ["parse"])  # the timed build starts from a parsed project, as hourly ones do
    run = run_dbt(warehouse, [*SAME_WORK, *PRODUCTION_EXCLUDE, "--exclude-resource-type", "test"])
    if not run.success:
        emit(benchmark="metrics.same_work_build", error=run.error, failures=run.failures[:5])
        raise SystemExit(1)
    return run.seconds


def ledger_config(args) -> SyntheticConfig:
    """The synthetic ledger: `days` days, plus one more day for the incremental step."""
    days = args.days + 1
    return SyntheticConfig(
        leaders=args.leaders,
        days=days,
        fills=int(args.fills * days / args.days),
        copy_share=args.copy_share,
        copies_per_leader=3,
        late_share=0.05,
        seed=2024,
    )


def pandas_ratio(args, ledger, same_work_s: float, full_build_s: float) -> None:
    """Time the pandas loop on a slice of leaders, extrapolate, and compare (same data: `days`)."""
    as_of = (ledger.day_start(args.days) - timedelta(days=1)).date()
    rng = np.random.default_rng(1)
    leader_ids = sorted(
        rng.choice(
            ledger.portfolios["portfolio_id"].to_numpy(),
            min(args.pandas_slice, args.leaders),
            replace=False,
        ).tolist()
    )
    loop_s = pandas_loop(ledger, leader_ids, as_of)
    extrapolated = loop_s * args.leaders / len(leader_ids)
    emit(
        benchmark="metrics.pandas_loop",
        leaders_computed=len(leader_ids),
        loop_s=round(loop_s, 1),
        extrapolated_all_leaders_s=round(extrapolated, 1),
        dbt_same_work=" ".join(SAME_WORK) + ", no data tests",
        dbt_same_work_s=round(same_work_s, 1),
        ratio=round(extrapolated / same_work_s, 1),
        dbt_full_build_s=round(full_build_s, 1),
        ratio_to_full_build=round(extrapolated / full_build_s, 1),
        load_1min=round(os.getloadavg()[0], 2),
        target_ratio=10,
        meets_target=extrapolated / same_work_s >= 10,
    )


def pandas_loop(ledger, leader_ids, as_of) -> float:
    """Time the reference computation (daily equity, returns, 4 periods of metrics) per leader."""
    fills = ledger.leader_fills
    fills = fills[fills["portfolio_id"].isin(leader_ids)].copy()
    for column in ("price", "quantity", "fee", "realised_pnl"):
        fills[column] = fills[column] / 1e8
    flows = ledger.flows.copy()
    flows["amount"] = flows["amount"] / 1e8
    marks = {s: g.set_index("price_date")["price"] / 1e8 for s, g in ledger.bars.groupby("symbol")}
    created = ledger.portfolios.set_index("portfolio_id")["created_at"]
    started = time.perf_counter()
    for pid in leader_ids:
        own = fills[fills["portfolio_id"] == pid]
        address = f"leader:{pid}:capital"
        own_flows = flows[(flows["address"] == address) | (flows["source"] == address)].copy()
        own_flows["amount"] = np.where(
            own_flows["source"] == address, -own_flows["amount"], own_flows["amount"]
        )
        reference.leader_metrics(own, own_flows, marks, created[pid].date(), as_of)
    return time.perf_counter() - started


def rebuild_only(args) -> None:
    """Time the full and incremental dbt builds on an extract a previous run left in --workdir."""
    work = args.workdir
    extract_dir = work / "warehouse" / "extract"
    held = work / "held-back"
    shutil.rmtree(held, ignore_errors=True)
    held.mkdir()
    for path in extract_dir.glob("*/batch_000002_*.parquet"):
        (held / path.parent.name).mkdir(exist_ok=True)
        shutil.move(str(path), held / path.parent.name / path.name)
    (work / "warehouse" / "warehouse.duckdb").unlink(missing_ok=True)
    warehouse = Warehouse.duckdb(work / "warehouse")
    full = build(warehouse, skip_extract=True, exclude=args.exclude)
    emit(
        benchmark="metrics.full_build",
        mode="rebuild-only",
        dbt_build_s=round(full.dbt.seconds, 1),
        failures=full.dbt.failures[:3],
        **composition(full.dbt),
        target_s=60,
        meets_target=full.dbt.success and full.dbt.seconds < 60,
    )
    _timings(full.dbt)
    same_work_s = same_work_build(work / "same-work", extract_dir)
    for folder in held.iterdir():
        for path in folder.iterdir():
            shutil.move(str(path), extract_dir / folder.name / path.name)
    incremental = build(warehouse, skip_extract=True, test_rows_after_batch=1, exclude=args.exclude)
    emit(
        benchmark="metrics.incremental_build",
        mode="rebuild-only",
        dbt_build_s=round(incremental.dbt.seconds, 1),
        failures=incremental.dbt.failures[:3],
        **composition(incremental.dbt),
        target_s=10,
        meets_target=incremental.dbt.success and incremental.dbt.seconds < 10,
    )
    _timings(incremental.dbt)
    # the same ledger again (the generator is seeded), in memory, for the pandas loop
    pandas_ratio(args, generate(ledger_config(args)), same_work_s, full.dbt.seconds)


def _timings(run) -> None:
    slowest = sorted(run.node_seconds.items(), key=lambda kv: -kv[1])[:15]
    emit(
        benchmark="metrics.slowest_nodes_last_build",
        nodes={unique_id.split(".")[-1]: round(seconds, 2) for unique_id, seconds in slowest},
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--leaders", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument(
        "--fills", type=int, default=10_000_000, help="leader fills over the first `days` days"
    )
    parser.add_argument("--copy-share", type=float, default=0.02)
    parser.add_argument(
        "--pandas-slice", type=int, default=50, help="leaders the pandas loop computes"
    )
    parser.add_argument(
        "--no-pandas",
        action="store_true",
        help="skip the same-work dbt build and the pandas loop (the ratio)",
    )
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--exclude", default=None, help="dbt nodes to leave out of the builds")
    parser.add_argument(
        "--database-url",
        default=None,
        help="a PostgreSQL ledger instead of SQLite: the database is dropped and created anew, so "
        "its name must contain 'bench' (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/"
        "metrics_bench)",
    )
    parser.add_argument(
        "--target",
        choices=("duckdb", "postgres"),
        default=None,
        help="the dbt target (default: postgres with --database-url, the warehouse in schema "
        f"{PG_SCHEMA} of that database; duckdb otherwise)",
    )
    parser.add_argument(
        "--keep-ledger",
        action="store_true",
        help="keep the written ledger of the first `days` (a file in --workdir, or a template "
        "database) and start from a copy of it when the same sizes run again",
    )
    parser.add_argument(
        "--rebuild-only",
        action="store_true",
        help="reuse --workdir's extract (batch 1 = the first `days`, batch 2 = one more day; run "
        "with the same --leaders/--days/--fills) and time the dbt builds and the pandas loop; "
        "skips writing the SQLite ledger again",
    )
    args = parser.parse_args()
    if args.database_url and "bench" not in (make_url(args.database_url).database or ""):
        parser.error(
            f"--database-url: database {make_url(args.database_url).database!r} would be dropped "
            "and created anew; use one whose name contains 'bench'"
        )
    if args.keep_ledger and args.workdir is None and not args.database_url:
        parser.error("--keep-ledger: give --workdir, where the SQLite ledger is kept")
    if args.rebuild_only:
        rebuild_only(args)
        return
    try:
        run(args)
    except OperationalError as exc:
        where = make_url(args.database_url).render_as_string() if args.database_url else "SQLite"
        print(
            f"error: the ledger database {where} cannot be reached: {str(exc.orig).splitlines()[0]}",
            file=sys.stderr,
        )
        raise SystemExit(3) from None


def run(args) -> None:
    work = args.workdir or Path(tempfile.mkdtemp(prefix="metrics-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    for name in ("warehouse", "same-work", "ledger.db", "ledger.db-wal", "ledger.db-shm"):
        path = work / name
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    started = time.perf_counter()
    ledger = generate(ledger_config(args))
    generate_s = time.perf_counter() - started
    url, write_s, reused = prepare_ledger(args, ledger, work)
    engine = make_engine(url)
    first_fills = int((ledger.leader_fills["traded_at"] < ledger.day_start(args.days)).sum())
    emit(
        benchmark="metrics.ledger",
        database=engine.dialect.name,
        leaders=args.leaders,
        days=args.days,
        leader_fills=first_fills,
        follower_fills=int(
            (ledger.follower_fills["traded_at"] < ledger.day_start(args.days)).sum()
        ),
        copies=len(ledger.copies),
        generate_s=round(generate_s, 1),
        write_s=round(write_s, 1),
        reused_kept_ledger=reused,
    )

    target = args.target or ("postgres" if args.database_url else "duckdb")
    warehouse = bench_warehouse(target, work, url)
    full = build(warehouse, url)
    if not full.dbt.success:
        emit(benchmark="metrics.full_build", error=full.dbt.error, failures=full.dbt.failures[:5])
        raise SystemExit(1)
    full_refresh_s = full.extract_seconds + full.dbt.seconds
    emit(
        benchmark="metrics.full_build",
        ledger=engine.dialect.name,
        target=target,
        extract_s=round(full.extract_seconds, 1),
        extracted_rows=full.extract.rows if full.extract else 0,
        dbt_build_s=round(full.dbt.seconds, 1),
        full_refresh_s=round(full_refresh_s, 1),
        **composition(full.dbt),
        target_s=60,
        meets_target=full_refresh_s < 60,
    )
    _timings(full.dbt)
    same_work_s = None
    if target == "duckdb" and not args.no_pandas:
        same_work_s = same_work_build(work / "same-work", work / "warehouse" / "extract")

    started = time.perf_counter()
    ledger.write(engine, since=args.days)
    add_day_s = time.perf_counter() - started
    incremental = build(warehouse, url)
    if not incremental.dbt.success:
        emit(
            benchmark="metrics.incremental_build",
            error=incremental.dbt.error,
            failures=incremental.dbt.failures[:5],
        )
        raise SystemExit(1)
    total = incremental.extract_seconds + incremental.dbt.seconds
    emit(
        benchmark="metrics.incremental_build",
        ledger=engine.dialect.name,
        target=target,
        added_leader_fills=int(len(ledger.leader_fills) - first_fills),
        write_day_s=round(add_day_s, 1),
        extract_s=round(incremental.extract_seconds, 2),
        extracted_rows=incremental.extract.rows if incremental.extract else 0,
        dbt_build_s=round(incremental.dbt.seconds, 1),
        extract_plus_build_s=round(total, 1),
        **composition(incremental.dbt),
        target_s=10,
        meets_target=total < 10,
    )
    _timings(incremental.dbt)

    if same_work_s is not None:
        pandas_ratio(args, ledger, same_work_s, full.dbt.seconds)
    engine.dispose()
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)


def bench_warehouse(target: str, work: Path, url: str) -> Warehouse:
    if target == "duckdb":
        return Warehouse.duckdb(work / "warehouse")
    pg_url = url if url.startswith("postgresql") else os.environ.get("COPYTRADE_TEST_PG_URL", "")
    if not pg_url:
        raise SystemExit("--target postgres: give --database-url (or COPYTRADE_TEST_PG_URL)")
    admin = make_engine(pg_url)
    with admin.begin() as conn:  # the benchmark's own schema: a fresh warehouse every run
        conn.execute(text(f'drop schema if exists "{PG_SCHEMA}" cascade'))
    admin.dispose()
    return Warehouse(kind="postgres", pg_url=pg_url, schema=PG_SCHEMA, artifacts_dir=work / "dbt")


def prepare_ledger(args, ledger, work: Path) -> tuple[str, float, bool]:
    """Write the ledger of the first `days` (or copy a kept one); return its URL, the write time
    and whether a kept ledger was reused."""
    sizes = f"{args.leaders}x{args.days}x{args.fills}"
    if args.database_url:
        return _prepare_postgres(args, ledger, sizes)
    url = f"sqlite:///{work / 'ledger.db'}"
    if not args.keep_ledger:
        return url, _write(url, ledger, args.days), False
    kept = work / f"ledger-kept-{sizes}.db"
    reused = kept.exists()
    write_s = 0.0 if reused else _write(f"sqlite:///{kept}", ledger, args.days)
    shutil.copyfile(kept, work / "ledger.db")  # the kept engine is disposed: no WAL is left
    return url, write_s, reused


def _write(url: str, ledger, days: int) -> float:
    engine = make_engine(url)
    models.Base.metadata.create_all(engine)
    started = time.perf_counter()
    ledger.write(engine, until=days)
    seconds = time.perf_counter() - started
    engine.dispose()
    return seconds


def _prepare_postgres(args, ledger, sizes: str) -> tuple[str, float, bool]:
    url = make_url(args.database_url)
    name, kept = url.database, f"{url.database}_kept_{sizes}"
    admin = make_engine(
        url.set(database="postgres").render_as_string(hide_password=False),
        isolation_level="AUTOCOMMIT",
    )
    with admin.connect() as conn:
        conn.execute(text(f'drop database if exists "{name}" with (force)'))
        exists = conn.execute(
            text("select 1 from pg_database where datname = :d"), {"d": kept}
        ).first()
        if not args.keep_ledger or not exists:
            conn.execute(text(f'drop database if exists "{kept}" with (force)'))
            conn.execute(text(f'create database "{kept}"'))
    reused = bool(exists) and args.keep_ledger
    write_s = 0.0
    if not reused:
        write_s = _write(
            url.set(database=kept).render_as_string(hide_password=False), ledger, args.days
        )
    with admin.connect() as conn:  # a copy of the kept ledger (PostgreSQL copies the files)
        conn.execute(text(f'create database "{name}" template "{kept}"'))
        if not args.keep_ledger:
            conn.execute(text(f'drop database "{kept}"'))
    admin.dispose()
    return url.render_as_string(hide_password=False), write_s, reused


if __name__ == "__main__":
    main()
