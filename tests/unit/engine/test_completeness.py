"""No leader fill is ever lost (R-IN-3, R-IN-1 as amended): start-up race, failing backfills,
late fills, the trailing-window check and position drift, on the in-memory exchange."""

from __future__ import annotations

import asyncio
from decimal import Decimal as D

from sqlalchemy import func, select, update

from copytrade.engine.completeness import check_portfolio
from copytrade.engine.history import derive_positions
from copytrade.engine.reconcile import baseline, reconcile
from copytrade.engine.runner import EngineRunner
from models import FollowerOrderIntent, LeaderFill, QuarantinedEvent
from models.trading import IngestGap


async def _wait(sm, n: int, timeout: float = 10.0) -> None:
    """Wait until ``n`` leader fills are stored and every intent has its outcome."""
    for _ in range(int(timeout / 0.02)):
        with sm() as s:
            stored = len(s.scalars(select(LeaderFill)).all())
            open_ = s.scalars(
                select(FollowerOrderIntent.id).where(FollowerOrderIntent.status != "done")
            ).all()
        if stored >= n and not open_:
            return
        await asyncio.sleep(0.02)


def _fills(sm) -> list[tuple[str, D, str]]:
    with sm() as s:
        rows = s.scalars(select(LeaderFill).order_by(LeaderFill.id)).all()
        return [(r.exchange_trade_id, r.quantity, r.source) for r in rows]


def _quarantined(sm) -> list[str]:
    with sm() as s:
        return [q.reason_code for q in s.scalars(select(QuarantinedEvent))]


async def _baselined(rig):
    """A first engine run's baseline: the leader was flat, no trade yet."""
    eng = rig.engine()
    await baseline(eng, eng.portfolios[rig.world.portfolio_id])
    return eng


async def test_fills_made_while_down_and_a_newer_stream_fill_are_all_stored_in_id_order_R_IN_3(
    rig,
):
    """The start-up race of issue 11: a newer fill on the stream during the start-up backfill
    must not push the older ones out as out_of_order."""
    w = rig.build([{"allocation": "1000", "leverage": 10}])
    await _baselined(rig)
    lead = w.leader_account_id
    for qty in ("0.1", "0.2", "0.3"):  # made while the engine was down
        rig.fake.leader_trade(lead, "BTCUSDT", "buy", D(qty), publish=False)
    rig.fake.fail_reads(lead, 1)  # the start-up backfill is slow: the stream is live first
    eng = rig.engine()
    runner = EngineRunner(eng, sweep_every=0.05, heartbeat_every=60, backfill_delay=0.05)
    task = asyncio.create_task(runner.run())
    for _ in range(100):  # as soon as the subscription is live, a newer fill comes in
        await asyncio.sleep(0.01)
        if rig.fake.accounts[lead].stream is not None:
            break
    rig.fake.leader_trade(lead, "BTCUSDT", "sell", D("0.05"))
    await _wait(rig.sm, 4)
    await asyncio.wait_for(runner.ready.wait(), 5)
    ps = eng.portfolios[w.portfolio_id]
    for _ in range(100):
        if not ps.ingest_paused:
            break
        await asyncio.sleep(0.02)
    runner.stop()
    await task
    assert [(i, q) for i, q, _ in _fills(rig.sm)] == [
        ("1", D("0.1")),
        ("2", D("0.2")),
        ("3", D("0.3")),
        ("4", D("0.05")),
    ]
    assert _quarantined(rig.sm) == []  # the stream's copy of #4 was merged, not a duplicate
    assert eng.portfolios[w.portfolio_id].leader_positions["BTCUSDT"] == D("0.55")
    with rig.sm() as s:
        assert {g.resolved_at is not None for g in s.scalars(select(IngestGap))} == {True}


async def test_a_late_older_fill_is_stored_and_applied_not_quarantined_R_IN_1(rig):
    w = rig.build([{"allocation": "1000", "leverage": 10}])
    eng = await _baselined(rig)
    older = rig.leader_trade("buy", "0.1", "50000")
    newer = rig.leader_trade("buy", "0.2", "50000")
    assert (await eng.on_leader_event(w.portfolio_id, newer)).quarantined is None
    late = await eng.on_leader_event(w.portfolio_id, older, "backfill")
    assert late.quarantined is None and late.leader_fill_id is not None
    assert _quarantined(rig.sm) == []
    ps = eng.portfolios[w.portfolio_id]
    assert ps.leader_positions["BTCUSDT"] == D("0.3") and ps.watermarks["BTCUSDT"] == 2
    with rig.sm() as s:
        derived, _ = derive_positions(s, w.portfolio_id, "futures")
    assert derived["BTCUSDT"] == D("0.3")
    # a restarted engine derives the same position from the stored fills
    assert rig.engine().portfolios[w.portfolio_id].leader_positions["BTCUSDT"] == D("0.3")


async def test_failing_backfill_is_retried_and_the_portfolio_is_close_only_meanwhile_R_IN_3(rig):
    w = rig.build([{"allocation": "1000", "leverage": 10}])
    await _baselined(rig)
    lead = w.leader_account_id
    rig.fake.leader_trade(lead, "BTCUSDT", "buy", D("0.1"), publish=False)  # missed while down
    rig.fake.fail_reads(lead, 4)  # four 503s on userTrades
    eng = rig.engine()
    runner = EngineRunner(
        eng, sweep_every=0.05, heartbeat_every=60, backfill_delay=0.02, hold_seconds=0.0
    )
    task = asyncio.create_task(runner.run())
    await asyncio.wait_for(runner.ready.wait(), 5)
    ps = eng.portfolios[w.portfolio_id]
    assert ps.ingest_paused  # recorded and visible while the backfill fails
    with rig.sm() as s:
        gap = s.scalars(select(IngestGap)).one()
        assert gap.kind == "backfill_failed" and gap.resolved_at is None
    await _wait(rig.sm, 1)
    for _ in range(100):
        await asyncio.sleep(0.02)
        if not ps.ingest_paused:
            break
    assert not ps.ingest_paused  # resumes once complete
    rig.fake.leader_trade(lead, "BTCUSDT", "buy", D("0.2"))  # copied normally again
    await _wait(rig.sm, 2)
    runner.stop()
    await task
    assert [(q, src) for _, q, src in _fills(rig.sm)] == [
        (D("0.1"), "backfill"),
        (D("0.2"), "stream"),
    ]
    with rig.sm() as s:
        gap = s.scalars(select(IngestGap)).one()
        assert gap.resolved_at is not None and gap.resolution == "backfill succeeded"
        outcomes = {i.outcome for i in s.scalars(select(FollowerOrderIntent))}
    assert outcomes == {"filled"}


async def test_close_only_while_incomplete_skips_openings_and_follows_reductions_R_IN_3(rig):
    w = rig.build([{"allocation": "1000", "leverage": 10}])
    eng = await _baselined(rig)
    await eng.on_leader_event(w.portfolio_id, rig.leader_trade("buy", "1", "50000"))
    ps = eng.portfolios[w.portfolio_id]
    from copytrade.engine.completeness import open_gap

    open_gap(eng, ps, "backfill_failed", None, "503 on userTrades")
    opening = await eng.on_leader_event(w.portfolio_id, rig.leader_trade("buy", "1", "50000"))
    reduction = await eng.on_leader_event(w.portfolio_id, rig.leader_trade("sell", "1", "50000"))
    with rig.sm() as s:
        by_fill = {
            i.leader_fill_id: (i.outcome, i.reason_code)
            for i in s.scalars(select(FollowerOrderIntent))
        }
    assert by_fill[opening.leader_fill_id] == ("skipped", "ingest_incomplete")
    assert by_fill[reduction.leader_fill_id] == ("filled", "filled")


async def test_check_finds_a_fill_missing_below_the_watermark_and_stores_it_R_IN_3(rig):
    w = rig.build([{"allocation": "1000", "leverage": 10}])
    eng = await _baselined(rig)
    lost = rig.leader_trade("buy", "0.1", "50000")  # never delivered, never backfilled
    await eng.on_leader_event(w.portfolio_id, rig.leader_trade("buy", "0.2", "50000"))
    report = await reconcile(eng)
    assert report.missing_found == [f"{w.portfolio_id}:BTCUSDT#{lost.trade_id}"]
    assert report.drift == [] and report.close_only == [] and not report.unresolved
    with rig.sm() as s:
        gap = s.scalars(select(IngestGap)).one()
        assert (gap.kind, gap.fills, gap.resolved_at is not None) == ("missing_fills", 1, True)
    assert eng.portfolios[w.portfolio_id].leader_positions["BTCUSDT"] == D("0.3")
    # nothing is found twice
    again = await check_portfolio(eng, eng.portfolios[w.portfolio_id])
    assert again.missing == [] and again.drift == []


async def test_unexplained_position_drift_puts_the_portfolio_close_only_until_it_agrees_R_IN_3(
    rig,
):
    w = rig.build([{"allocation": "1000", "leverage": 10}])
    eng = await _baselined(rig)
    await eng.on_leader_event(w.portfolio_id, rig.leader_trade("buy", "0.2", "50000"))
    account = rig.fake.accounts[w.leader_account_id]
    account.positions["BTCUSDT"] = D("0.5")  # moved outside any trade the exchange lists
    report = await reconcile(eng)
    assert report.drift == [
        f"portfolio {w.portfolio_id}: BTCUSDT: exchange 0.5, stored fills give 0.2"
    ]
    assert report.unresolved and report.close_only
    ps = eng.portfolios[w.portfolio_id]
    assert ps.ingest_paused
    assert rig.engine().portfolios[w.portfolio_id].ingest_paused  # survives a restart
    account.positions["BTCUSDT"] = D("0.2")
    report = await reconcile(eng)
    assert report.drift == [] and not report.unresolved and not ps.ingest_paused


async def test_check_reports_an_unreachable_exchange_as_unverified_R_IN_3(rig):
    w = rig.build([{"allocation": "1000", "leverage": 10}])
    eng = await _baselined(rig)
    rig.fake.fail_reads(w.leader_account_id, 2)
    report = await reconcile(eng)
    assert report.unresolved and report.unverified
    assert eng.portfolios[w.portfolio_id].ingest_paused  # a failed backfill is a known gap


def test_validation_fails_only_the_ingest_gap_check_while_a_gap_is_open_R_IN_3(
    db_url, session_maker
):
    from copytrade.validation import validate_ledger
    from tests.support.engine_world import make_world

    with session_maker() as s, s.begin():
        world = make_world(s, copies=[])
        s.add(IngestGap(portfolio_id=world.portfolio_id, kind="position_drift", symbol="BTCUSDT"))
    report = validate_ledger(db_url)
    assert report.failed_checks() == {"no_lead_portfolio_has_an_open_ingest_gap"}
    assert report.failed_rules() == {"R-IN-3"}
    with session_maker() as s, s.begin():
        s.execute(update(IngestGap).values(resolved_at=func.now(), resolution="agreed"))
    assert validate_ledger(db_url).passed


async def test_a_dropped_database_session_handles_the_fill_again_not_quarantined_R_IN_3(
    rig, monkeypatch
):
    from sqlalchemy.exc import OperationalError

    import copytrade.engine.core as core

    w = rig.build([{"allocation": "1000", "leverage": 10}])
    eng = await _baselined(rig)
    monkeypatch.setattr(core, "DB_RETRY_SECONDS", (0.0,))
    real, calls = eng._handle, []

    async def dropped_once(*args):
        calls.append(1)
        if len(calls) == 1:  # as pg_terminate_backend does to the session mid-transaction
            raise OperationalError("INSERT", {}, Exception("terminating connection"))
        return await real(*args)

    eng._handle = dropped_once
    report = await eng.on_leader_event(w.portfolio_id, rig.leader_trade("buy", "0.1", "50000"))
    assert len(calls) == 2 and report.leader_fill_id is not None
    assert _quarantined(rig.sm) == [] and len(_fills(rig.sm)) == 1


async def test_a_recording_lost_with_the_database_is_adopted_once_not_counted_twice_R_COPY_11(
    rig, monkeypatch
):
    """The database drops while recording: the fills were applied in memory but not stored. The
    copies are reloaded before the next use, so adopting the orders counts them exactly once."""
    from sqlalchemy.exc import OperationalError

    import copytrade.engine.core as core
    from copytrade.engine import record
    from copytrade.engine.reconcile import resolve_open_intents

    w = rig.build([{"allocation": "1000", "leverage": 10}])
    eng = await _baselined(rig)
    eng.absent_after = 0.0
    monkeypatch.setattr(core, "DB_RETRY_SECONDS", (0.0,))
    real = record.record_fills

    def dropped(engine, session, ps, plans, order_ids):
        real(engine, session, ps, plans, order_ids)  # positions move in memory, then commit fails
        raise OperationalError("INSERT", {}, Exception("terminating connection"))

    monkeypatch.setattr(record, "record_fills", dropped)
    await eng.on_leader_event(w.portfolio_id, rig.leader_trade("buy", "1", "50000"))
    monkeypatch.setattr(record, "record_fills", real)
    report = await resolve_open_intents(eng)
    assert report.adopted == 1
    ps = eng.portfolios[w.portfolio_id]
    exchange = rig.fake.accounts[w.copy_accounts[w.copy_ids[0]]].positions["BTCUSDT"]
    assert ps.copies[0].positions["BTCUSDT"].quantity == exchange == D("0.1")  # not 0.2
    with rig.sm() as s:
        from models import CopyPosition

        assert s.scalars(select(CopyPosition.quantity)).one() == exchange


async def test_after_a_lost_recording_the_next_fill_is_sized_on_the_adopted_position_R_COPY_4(
    rig, monkeypatch
):
    """The database drops while a fill's orders are recorded, and the leader's next fill (a
    reduction) comes before any sweep: the lost recording's orders are adopted first, so the
    follower reduces a share of what it really holds. Sized on the reloaded position without
    them, the follower sold half of nothing and stayed above its ratio for good (the fault
    campaign: every follower 11 % above ratio after a dropped session)."""
    from sqlalchemy.exc import OperationalError

    import copytrade.engine.core as core
    from copytrade.engine import record

    w = rig.build([{"allocation": "1000", "leverage": 10}])
    eng = await _baselined(rig)
    monkeypatch.setattr(core, "DB_RETRY_SECONDS", (0.0,))
    real = record.record_fills

    def dropped(engine, session, ps, plans, order_ids):
        real(engine, session, ps, plans, order_ids)
        raise OperationalError("INSERT", {}, Exception("terminating connection"))

    monkeypatch.setattr(record, "record_fills", dropped)
    await eng.on_leader_event(w.portfolio_id, rig.leader_trade("buy", "1", "50000"))  # 0.1 BTC
    monkeypatch.setattr(record, "record_fills", real)
    await eng.on_leader_event(w.portfolio_id, rig.leader_trade("sell", "0.5", "50000"))
    exchange = rig.fake.accounts[w.copy_accounts[w.copy_ids[0]]].positions["BTCUSDT"]
    assert exchange == D("0.05")  # half, as the leader: not 0.1 (nothing to reduce)
    ps = eng.portfolios[w.portfolio_id]
    assert ps.copies[0].positions["BTCUSDT"].quantity == exchange
    with rig.sm() as s:
        outcomes = [i.outcome for i in s.scalars(select(FollowerOrderIntent))]
    assert outcomes == ["filled", "filled"]


async def test_through_zero_the_reductions_are_answered_before_the_openings_are_sent_R_COPY_4(rig):
    """A reduce-only close and an opening on the other side sent together could execute in the
    wrong order; the close would then be refused and the follower left on the wrong side."""
    w = rig.build([{"allocation": "1000", "leverage": 10}, {"allocation": "1000", "leverage": 10}])
    eng = await _baselined(rig)
    await eng.on_leader_event(w.portfolio_id, rig.leader_trade("buy", "0.2", "50000"))
    batches, real = [], eng._send

    async def recording(intents):
        batches.append(sorted({it.leg for it in intents}))
        return await real(intents)

    eng._send = recording
    await eng.on_leader_event(w.portfolio_id, rig.leader_trade("sell", "0.3", "50000"))
    assert batches == [[0], [1]]
    for copy_id in w.copy_ids:
        held = rig.fake.accounts[w.copy_accounts[copy_id]].positions["BTCUSDT"]
        assert held == D("-0.009")  # closed, then short 0.1 × equity (after fees) / 10,000, floored
