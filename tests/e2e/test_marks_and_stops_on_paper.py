"""Marks, stop-loss on the mark and event settlement through the engine on the paper exchange
(unmodified ccxt over HTTP): the leader opens and goes idle, the mark falls, the copy with a
stop-loss is stopped at the first mark update, closed at market, flat on the exchange, and its
event settlement runs once with the recorded marks (R-SET-3, R-COPY-3, R-SET-5)."""

from __future__ import annotations

import asyncio
from decimal import Decimal as D

import pytest
from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

import models
from copytrade.db import make_engine
from copytrade.engine.core import CopyEngine
from copytrade.engine.runner import EngineRunner
from copytrade.engine.wiring import GatewayDirectory
from copytrade.exchange.factory import GatewayFactory
from copytrade.exchange.protocol import OrderRequest
from copytrade.settlement import RecordedMarks, SettlementService
from models import Copy, FollowerOrderIntent
from models.market import MarkPrice
from tests.support import paper_exchange as paper_testing
from tests.support.engine_world import make_paper_world

pytestmark = pytest.mark.slow
SYMBOL = "ONDOUSDT"


@pytest.fixture
def paper():
    with paper_testing.run_paper_exchange(start="2025-02-24T00:00:00Z", speed=0) as handle:
        yield handle


@pytest.fixture
def sm(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'engine.db'}")
    models.Base.metadata.create_all(engine)
    yield sessionmaker(engine, expire_on_commit=False)
    engine.dispose()


async def _until(check, tries: int = 300, pause: float = 0.1) -> bool:
    for _ in range(tries):
        if check():
            return True
        await asyncio.sleep(pause)
    return False


async def test_stop_loss_on_the_mark_closes_flat_and_settles_once_on_paper_R_COPY_3(paper, sm):
    pw = make_paper_world(
        sm,
        paper.admin,
        copies=[
            {"allocation": "1000", "leverage": 5, "stop_loss_pct": "5"},
            {"allocation": "1000", "leverage": 5},
        ],
    )
    directory = GatewayDirectory(sm, paper.base_url, secrets=pw.secrets, kinds=("futures",))
    await directory.start()
    engine = CopyEngine(sm, directory, directory.markets_by_kind)
    announced: list = []
    engine.on_stopped = lambda cid, why: announced.append((cid, why))
    runner = EngineRunner(engine, sweep_every=0.5, heartbeat_every=60, marks_every=0.5)
    task = asyncio.create_task(runner.run())
    bot_factory = GatewayFactory("futures", paper.base_url)
    await bot_factory.start()
    bot = bot_factory.gateway(pw.leader_key, pw.leader_secret, "leader-bot")
    stopped_id, kept_id = pw.world.copy_ids
    try:
        await asyncio.wait_for(runner.ready.wait(), 60)
        # the gateway port against Binance's premiumIndex on the paper exchange
        marks = await bot.fetch_marks([SYMBOL, "NOSUCHUSDT"])
        assert set(marks) == {SYMBOL} and marks[SYMBOL] > 0
        price = marks[SYMBOL]
        await bot.set_leverage(SYMBOL, 5)
        qty = (D("8000") / price).quantize(D("1"))  # copies: 800 USDT notional each
        await bot.place_order(OrderRequest(SYMBOL, "buy", qty, "lead-open-1"))

        def copied() -> bool:
            with sm() as s:
                rows = s.scalars(
                    select(FollowerOrderIntent).where(FollowerOrderIntent.kind == "copy")
                ).all()
            return len(rows) == 2 and all(r.outcome == "filled" for r in rows)

        assert await _until(copied)
        # the leader is idle; the mark falls 20 %: 800 × 20 % = −160 ≤ −50 (5 % of 1,000)
        fallen = (price * D("0.8")).quantize(D("0.0001"))
        paper.admin.set_price(SYMBOL, fallen, kind="futures")

        def stopped() -> bool:
            with sm() as s:
                return s.get(Copy, stopped_id).status == "stopped"

        assert await _until(stopped)
        assert await _until(lambda: bool(announced))
    finally:
        runner.stop()
        await task
    follower = directory(pw.world.copy_accounts[stopped_id])
    positions = {p.symbol: p.quantity for p in await follower.positions()}
    await bot_factory.close()
    await directory.close()
    assert positions.get(SYMBOL, D(0)) == 0  # flat on the exchange
    with sm() as s:
        copy = s.get(Copy, stopped_id)
        assert copy.stop_reason.startswith("stop_loss: ")
        assert s.get(Copy, kept_id).status == "active"
        close = s.scalars(
            select(FollowerOrderIntent).where(FollowerOrderIntent.kind == "stop")
        ).one()
        assert close.reduce_only and close.outcome == "filled"
        recorded = s.scalars(select(MarkPrice).where(MarkPrice.symbol == SYMBOL)).all()
        assert recorded and recorded[-1].price == fallen and recorded[-1].market == "usdm"
    assert announced == [(stopped_id, copy.stop_reason)]
    # the announced event settles once with the recorded marks; again pays nothing twice
    service = SettlementService(sm, gate=None, marks=RecordedMarks(sm))
    first = service.settle_event(stopped_id)
    again = service.settle_event(stopped_id)
    assert first.summary()["copies_settled"] == 1
    assert again.status == "already_completed" and again.shares_paid == 0


async def test_spot_marks_are_the_last_prices_on_paper_R_SET_3(paper):
    """Spot has no mark price: the gateway gives ticker/price's last price, listed symbols only."""
    account = paper.admin.create_account("spot-marks", spot={"USDT": "100"})
    factory = GatewayFactory("spot", paper.base_url)
    await factory.start()
    try:
        gateway = factory.gateway(account.api_key, account.api_secret, "spot-marks")
        marks = await gateway.fetch_marks(["ETHBTC", "NOSUCHPAIR"])
        last = await gateway.last_price("ETHBTC")
    finally:
        await factory.close()
    assert marks == {"ETHBTC": last}


async def test_funding_the_paper_exchange_charges_is_read_through_the_gateway_R_SET_2(paper):
    """A long XRPUSDT position over a funding time: the fee the paper exchange takes from the
    wallet (its journal) is the payment `/fapi/v1/income` reports, once."""
    account = paper.admin.create_account("funded", futures={"USDT": "10000"})
    factory = GatewayFactory("futures", paper.base_url)
    await factory.start()
    try:
        gateway = factory.gateway(account.api_key, account.api_secret, "funded")
        await gateway.place_order(OrderRequest("XRPUSDT", "buy", D("1000"), "fund-open-1"))
        paper.admin.set_clock(advance_seconds=9 * 3600)  # past the next 8-hourly funding
        await gateway.positions()  # any request lets the exchange settle funding
        payments = await gateway.funding_payments()
    finally:
        await factory.close()
    journal = [D(row[3]) for row in paper.admin.journal(account.account_id) if row[2] == "funding"]
    assert len(payments) == 1 and payments[0].symbol == "XRPUSDT"
    assert [p.amount for p in payments] == journal and journal[0] != 0
