"""Copy stop-loss/take-profit, daily loss pause, manual close, re-sync, restart recovery and
stream gaps, on the in-memory exchange (R-COPY-3/5/11, R-X-2/3, R-IN-1)."""

from __future__ import annotations

import asyncio
import contextlib
from decimal import Decimal as D

from sqlalchemy import select

from copytrade.engine.reconcile import reconcile, resolve_open_intents
from copytrade.engine.resync import resync
from copytrade.engine.runner import EngineRunner
from copytrade.engine.send import order_request
from models import Copy, CopyStopEvent, FollowerOrderIntent, LeaderFill, QuarantinedEvent


async def test_copy_stop_loss_stops_closes_and_records_trigger_R_COPY_3(rig):
    w = rig.build(
        [
            {"allocation": "1000", "leverage": 10, "stop_loss_pct": "10"},
            {"allocation": "1000", "leverage": 10},
        ]
    )
    eng = rig.engine()
    await eng.on_leader_event(w.portfolio_id, rig.leader_trade("buy", "1", "50000"))  # 0.1 BTC each
    rig.fake.prices["BTCUSDT"] = D("48000")  # −200 marked: beyond 10 % of 1,000
    await eng.on_leader_event(w.portfolio_id, rig.leader_trade("buy", "0.01", "48000"))
    with rig.sm() as s:
        stopped = s.get(Copy, w.copy_ids[0])
        assert stopped.status == "stopped" and "stop_loss" in stopped.stop_reason
        event = s.scalars(select(CopyStopEvent)).one()
        assert event.trigger == "stop_loss" and event.cumulative_pnl <= D("-100")
        closes = s.scalars(
            select(FollowerOrderIntent).where(FollowerOrderIntent.kind == "stop")
        ).all()
        assert [(c.copy_id, c.side, c.outcome) for c in closes] == [
            (w.copy_ids[0], "sell", "filled")
        ]
        assert s.get(Copy, w.copy_ids[1]).status == "active"
    assert rig.fake.accounts[w.copy_accounts[w.copy_ids[0]]].positions["BTCUSDT"] == 0
    # a stopped copy gets no further intents
    r = await eng.on_leader_event(w.portfolio_id, rig.leader_trade("buy", "0.1", "48000"))
    assert r.intents == 1


async def test_take_profit_and_daily_loss_pause_R_COPY_3_R_X_3(rig):
    w = rig.build(
        [
            {"allocation": "1000", "leverage": 10, "take_profit_pct": "5"},
            {"allocation": "1000", "leverage": 10, "daily_loss_limit": "50"},
        ]
    )
    eng = rig.engine()
    await eng.on_leader_event(w.portfolio_id, rig.leader_trade("buy", "1", "50000"))
    rig.fake.prices["BTCUSDT"] = D("49000")
    await eng.on_leader_event(
        w.portfolio_id, rig.leader_trade("sell", "1", "49000")
    )  # −100 realised
    with rig.sm() as s:
        assert s.get(Copy, w.copy_ids[1]).paused_until is not None
    rig.fake.prices["BTCUSDT"] = D("50000")
    r = await eng.on_leader_event(w.portfolio_id, rig.leader_trade("buy", "1", "50000"))
    with rig.sm() as s:
        paused = s.scalars(
            select(FollowerOrderIntent).where(
                FollowerOrderIntent.leader_fill_id == r.leader_fill_id,
                FollowerOrderIntent.copy_id == w.copy_ids[1],
            )
        ).one()
        assert paused.reason_code == "daily_loss_limit"
    rig.fake.prices["BTCUSDT"] = D(
        "51000"
    )  # copy 0: +0.1 × 1000 − fees ≥ 5 % of 1,000? no: 100 − ~20
    await eng.on_leader_event(w.portfolio_id, rig.leader_trade("buy", "0.01", "51000"))
    rig.fake.prices["BTCUSDT"] = D("53000")
    await eng.on_leader_event(w.portfolio_id, rig.leader_trade("buy", "0.01", "53000"))
    with rig.sm() as s:
        assert s.get(Copy, w.copy_ids[0]).status == "stopped"
        assert s.scalars(select(CopyStopEvent)).one().trigger == "take_profit"


async def test_manual_close_and_stop_copying_R_COPY_5(rig):
    w = rig.build([{"allocation": "1000", "leverage": 10}])
    eng = rig.engine()
    await eng.on_leader_event(w.portfolio_id, rig.leader_trade("buy", "1", "50000"))
    await eng.close_position(w.copy_ids[0], "BTCUSDT")
    assert rig.fake.accounts[w.copy_accounts[w.copy_ids[0]]].positions["BTCUSDT"] == 0
    await eng.stop_copy(w.copy_ids[0])
    with rig.sm() as s:
        assert s.scalars(select(CopyStopEvent)).one().trigger == "stop_copy"
        assert s.get(Copy, w.copy_ids[0]).status == "stopped"


async def test_resync_brings_a_drifted_copy_back_R_X_2(rig):
    w = rig.build([{"allocation": "1000", "leverage": 10}])
    eng = rig.engine()
    await eng.on_leader_event(w.portfolio_id, rig.leader_trade("buy", "1", "50000"))
    account = rig.fake.accounts[w.copy_accounts[w.copy_ids[0]]]
    account.positions["BTCUSDT"] = D("0.03")  # the follower closed most of it by hand
    intents = await resync(eng, w.copy_ids[0])
    assert [(i.kind, i.side) for i in intents] == [("resync", "buy")]
    assert account.positions["BTCUSDT"] == D("0.099")  # back to 1 × 999.x / 10,000, floored
    assert await resync(eng, w.copy_ids[0]) == []


async def test_restart_sends_persisted_intents_once_and_adopts_executed_ones_R_COPY_11(rig):
    w = rig.build([{"allocation": "1000", "leverage": 10}, {"allocation": "1000", "leverage": 10}])
    eng = rig.engine()
    accounts = [w.copy_accounts[c] for c in w.copy_ids]

    async def crash(intents):  # the process dies after persisting: copy 0's order got through
        gw = rig.gateway(accounts[0])
        it = next(i for i in intents if i.copy.account_id == accounts[0])
        await gw.place_order(order_request(it))
        raise SystemExit("killed")

    eng._send = crash
    with contextlib.suppress(SystemExit):
        await eng.on_leader_event(w.portfolio_id, rig.leader_trade("buy", "1", "50000"))
    # a new process: state from the database (the in-memory exchange holds no request in flight,
    # so an order not found is final at once)
    fresh = rig.engine(absent_after=0.0)
    report = await resolve_open_intents(fresh)
    assert (report.adopted, report.resent, report.still_unknown) == (1, 1, 0)
    assert rig.fake.duplicate_client_ids() == [] and len(rig.fake.order_log) == 2
    with rig.sm() as s:
        assert {i.outcome for i in s.scalars(select(FollowerOrderIntent))} == {"filled"}


async def _killed_before_sending(eng, portfolio_id: int, trade) -> None:
    """The engine persists the fill's intents, then dies before sending any (``kill -9``)."""

    async def crash(intents):
        raise SystemExit("killed")

    eng._send = crash
    with contextlib.suppress(SystemExit):
        await eng.on_leader_event(portfolio_id, trade)


async def test_stale_unsent_intents_are_closed_not_sent_after_restart_R_COPY_11(rig):
    w = rig.build([{"allocation": "1000", "leverage": 10}])
    eng = rig.engine(stale_after=0.0, absent_after=0.0)
    await _killed_before_sending(eng, w.portfolio_id, rig.leader_trade("buy", "1", "50000"))
    report = await resolve_open_intents(rig.engine(stale_after=0.0, absent_after=0.0))
    assert report.closed_not_sent == 1 and rig.fake.order_log == []
    with rig.sm() as s:
        assert s.scalars(select(FollowerOrderIntent)).one().reason_code == "not_sent"


async def test_a_stale_unsent_reduction_is_still_sent_after_restart_R_COPY_4_R_COPY_11(rig):
    """A reduction killed before it reached the exchange is sent however old it is: dropping it
    leaves the follower above its ratio for good, since later reductions are pro rata of what
    it holds (R-COPY-4). The fault campaign found followers ~11 % above ratio that way."""
    w = rig.build([{"allocation": "1000", "leverage": 10}])
    eng = rig.engine()
    await eng.on_leader_event(w.portfolio_id, rig.leader_trade("buy", "1", "50000"))  # 0.1 BTC
    account = rig.fake.accounts[w.copy_accounts[w.copy_ids[0]]]
    assert account.positions["BTCUSDT"] == D("0.1")
    await _killed_before_sending(eng, w.portfolio_id, rig.leader_trade("sell", "0.5", "50000"))
    report = await resolve_open_intents(rig.engine(stale_after=0.0, absent_after=0.0))
    assert (report.resent, report.closed_not_sent) == (1, 0)
    assert account.positions["BTCUSDT"] == D("0.05")  # half, as the leader
    with rig.sm() as s:
        intent = s.scalars(
            select(FollowerOrderIntent).where(FollowerOrderIntent.side == "sell")
        ).one()
        assert (intent.reduce_only, intent.outcome) == (True, "filled")


async def test_stream_drop_is_backfilled_and_duplicates_quarantined_R_IN_1(rig):
    w = rig.build([{"allocation": "1000", "leverage": 10}])
    eng = rig.engine()
    runner = EngineRunner(eng, sweep_every=0.05, heartbeat_every=60, reconnect_delay=0.01)
    task = asyncio.create_task(runner.run())
    await asyncio.wait_for(runner.ready.wait(), 5)
    await asyncio.sleep(0.1)
    lead = w.leader_account_id
    t1 = rig.fake.leader_trade(lead, "BTCUSDT", "buy", D("0.1"))
    rig.fake.publish(lead, t1)  # a duplicated event
    rig.fake.drop_stream(lead)
    rig.fake.leader_trade(lead, "BTCUSDT", "buy", D("0.2"), publish=False)  # missed while down
    for _ in range(100):
        await asyncio.sleep(0.02)
        with rig.sm() as s:
            if len(s.scalars(select(LeaderFill)).all()) == 2:
                break
    runner.stop()
    await task
    with rig.sm() as s:
        fills = s.scalars(select(LeaderFill).order_by(LeaderFill.id)).all()
        assert [(f.quantity, f.source) for f in fills] == [
            (D("0.1"), "stream"),
            (D("0.2"), "backfill"),
        ]
        assert [q.reason_code for q in s.scalars(select(QuarantinedEvent))] == ["duplicate"]
    report = await reconcile(eng)
    assert report.still_unknown == 0


async def test_an_order_not_found_is_not_resent_while_it_may_still_be_in_flight_R_COPY_11(rig):
    """A killed engine's request can still be held by the exchange (slow): absence is final
    only after the recvWindow, so the restart waits instead of sending a second order."""
    w = rig.build([{"allocation": "1000", "leverage": 10}])
    eng = rig.engine()
    await _killed_before_sending(eng, w.portfolio_id, rig.leader_trade("buy", "1", "50000"))
    report = await resolve_open_intents(rig.engine())  # absent_after: 12 s
    assert (report.resent, report.still_unknown) == (0, 1) and rig.fake.order_log == []
    report = await resolve_open_intents(rig.engine(absent_after=0.0))  # later: sent once
    assert report.resent == 1 and len(rig.fake.order_log) == 1
