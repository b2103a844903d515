"""Fixtures of the settlement tests: a scenario builder and services gated by the real checkpoint."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from decimal import Decimal

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from copytrade.ledger import Ledger
from copytrade.settlement import SettlementService, ledger_integrity_gate
from models import LedgerTransfer, SettlementPayout
from tests.support.settlement import Scenario


@pytest.fixture
def build(session_maker: sessionmaker[Session]) -> Iterator[Callable]:
    """Yield ``build(fn)``: run ``fn(scenario)`` in one committed transaction, return its result.

    The scenario (its id counter and positions) lives across calls; each call has its own session.
    """
    scenario = Scenario(session=None)

    def run(fn):
        with session_maker() as session, session.begin():
            scenario.session = session
            return fn(scenario)

    yield run


@pytest.fixture
def service(session_maker, db_url) -> Callable[..., SettlementService]:
    """Return a factory of services gated by the real ``ledger_integrity`` checkpoint."""

    def make(**kwargs) -> SettlementService:
        kwargs.setdefault("gate", ledger_integrity_gate(db_url))
        return SettlementService(session_maker, **kwargs)

    return make


class View:
    """Read what settlement wrote, each read in its own session."""

    def __init__(self, session_maker: sessionmaker[Session]) -> None:
        self.session_maker = session_maker

    def payouts(self, **where) -> list[SettlementPayout]:
        with self.session_maker() as session:
            query = select(SettlementPayout).order_by(SettlementPayout.id)
            for column, value in where.items():
                query = query.where(getattr(SettlementPayout, column) == value)
            return list(session.scalars(query))

    def shares(self, copy_id: int) -> list[SettlementPayout]:
        return self.payouts(copy_id=copy_id, kind="profit_share")

    def rebates(self, copy_id: int) -> list[Decimal]:
        return [p.amount for p in self.payouts(copy_id=copy_id, kind="rebate")]

    def balance(self, address: str, asset: str = "USDT") -> Decimal:
        with self.session_maker() as session:
            return Ledger(session).balance(address, asset)

    def transfers(self) -> int:
        with self.session_maker() as session:
            return session.scalar(select(func.count()).select_from(LedgerTransfer))


@pytest.fixture
def view(session_maker) -> View:
    return View(session_maker)


@pytest.fixture(scope="session")
def prefect_harness():
    """One Prefect test server for the whole session (it takes seconds to start)."""
    from prefect.testing.utilities import prefect_test_harness

    # A loaded 2-core machine can take well over the default 30 s to start the ephemeral server.
    with prefect_test_harness(server_startup_timeout=180):
        yield
