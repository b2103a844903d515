"""Marks recorded by the running engine, risk on the mark while the leader is idle, stopped copies
closed until flat and announced for settlement (R-SET-3, R-COPY-3, R-COPY-5, R-SET-5)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

from sqlalchemy import select, update

from copytrade.domain.triggers import Trigger, trigger_of
from copytrade.engine import closing
from copytrade.engine.marks_feed import MarkFeed
from copytrade.engine.runner import EngineRunner
from copytrade.marks.store import Mark, record
from copytrade.settlement.marks import RecordedMarks
from models import Copy, CopyStopEvent, FollowerOrderIntent
from models.market import MarkPrice
from models.settlement import CopySettlementState


def _announced(eng) -> list:
    calls: list = []
    eng.on_stopped = lambda cid, why: calls.append((cid, why))
    return calls


async def test_stop_loss_fires_on_the_mark_while_the_leader_is_idle_R_COPY_3(rig):
    """0.1 BTC at 50,000 (fee 0.1 % = 5 USDT); the mark falls to 48,000 with no leader trade:
    result after fees = −200 − 5 = −205 ≤ −100 (10 % of 1,000): stopped at the first mark
    update, closed at market (reduce-only), announced once flat."""
    w = rig.build(
        [
            {"allocation": "1000", "leverage": 10, "stop_loss_pct": "10"},
            {"allocation": "1000", "leverage": 10},
        ]
    )
    eng = rig.engine()
    calls = _announced(eng)
    await eng.on_leader_event(w.portfolio_id, rig.leader_trade("buy", "1", "50000"))
    rig.fake.prices["BTCUSDT"] = D("48000")
    tick = await MarkFeed(eng).tick()
    assert tick.fetched == 1 and tick.recorded == 1
    stopped_id = w.copy_ids[0]
    with rig.sm() as s:
        copy = s.get(Copy, stopped_id)
        assert copy.status == "stopped" and trigger_of(copy.stop_reason) is Trigger.STOP_LOSS
        event = s.scalars(select(CopyStopEvent)).one()
        assert (event.cumulative_pnl, event.threshold) == (D("-205"), D("-100"))
        close = s.scalars(
            select(FollowerOrderIntent).where(FollowerOrderIntent.kind == "stop")
        ).one()
        assert (close.copy_id, close.side, close.reduce_only, close.outcome) == (
            stopped_id,
            "sell",
            True,
            "filled",
        )
        assert s.get(Copy, w.copy_ids[1]).status == "active"
        (mark,) = s.scalars(select(MarkPrice)).all()
        assert (mark.market, mark.symbol, mark.price) == ("usdm", "BTCUSDT", D("48000"))
    assert rig.fake.accounts[w.copy_accounts[stopped_id]].positions["BTCUSDT"] == 0
    assert calls == [(stopped_id, copy.stop_reason)] and not eng.closing


async def test_marks_are_one_row_per_symbol_and_minute_R_SET_3(rig):
    w = rig.build([{"allocation": "1000", "leverage": 10}])
    eng = rig.engine()
    await eng.on_leader_event(w.portfolio_id, rig.leader_trade("buy", "1", "50000"))
    feed = MarkFeed(eng)
    await feed.tick()
    rig.fake.prices["BTCUSDT"] = D("50100")
    await feed.tick()
    with rig.sm() as s:
        rows = s.scalars(select(MarkPrice)).all()
    # the same minute (unless the clock just turned): one row, corrected to the latest mark
    assert len(rows) in (1, 2) and rows[-1].price == D("50100")
    assert {r.marked_at.second for r in rows} == {0}


async def test_stop_loss_counts_the_shares_already_paid_R_COPY_3(rig):
    """Both copies: 0.1 BTC at 50,000, mark 49,250: −75 − 5 fee = −80 > −100. The copy that has
    paid its leader 30 USDT of shares is at −110 after shares and stops; the other does not."""
    w = rig.build(
        [
            {"allocation": "1000", "leverage": 10, "stop_loss_pct": "10"},
            {"allocation": "1000", "leverage": 10, "stop_loss_pct": "10"},
        ]
    )
    with rig.sm() as s, s.begin():
        s.add(CopySettlementState(copy_id=w.copy_ids[0], asset="USDT", share_paid=D("30")))
    eng = rig.engine()
    await eng.on_leader_event(w.portfolio_id, rig.leader_trade("buy", "1", "50000"))
    rig.fake.prices["BTCUSDT"] = D("49250")
    await MarkFeed(eng).tick()
    with rig.sm() as s:
        assert s.get(Copy, w.copy_ids[0]).status == "stopped"
        assert s.get(Copy, w.copy_ids[1]).status == "active"
        event = s.scalars(select(CopyStopEvent)).one()
        assert event.cumulative_pnl == D("-110")


async def test_a_copy_stopped_elsewhere_is_closed_and_announced_R_COPY_5(rig):
    """`copies stop` changes the database only: the running engine closes the copy's positions
    at its next reload and announces it, so the copy settles with no operator (R-SET-5)."""
    w = rig.build([{"allocation": "1000", "leverage": 10}, {"allocation": "1000", "leverage": 10}])
    eng = rig.engine()
    calls = _announced(eng)
    await eng.on_leader_event(w.portfolio_id, rig.leader_trade("buy", "1", "50000"))
    gone = w.copy_ids[1]
    with rig.sm() as s, s.begin():
        s.execute(
            update(Copy).where(Copy.id == gone).values(status="stopped", stop_reason="stop_copy")
        )
    ps = eng.portfolios[w.portfolio_id]
    await closing.reload(eng, ps)
    assert [c.copy_id for c in ps.copies] == [w.copy_ids[0]]
    assert rig.fake.accounts[w.copy_accounts[gone]].positions["BTCUSDT"] == 0
    assert calls == [(gone, "stop_copy")]
    await closing.reload(eng, ps)  # nothing more: announced once
    assert calls == [(gone, "stop_copy")]


async def test_a_rejected_close_keeps_the_copy_until_flat_R_COPY_5(rig):
    w = rig.build([{"allocation": "1000", "leverage": 10}])
    eng = rig.engine()
    calls = _announced(eng)
    await eng.on_leader_event(w.portfolio_id, rig.leader_trade("buy", "1", "50000"))
    cid = w.copy_ids[0]
    rig.fake.fail_next(w.copy_accounts[cid], "rejected")
    await eng.stop_copy(cid, "stop_copy")
    assert cid in eng.closing and calls == []
    await closing.retry(eng)
    assert rig.fake.accounts[w.copy_accounts[cid]].positions["BTCUSDT"] == 0
    assert not eng.closing and calls == [(cid, "stop_copy")]


def test_recorded_marks_are_fresh_or_say_why_not_R_SET_3(session_maker):
    at = datetime(2026, 1, 5, tzinfo=UTC)
    with session_maker() as s, s.begin():
        record(s, [Mark("BTCUSDT", "usdm", at - timedelta(minutes=2), D("61000.5"))])
        record(s, [Mark("ETHUSDT", "usdm", at - timedelta(hours=1), D("3000"))])
        record(s, [Mark("ONDOUSDT", "spot", at - timedelta(minutes=1), D("1.25"))])
    marks = RecordedMarks(session_maker)
    assert marks.mark_price("BTCUSDT", at) == D("61000.5")
    assert marks.mark_price("ONDOUSDT", at) == D("1.25")  # spot when USDⓈ-M has none
    assert marks.mark_price("ETHUSDT", at) is None
    assert "beyond the 0:05:00 freshness bound" in marks.why_missing("ETHUSDT", at)
    assert "no mark recorded" in marks.why_missing("SOLUSDT", at)


async def test_entry_slippage_compares_the_available_price_with_the_leader_fill_R_COPY_12(rig):
    """Leader buys at 50,000; the mark the followers meet is 50,300: 300 / 50,000 = 0.6 %.
    Default (futures BTC) 0.5 %: skipped, both prices recorded; a 1 % limit: sent. The leader's
    reduction at the same prices is never held back by the limit."""
    w = rig.build(
        [
            {"allocation": "1000", "leverage": 10},
            {"allocation": "1000", "leverage": 10, "slippage_limit_pct": "1"},
        ]
    )
    eng = rig.engine()
    eng.note_marks("futures", {"BTCUSDT": D("50300")})
    r = await eng.on_leader_event(w.portfolio_id, rig.leader_trade("buy", "1", "50000"))
    assert (r.sent, r.skipped) == (1, 1)
    with rig.sm() as s:
        skipped = s.scalars(
            select(FollowerOrderIntent).where(FollowerOrderIntent.outcome == "skipped")
        ).one()
    assert skipped.copy_id == w.copy_ids[0] and skipped.reason_code == "slippage_limit"
    assert skipped.reason.endswith("leader 50000, available 50300")
    eng.note_marks("futures", {"BTCUSDT": D("49000")})  # a sell meeting 2 % less: a reduction
    r = await eng.on_leader_event(w.portfolio_id, rig.leader_trade("sell", "0.5", "50000"))
    assert r.skipped == 1 and r.sent == 1  # copy 0 holds nothing to reduce; copy 1 reduces


async def test_a_mark_quoted_before_the_leaders_trade_on_the_exchange_clock_is_no_reference_R_COPY_12(
    rig,
):
    """The mark was fetched a moment ago, but the exchange quoted it 10 minutes before the
    leader's trade (a simulated clock jumped, or the feed stalled through a fast market): it is
    not the price the follower meets, so the leader's price is the reference and the order goes.
    A mark quoted within 30 s of the trade still holds the entry back."""
    w = rig.build([{"allocation": "1000", "leverage": 10}])
    eng = rig.engine()
    trade = rig.leader_trade("buy", "1", "50000")
    eng.note_marks("futures", {"BTCUSDT": D("50300")}, at=trade.traded_at - timedelta(minutes=10))
    r = await eng.on_leader_event(w.portfolio_id, trade)
    assert (r.sent, r.skipped) == (1, 0)
    trade = rig.leader_trade("buy", "1", "50000")
    eng.note_marks("futures", {"BTCUSDT": D("50300")}, at=trade.traded_at - timedelta(seconds=5))
    r = await eng.on_leader_event(w.portfolio_id, trade)
    assert (r.sent, r.skipped) == (0, 1)


async def test_spot_entry_slippage_default_is_0_3_percent_for_btc_R_COPY_12(spot_rig):
    """Spot: 50,000 → 50,200 is 0.4 %: beyond spot's 0.3 % BTC default (futures would send)."""
    w = spot_rig.build([{"allocation": "1000"}])
    eng = spot_rig.engine()
    eng.note_marks("spot", {"BTCUSDT": D("50200")})
    r = await eng.on_leader_event(w.portfolio_id, spot_rig.leader_trade("buy", "0.1", "50000"))
    assert (r.sent, r.skipped) == (0, 1)


async def _until(check, tries: int = 200) -> bool:
    for _ in range(tries):
        if check():
            return True
        await asyncio.sleep(0.02)
    return False


async def test_stop_loss_fires_right_after_a_restart_and_new_portfolios_are_followed_R_COPY_3(
    rig,
):
    """The mark moved while the engine was down: the first mark update after the start stops the
    copy, with no leader trade. A portfolio created while the engine runs is followed within a
    sweep, and its leader's fill is copied (R-COPY-2)."""
    w = rig.build([{"allocation": "1000", "leverage": 10, "stop_loss_pct": "10"}])
    first = rig.engine()
    await first.on_leader_event(w.portfolio_id, rig.leader_trade("buy", "1", "50000"))
    rig.fake.prices["BTCUSDT"] = D("48000")  # while no engine runs
    eng = rig.engine()
    calls = _announced(eng)
    runner = EngineRunner(eng, sweep_every=0.05, heartbeat_every=60, reconnect_delay=0.01)
    task = asyncio.create_task(runner.run())
    await asyncio.wait_for(runner.ready.wait(), 5)

    def stopped() -> bool:
        with rig.sm() as s:
            return s.get(Copy, w.copy_ids[0]).status == "stopped"

    assert await _until(stopped)
    assert await _until(lambda: calls == [(w.copy_ids[0], calls[0][1])] if calls else False)

    late = rig.build([{"allocation": "1000", "leverage": 10}])  # created while running
    assert await _until(lambda: late.portfolio_id in eng.portfolios)
    assert await _until(lambda: runner._started[late.portfolio_id].is_set())
    rig.fake.leader_trade(late.leader_account_id, "BTCUSDT", "buy", D("1"))

    def copied() -> bool:
        with rig.sm() as s:
            return (
                s.scalars(
                    select(FollowerOrderIntent).where(
                        FollowerOrderIntent.copy_id == late.copy_ids[0]
                    )
                ).first()
                is not None
            )

    assert await _until(copied)
    runner.stop()
    await task


async def test_a_leader_opening_above_5x_at_100k_aum_is_recorded_R_LEAD_8(rig):
    """Capital 100,000 + a 1,000 copy: AUM ≥ 100,000; the leader opens BTCUSDT at 10× on the
    exchange: one violation, recorded once for that opening (its trade id)."""
    from copytrade.engine import leader_leverage
    from copytrade.platform.leaders import leverage_recorder
    from models import LeaderLeverageViolation

    w = rig.build([{"allocation": "1000", "leverage": 3}], capital=D("100000"))
    rig.fake.account(w.leader_account_id).leverage["BTCUSDT"] = 10
    eng = rig.engine()
    eng.on_leader_opened = leverage_recorder(rig.sm)
    trade = rig.leader_trade("buy", "1", "50000")
    await eng.on_leader_event(w.portfolio_id, trade)
    await asyncio.gather(*leader_leverage._pending)
    await eng.on_leader_event(w.portfolio_id, rig.leader_trade("buy", "1", "50000"))  # adds
    await asyncio.gather(*leader_leverage._pending)
    with rig.sm() as s:
        (violation,) = s.scalars(select(LeaderLeverageViolation)).all()
    assert (violation.portfolio_id, violation.symbol, violation.leverage) == (
        w.portfolio_id,
        "BTCUSDT",
        10,
    )
    assert violation.exchange_ref == trade.trade_id


async def test_a_resting_orders_account_stream_wakes_the_sweep(rig):
    """An account with an acknowledged, unfinished order is followed on its user-data stream;
    an execution event on it wakes the sweep at once (which records the order's fills)."""
    from copytrade.engine.follower_streams import FollowerStreams

    w = rig.build([{"allocation": "1000", "leverage": 10}, {"allocation": "1000", "leverage": 10}])
    eng = rig.engine()
    await eng.on_leader_event(w.portfolio_id, rig.leader_trade("buy", "1", "50000"))
    resting = w.copy_ids[0]
    with rig.sm() as s, s.begin():
        s.execute(
            update(FollowerOrderIntent)
            .where(FollowerOrderIntent.copy_id == resting)
            .values(status="acked")
        )
    wake = asyncio.Event()
    streams = FollowerStreams(eng, wake)
    streams.follow_resting()
    account = w.copy_accounts[resting]
    assert set(streams.tasks) == {account}
    await asyncio.sleep(0)  # the stream subscribes
    rig.fake.publish(account, rig.fake.trades[(account, "BTCUSDT")][-1])
    await asyncio.wait_for(wake.wait(), 5)
    assert streams.events == 1
    await streams.close()


async def test_funding_fees_are_read_and_posted_once_per_payment_R_SET_2(rig):
    """The exchange charged copy 0 −1.25 USDT and paid it +0.40: both posted as `funding`
    transfers on the copy's cash (net −0.85), read twice and posted once."""
    from datetime import UTC, datetime

    from copytrade.engine.funding import FundingReader
    from copytrade.exchange.protocol import FundingPayment
    from copytrade.ledger import Ledger
    from copytrade.ledger.accounts import follower_cash
    from copytrade.settlement.funding import funding_by_copy, funding_poster

    w = rig.build([{"allocation": "1000", "leverage": 10}])
    eng = rig.engine()
    eng.on_funding = funding_poster(rig.sm)
    cid = w.copy_ids[0]
    at = datetime(2026, 1, 5, 8, tzinfo=UTC)
    rig.fake.funding[w.copy_accounts[cid]] = [
        FundingPayment("901", "BTCUSDT", "USDT", D("-1.25"), at),
        FundingPayment("902", "BTCUSDT", "USDT", D("0.40"), at.replace(hour=16)),
    ]
    with rig.sm() as s:
        before = Ledger(s).balance(follower_cash(cid), "USDT")
    reader = FundingReader(eng)
    assert await reader.read() == 2
    assert await reader.read() == 1  # the overlapping read returns the newest again: no repost
    with rig.sm() as s:
        assert funding_by_copy(s, {cid: "USDT"}, at.replace(hour=23)) == {cid: D("-0.85")}
        assert Ledger(s).balance(follower_cash(cid), "USDT") == before - D("0.85")
