"""Engine test rig: a funded world on the test database and an in-memory exchange."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from copytrade.config import get_settings
from copytrade.engine.core import CopyEngine
from tests.support.engine_world import load_reference_markets, make_world
from tests.support.fake_exchange import FakeExchange


class Rig:
    def __init__(self, session_maker, markets, mode="futures"):
        self.sm = session_maker
        self.markets = markets
        self.mode = mode
        self.fake = FakeExchange(
            {"BTCUSDT": D("50000"), "XRPUSDT": D("0.5"), "ETHUSDT": D("3000")}, kind=mode
        )
        self.world = None
        self._gateways = {}

    def build(self, copies, capital=D("10000")):
        with self.sm() as s, s.begin():
            self.world = make_world(s, mode=self.mode, capital=capital, copies=copies)
        return self.world

    def gateway(self, account_id):
        gw = self._gateways.get(account_id)
        if gw is None:
            gw = self._gateways[account_id] = self.fake.gateway(account_id)
        return gw

    def engine(self, **kw) -> CopyEngine:
        eng = CopyEngine(self.sm, self.gateway, self.markets, **kw)
        eng.load()
        return eng

    def leader_trade(self, side, qty, price=None, symbol="BTCUSDT", **kw):
        return self.fake.leader_trade(
            self.world.leader_account_id,
            symbol,
            side,
            D(qty),
            None if price is None else D(price),
            publish=False,
            **kw,
        )


@pytest.fixture(scope="session")
def reference_markets():
    data = get_settings().data_dir
    if not (data / "exchange").is_dir():
        pytest.skip(f"reference data folder {data} is absent (set COPYTRADE_DATA_DIR)")
    return load_reference_markets(data)


@pytest.fixture
def rig(session_maker, reference_markets):
    return Rig(session_maker, reference_markets)


@pytest.fixture
def spot_rig(session_maker, reference_markets):
    return Rig(session_maker, reference_markets, mode="spot")
