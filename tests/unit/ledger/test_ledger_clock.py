"""Transfers take their time from the platform clock (``copytrade.clock``): a simulated clock (the
demo's replay of 2025 trades) dates them on the simulated day, and the chain still covers the
time (R-X-4)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

from sqlalchemy import select

from copytrade import clock
from copytrade.ledger import Ledger, Leg, TransferSpec
from models import LedgerTransfer

SIM = datetime(2025, 2, 24, 3, 17, 7, tzinfo=UTC)


def deposit(key: str, amount: str) -> TransferSpec:
    return TransferSpec(
        key=key,
        code="deposit",
        legs=(
            Leg("external:deposits", "USDT", -D(amount)),
            Leg("person:1:spot", "USDT", D(amount)),
        ),
    )


def test_transfers_carry_the_simulated_time_and_chain_R_X_4(session, engine, tamper):
    now = [SIM]
    with clock.simulated(lambda: now[0]), session.begin():
        ledger = Ledger(session)
        ledger.post(deposit("d1", "10"))
        now[0] = SIM + timedelta(days=1)
        ledger.post_many([deposit("d2", "5")])
    with session.begin():
        Ledger(session).post(deposit("d3", "1"))  # the wall clock again
    with session.begin():
        times = session.scalars(select(LedgerTransfer.created_at).order_by(LedgerTransfer.seq))
        first, second, third = list(times)
    assert first == SIM and second == SIM + timedelta(days=1)
    assert abs(third - datetime.now(UTC)) < timedelta(minutes=5)
    with session.begin():
        assert Ledger(session).verify_chain().ok
    # The time is part of the chained hash: moving a transfer to another day is detected.
    tamper(
        engine,
        "ledger_transfers",
        "update ledger_transfers set created_at = '2025-03-01 00:00:00.000000' where seq = 1",
    )
    with session.begin():
        report = Ledger(session).verify_chain()
    assert not report.ok and report.first_broken_seq == 1
