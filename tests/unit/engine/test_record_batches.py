"""Stage 5 on the engine's recording thread: the answers of leader fills of several portfolios
that wait meanwhile are recorded in one transaction (``record.record_many``), off the event loop.
"""

from __future__ import annotations

import asyncio
import threading
from decimal import Decimal as D

from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

import copytrade.engine.core as core
from copytrade.engine import record
from copytrade.engine.reconcile import resolve_open_intents
from copytrade.ledger import Ledger
from models import CopyPosition, FollowerFill, FollowerOrder, FollowerOrderIntent

COPIES = [{"allocation": "1000", "leverage": 10}, {"allocation": "2000", "leverage": 10}]


def _held_first_batch(monkeypatch, eng):
    """Spy on ``record_many``: the first batch waits (on the recording thread) until the other
    fills are queued behind it, so they make one batch together."""
    batches: list[list[int]] = []
    real = record.record_many
    queued = threading.Event()

    def spy(engine, answered):
        if not batches:
            for _ in range(400):
                if len(engine._to_record) >= 2:
                    break
                queued.wait(0.025)
        batches.append([a.ps.portfolio_id for a in answered])
        real(engine, answered)

    monkeypatch.setattr(record, "record_many", spy)
    return batches


async def test_fills_of_three_portfolios_recorded_together_each_intent_one_outcome_R_COPY_7(
    rig, monkeypatch
):
    """Three leaders trade at once: the second and third fills' answers are recorded in one
    transaction; every intent has exactly one outcome, every follower its own order, fill,
    ledger postings and position, and the ledger's chain verifies (R-COPY-7, R-COPY-8, R-X-4)."""
    worlds = [rig.build(COPIES) for _ in range(3)]
    eng = rig.engine()
    batches = _held_first_batch(monkeypatch, eng)
    trades = [
        rig.fake.leader_trade(w.leader_account_id, "BTCUSDT", "buy", D("1"), None, publish=False)
        for w in worlds
    ]
    reports = await asyncio.gather(
        *(eng.on_leader_event(w.portfolio_id, t) for w, t in zip(worlds, trades, strict=True))
    )
    assert [r.sent for r in reports] == [2, 2, 2]
    assert sorted(len(b) for b in batches) == [1, 2]  # two fills in one transaction
    with rig.sm() as s:
        intents = s.execute(select(FollowerOrderIntent.status, FollowerOrderIntent.outcome)).all()
        assert sorted(intents) == [("done", "filled")] * 6
        assert s.scalar(select(func.count()).select_from(FollowerOrder)) == 6
        assert s.scalar(select(func.count()).select_from(FollowerFill)) == 6
        stored = dict(s.execute(select(CopyPosition.copy_id, CopyPosition.quantity)).tuples().all())
        assert Ledger(s).verify_chain().ok
    for w in worlds:
        ps = eng.portfolios[w.portfolio_id]
        for copy in ps.copies:
            on_exchange = rig.fake.accounts[w.copy_accounts[copy.copy_id]].positions["BTCUSDT"]
            assert copy.positions["BTCUSDT"].quantity == stored[copy.copy_id] == on_exchange > 0
    assert not eng.inflight


async def test_a_batch_whose_transaction_fails_leaves_every_fill_to_the_sweep_once(
    rig, monkeypatch
):
    """The database drops while a batch of two portfolios' fills is recorded: both fills get
    the error, both portfolios' copies are reloaded before their next use, and the sweep adopts
    each order exactly once (positions as on the exchange, not twice) — R-COPY-11."""
    worlds = [rig.build(COPIES[:1]) for _ in range(3)]
    eng = rig.engine()
    eng.absent_after = 0.0
    monkeypatch.setattr(core, "DB_RETRY_SECONDS", (0.0,))
    real = record.record_many
    batches: list[list[int]] = []
    queued = threading.Event()

    def spy(engine, answered):
        batches.append([a.ps.portfolio_id for a in answered])
        if len(batches) == 1:  # the first fill, recorded; the two others queue behind it
            for _ in range(400):
                if len(engine._to_record) >= 2:
                    break
                queued.wait(0.025)
            return real(engine, answered)
        if len(batches) == 2:  # the batch of two: recorded in memory, the commit lost
            real_fills = record.record_fills

            def dropped(*args):
                real_fills(*args)
                raise OperationalError("INSERT", {}, Exception("terminating connection"))

            monkeypatch.setattr(record, "record_fills", dropped)
            try:
                return real(engine, answered)
            finally:
                monkeypatch.setattr(record, "record_fills", real_fills)
        return real(engine, answered)

    monkeypatch.setattr(record, "record_many", spy)
    trades = [
        rig.fake.leader_trade(w.leader_account_id, "BTCUSDT", "buy", D("1"), None, publish=False)
        for w in worlds
    ]
    await asyncio.gather(
        *(eng.on_leader_event(w.portfolio_id, t) for w, t in zip(worlds, trades, strict=True))
    )
    assert [len(b) for b in batches] == [1, 2]
    failed = batches[1]
    assert all(eng.portfolios[pid].copies_stale for pid in failed)
    monkeypatch.setattr(record, "record_many", real)
    report = await resolve_open_intents(eng)
    assert report.adopted == 2
    with rig.sm() as s:
        stored = dict(s.execute(select(CopyPosition.copy_id, CopyPosition.quantity)).tuples().all())
        statuses = s.scalars(select(FollowerOrderIntent.status)).all()
    assert statuses == ["done"] * 3
    for w in worlds:
        [copy] = eng.portfolios[w.portfolio_id].copies
        on_exchange = rig.fake.accounts[w.copy_accounts[copy.copy_id]].positions["BTCUSDT"]
        assert copy.positions["BTCUSDT"].quantity == stored[copy.copy_id] == on_exchange  # once
