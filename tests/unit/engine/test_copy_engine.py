"""The copy engine against an in-memory exchange: one outcome per leader fill × copy, sizes,
fills into the ledger, faults resolved by client id, quarantine (R-COPY-*, R-FEE-*, R-IN-1)."""

from __future__ import annotations

from decimal import Decimal as D

from sqlalchemy import func, select

from copytrade.exchange.protocol import Trade
from copytrade.ledger import Ledger
from models import (
    CopyPosition,
    FollowerFill,
    FollowerOrder,
    FollowerOrderIntent,
    LeaderFill,
    QuarantinedEvent,
)


def outcomes(session_maker):
    with session_maker() as s:
        return {
            (r.leader_fill_id, r.copy_id, r.leg): (r.status, r.outcome, r.reason_code, r.quantity)
            for r in s.scalars(select(FollowerOrderIntent))
        }


async def test_every_copy_gets_exactly_one_outcome_with_hand_computed_sizes_R_COPY_7_R_COPY_1(rig):
    w = rig.build(
        [
            {"allocation": "1000"},  # ratio 1000/10000 × 0.1 BTC = 0.01 BTC
            {"allocation": "3333"},  # 0.1 × 0.3333 = 0.03333 → 0.033
            {"allocation": "5", "below_min_policy": "skip"},  # 0.00005 BTC < 0.001 minimum
            {
                "allocation": "2000",
                "sizing_mode": "fixed_amount",
                "fixed_amount": "600",
            },  # 600/50000 = 0.012
            {"allocation": "2000", "symbols": ["ETHUSDT"]},
        ]
    )
    eng = rig.engine()
    report = await eng.on_leader_event(w.portfolio_id, rig.leader_trade("buy", "0.1"))
    assert report.intents == 5 and report.sent == 3 and report.skipped == 2
    got = outcomes(rig.sm)
    fill_id = report.leader_fill_id
    assert [got[(fill_id, c, 0)] for c in w.copy_ids] == [
        ("done", "filled", "filled", D("0.01")),
        ("done", "filled", "filled", D("0.033")),
        ("done", "skipped", "below_minimum", D("0")),
        ("done", "filled", "filled", D("0.012")),
        ("done", "skipped", "symbol_not_allowed", D("0")),
    ]
    assert rig.fake.duplicate_client_ids() == []


async def test_follower_fill_records_fee_rebate_slippage_delay_and_ledger_R_COPY_8_R_FEE_1_R_FEE_2(
    rig,
):
    w = rig.build([{"allocation": "1000", "leverage": 5}])
    eng = rig.engine()
    trade = rig.leader_trade("buy", "0.5", "50000")
    rig.fake.prices["BTCUSDT"] = D("50100")  # the follower meets a worse price
    await eng.on_leader_event(w.portfolio_id, trade)
    with rig.sm() as s:
        fill = s.scalars(select(FollowerFill)).one()
        assert fill.price == D("50100") and fill.leader_price == D("50000")
        assert fill.slippage_bps == D("20")  # (50100 − 50000) / 50000 = 20 bps
        assert fill.fee == D("2.505")  # 0.05 × 50100 × 0.1 %
        assert fill.rebate == D("0.2505")
        assert fill.copy_delay_ms is not None and fill.copy_delay_ms >= 0
        ledger = Ledger(s)
        copy_id = w.copy_ids[0]
        assert ledger.balance(f"follower:{copy_id}:cash", "USDT") == D("997.495")
        assert ledger.balance(f"leader:{w.portfolio_id}:rebates", "USDT") == D("0.2505")
        assert ledger.balance("platform:fees", "USDT") == D("2.2545")
        assert ledger.verify_chain().ok


async def test_reductions_pro_rata_and_close_realise_pnl_R_COPY_4(rig):
    w = rig.build([{"allocation": "1000", "leverage": 10}, {"allocation": "2000", "leverage": 10}])
    eng = rig.engine()
    await eng.on_leader_event(w.portfolio_id, rig.leader_trade("buy", "1", "50000"))  # 0.1 / 0.2
    rig.fake.prices["BTCUSDT"] = D("51000")
    r = await eng.on_leader_event(w.portfolio_id, rig.leader_trade("sell", "0.25", "51000"))
    got = outcomes(rig.sm)
    assert [got[(r.leader_fill_id, c, 0)][3] for c in w.copy_ids] == [D("0.025"), D("0.05")]
    r = await eng.on_leader_event(w.portfolio_id, rig.leader_trade("sell", "0.75", "51000"))
    got = outcomes(rig.sm)
    assert [got[(r.leader_fill_id, c, 0)][3] for c in w.copy_ids] == [D("0.075"), D("0.15")]
    with rig.sm() as s:
        positions = {p.copy_id: p for p in s.scalars(select(CopyPosition))}
        assert positions[w.copy_ids[0]].quantity == 0
        assert positions[w.copy_ids[0]].realised_pnl == D("100")  # 0.1 × 1000
        closing = s.scalars(select(FollowerFill).where(FollowerFill.side == "sell")).all()
        assert sum(f.realised_pnl for f in closing) == D("300")
        intents = s.scalars(
            select(FollowerOrderIntent).where(FollowerOrderIntent.side == "sell")
        ).all()
        assert all(i.reduce_only for i in intents)


async def test_flip_through_zero_is_two_legs_R_COPY_4(rig):
    w = rig.build([{"allocation": "1000", "leverage": 10}])
    eng = rig.engine()
    await eng.on_leader_event(w.portfolio_id, rig.leader_trade("buy", "1", "50000"))
    r = await eng.on_leader_event(w.portfolio_id, rig.leader_trade("sell", "1.5", "50000"))
    got = outcomes(rig.sm)
    assert got[(r.leader_fill_id, w.copy_ids[0], 0)][3] == D("0.1")  # close the long
    assert got[(r.leader_fill_id, w.copy_ids[0], 1)][3] == D(
        "0.049"
    )  # open 0.5 short × 0.0999… equity
    assert rig.fake.accounts[w.copy_accounts[w.copy_ids[0]]].positions["BTCUSDT"] < 0


async def test_bad_events_are_quarantined_and_others_continue_R_IN_1(rig):
    w = rig.build([{"allocation": "1000"}])
    eng = rig.engine()
    good = rig.leader_trade("buy", "0.1")
    assert (await eng.on_leader_event(w.portfolio_id, good)).quarantined is None
    assert (await eng.on_leader_event(w.portfolio_id, good)).quarantined == "duplicate"
    assert (await eng.on_leader_event(w.portfolio_id, {"e": "garbage"})).quarantined == "malformed"
    unknown = Trade(
        "99",
        "1",
        None,
        "NOPEUSDT",
        "buy",
        D("1"),
        D("1"),
        D(0),
        "USDT",
        None,
        False,
        good.traded_at,
    )
    assert (await eng.on_leader_event(w.portfolio_id, unknown)).quarantined == "unknown_symbol"
    negative = Trade(
        "100",
        "1",
        None,
        "BTCUSDT",
        "buy",
        D("1"),
        D("-1"),
        D(0),
        "USDT",
        None,
        False,
        good.traded_at,
    )
    assert (await eng.on_leader_event(w.portfolio_id, negative)).quarantined == "malformed"
    old = Trade(
        "0", "1", None, "BTCUSDT", "buy", D("1"), D("1"), D(0), "USDT", None, False, good.traded_at
    )
    assert (await eng.on_leader_event(w.portfolio_id, old)).quarantined == "before_baseline"
    later = rig.leader_trade("buy", "0.1")
    assert (await eng.on_leader_event(w.portfolio_id, later)).quarantined is None
    with rig.sm() as s:
        reasons = sorted(q.reason_code for q in s.scalars(select(QuarantinedEvent)))
        assert reasons == [
            "before_baseline",
            "duplicate",
            "malformed",
            "malformed",
            "unknown_symbol",
        ]
        assert s.scalar(select(func.count()).select_from(LeaderFill)) == 2


async def test_unknown_outcome_after_execution_is_adopted_not_resent_R_COPY_11(rig):
    w = rig.build([{"allocation": "1000", "leverage": 5}] * 3)
    accounts = [w.copy_accounts[c] for c in w.copy_ids]
    rig.fake.fail_next(accounts[0], "unknown_after")
    rig.fake.fail_next(accounts[1], "unknown_before")
    rig.fake.fail_next(accounts[2], "rate_limited", "rate_limited")
    eng = rig.engine()
    r = await eng.on_leader_event(w.portfolio_id, rig.leader_trade("buy", "0.5"))
    got = outcomes(rig.sm)
    assert [got[(r.leader_fill_id, c, 0)][:2] for c in w.copy_ids] == [("done", "filled")] * 3
    assert rig.fake.duplicate_client_ids() == []
    assert len(rig.fake.order_log) == 3
    with rig.sm() as s:
        assert s.scalar(select(func.count()).select_from(FollowerOrder)) == 3
        assert s.scalar(select(func.count()).select_from(FollowerFill)) == 3


async def test_rejection_is_a_recorded_outcome_R_COPY_7(rig):
    w = rig.build([{"allocation": "1000"}])
    rig.fake.fail_next(w.copy_accounts[w.copy_ids[0]], "rejected")
    eng = rig.engine()
    r = await eng.on_leader_event(w.portfolio_id, rig.leader_trade("buy", "0.5"))
    assert outcomes(rig.sm)[(r.leader_fill_id, w.copy_ids[0], 0)][:3] == (
        "done",
        "rejected",
        "insufficient_funds",
    )


async def test_partial_leader_fills_are_copied_as_they_happen_R_COPY_10(rig):
    w = rig.build([{"allocation": "1000", "leverage": 5}])
    eng = rig.engine()
    for qty in ("0.2", "0.3"):
        await eng.on_leader_event(w.portfolio_id, rig.leader_trade("buy", qty, order_id="L1"))
    got = sorted(v[3] for v in outcomes(rig.sm).values())
    # the second part sees the equity after the first part's 1 USDT fee: 0.3 × 999 / 10,000
    assert got == [D("0.02"), D("0.029")]
    assert rig.fake.accounts[w.copy_accounts[w.copy_ids[0]]].positions["BTCUSDT"] == D("0.049")


async def test_leverage_cap_once_aum_reaches_100k_R_LEAD_8(rig):
    w = rig.build(
        [{"allocation": "1000", "leverage": 5}, {"allocation": "1000", "leverage": 6}],
        capital=D("99000"),
    )
    eng = rig.engine()
    r = await eng.on_leader_event(w.portfolio_id, rig.leader_trade("buy", "10"))
    got = outcomes(rig.sm)
    assert [got[(r.leader_fill_id, c, 0)][2] for c in w.copy_ids] == ["filled", "leverage_cap"]


async def test_spot_fill_postings_and_average_cost_pnl(spot_rig):
    rig = spot_rig
    w = rig.build([{"allocation": "1000"}])
    eng = rig.engine()
    await eng.on_leader_event(w.portfolio_id, rig.leader_trade("buy", "0.1", "50000"))  # 0.01 BTC
    rig.fake.prices["BTCUSDT"] = D("55000")
    await eng.on_leader_event(w.portfolio_id, rig.leader_trade("sell", "0.1", "55000"))
    with rig.sm() as s:
        ledger = Ledger(s)
        c = w.copy_ids[0]
        assert ledger.balance(f"follower:{c}:cash", "BTC") == 0
        # 1000 − 500 − 0.5 fee + 550 − 0.55 fee
        assert ledger.balance(f"follower:{c}:cash", "USDT") == D("1048.95")
        sell = s.scalars(select(FollowerFill).where(FollowerFill.side == "sell")).one()
        assert sell.realised_pnl == D("50")
