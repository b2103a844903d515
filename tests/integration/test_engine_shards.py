"""Engine shards: stable ownership, the CLI's `--shard` check, the per-shard lock on PostgreSQL
(advisory locks) and SQLite (a lock file), and a shard's engine loading only its portfolios and
(its ledger stream: tests/e2e/test_shard_failover.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import pytest
from sqlalchemy.orm import sessionmaker
from typer.testing import CliRunner

from copytrade import migrate
from copytrade.cli import app
from copytrade.db import make_engine
from copytrade.engine.core import CopyEngine
from copytrade.engine.shards import (
    MAX_SHARDS,
    Fleet,
    Shard,
    ShardBusy,
    ShardLock,
    running_engines,
    shard_of,
)
from tests.support.engine_world import load_reference_markets, make_world


def test_a_portfolio_has_one_shard_whatever_the_process():
    """The hash is blake2b, not Python's salted ``hash``: another interpreter agrees."""
    ids = list(range(1, 200))
    here = [shard_of(i, 3) for i in ids]
    there = subprocess.run(
        [
            sys.executable,
            "-c",
            "from copytrade.engine.shards import shard_of;"
            f"print([shard_of(i, 3) for i in {ids!r}])",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert str(here) == there.strip()
    assert set(here) == {0, 1, 2}
    for i in ids:  # exactly one owner
        assert [Shard(k, 3).owns(i) for k in range(3)].count(True) == 1
        assert Shard(0, 1).owns(i)


@pytest.mark.parametrize("value", ["2/2", "1", "a/b", "-1/2", "0/0", f"0/{MAX_SHARDS + 1}", ""])
def test_engine_run_refuses_a_bad_shard_with_exit_2_naming_the_rule_R_IN_2(value):
    result = CliRunner().invoke(app, ["engine", "run", "--shard", value])
    out = " ".join(result.output.split())
    assert result.exit_code == 2, out
    assert "--shard" in out and "I/N with 0 ≤ I < N" in out


def test_engine_run_refuses_shards_on_sqlite_with_exit_2(tmp_path, monkeypatch):
    from copytrade.config import get_settings

    monkeypatch.setenv("COPYTRADE_DATABASE_URL", f"sqlite:///{tmp_path / 'l.db'}")
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["engine", "run", "--shard", "1/2"])
    finally:
        get_settings.cache_clear()
    out = " ".join(result.output.split())
    assert result.exit_code == 2, out
    assert "--shard 1/2" in out and "PostgreSQL" in out


def test_postgresql_shard_lock_is_held_once_and_freed_with_its_session(pg_url):
    with ShardLock(pg_url, Shard(0, 2)):
        with pytest.raises(ShardBusy, match="shard 0/2 is already running"):
            ShardLock(pg_url, Shard(0, 2)).acquire()
        with ShardLock(pg_url, Shard(1, 2)):  # the other shard of the layout runs beside it
            pass
        with pytest.raises(ShardBusy, match="engines with 2 shards are running"):
            ShardLock(pg_url, Shard(0, 3)).acquire()  # another layout would overlap
    with ShardLock(pg_url, Shard(0, 2)):  # released with the session
        pass
    with ShardLock(pg_url, Shard(0, 3)):  # and the layout with it
        pass


def test_shards_of_one_layout_started_together_all_start(pg_url):
    """Operators start every shard at once; one shard's start-up check must never take another
    for a different layout (CI saw "engines with 1 shards are running" from such a race)."""
    count = 4

    def start(index: int, barrier: threading.Barrier, locks: list, errors: list) -> None:
        barrier.wait()
        try:
            locks.append(ShardLock(pg_url, Shard(index, count)).acquire())
        except ShardBusy as exc:
            errors.append(str(exc))

    for _ in range(5):
        barrier, locks, errors = threading.Barrier(count), [], []
        threads = [
            threading.Thread(target=start, args=(i, barrier, locks, errors)) for i in range(count)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        try:
            assert errors == []
            assert running_engines(pg_url) == Fleet(count, frozenset(range(count)))
        finally:
            for lock in locks:
                lock.release()


def test_shard_locks_of_ledgers_in_other_schemas_do_not_meet(pg_url, pg_server_url):
    """Advisory locks are per database; the ledger's schema is part of the key."""
    with ShardLock(pg_url, Shard(0, 1)), ShardLock(pg_server_url, Shard(0, 1)):
        pass


def test_sqlite_allows_one_engine_per_ledger_file(tmp_path):
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    with ShardLock(url, Shard()), pytest.raises(ShardBusy, match="one writer"):
        ShardLock(url, Shard()).acquire()
    with ShardLock(url, Shard()):
        pass


def test_running_shards_are_read_from_their_locks_without_taking_any_R_IN_3(pg_url, tmp_path):
    """``engine reconcile`` (and the ingest flow) leaves running shards' portfolios to them: it
    must see which shards run, on PostgreSQL and on SQLite, without disturbing them."""
    assert running_engines(pg_url) == Fleet()
    with ShardLock(pg_url, Shard(1, 3)):
        fleet = running_engines(pg_url)
        assert fleet == Fleet(3, frozenset({1}))
        assert fleet.free() == [Shard(0, 3), Shard(2, 3)]
        with ShardLock(pg_url, Shard(0, 3)):  # reading took no lock: the shard still starts
            assert running_engines(pg_url).running == {0, 1}
    assert running_engines(pg_url) == Fleet()
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    assert running_engines(url) == Fleet()
    with ShardLock(url, Shard()):
        assert running_engines(url) == Fleet(1, frozenset({0}))
        assert running_engines(url).free() == []
    assert running_engines(url) == Fleet()


def test_engine_reconcile_leaves_a_running_engines_portfolios_to_it_R_IN_3_R_COPY_11(
    tmp_path, monkeypatch
):
    """While an engine runs, `copytrade engine reconcile` sends nothing for its portfolios (two
    processes would write orders for the same follower accounts, one on positions the other
    holds in memory); it says so and still reports their open gaps from the ledger."""
    from copytrade.config import get_settings

    url = f"sqlite:///{tmp_path / 'l.db'}"
    migrate.upgrade(url)
    monkeypatch.setenv("COPYTRADE_DATABASE_URL", url)
    get_settings.cache_clear()
    try:
        with ShardLock(url, Shard()):
            # no exchange is reachable at this address: nothing may be asked of it either
            result = CliRunner().invoke(
                app, ["engine", "reconcile", "--exchange", "http://127.0.0.1:9"]
            )
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["left_to_engines"] == ["0/1"] and report["open_intents"] == 0


def test_a_shard_engine_loads_only_its_portfolios_with_their_copies(db_url, shared_data):
    migrate.upgrade(db_url)
    db = make_engine(db_url)
    sm = sessionmaker(db, expire_on_commit=False)
    with sm() as s, s.begin():
        worlds = [make_world(s, copies=[{"allocation": "1000"}] * 2) for _ in range(8)]
    shard = Shard(1, 2)
    engine = CopyEngine(
        sm,
        lambda _: None,
        load_reference_markets(shared_data),
        owns=shard.owns,
        ledger_stream=shard.stream,
    )
    engine.load()
    mine = {w.portfolio_id: w.copy_ids for w in worlds if shard_of(w.portfolio_id, 2) == 1}
    assert mine and len(mine) < len(worlds)
    assert {pid: [c.copy_id for c in ps.copies] for pid, ps in engine.portfolios.items()} == mine
    db.dispose()


def test_portfolios_created_while_a_shard_runs_join_only_their_own_shard(sqlite_url, shared_data):
    from copytrade.engine.live_config import add_new_portfolios

    migrate.upgrade(sqlite_url)
    db = make_engine(sqlite_url)
    sm = sessionmaker(db, expire_on_commit=False)
    shard = Shard(0, 2)
    engine = CopyEngine(
        sm, lambda _: None, load_reference_markets(shared_data), owns=shard.owns, ledger_stream=0
    )
    engine.load()
    with sm() as s, s.begin():
        new = [make_world(s, copies=[{"allocation": "1000"}]).portfolio_id for _ in range(8)]
    added = add_new_portfolios(engine)
    assert added == sorted(pid for pid in new if shard_of(pid, 2) == 0) and added
    assert set(engine.portfolios) == set(added)
    db.dispose()
