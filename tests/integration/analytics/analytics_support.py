"""Helpers for the warehouse tests: ledgers with hand-made leaders, and reading the warehouse."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import duckdb
import pandas as pd
from sqlalchemy import Engine, insert
from sqlalchemy.orm import Session

from copytrade.ledger import Ledger, Leg
from copytrade.ledger.accounts import external, follower_cash, leader_capital, person_spot
from models.platform import Copy, LeadPortfolio, Person
from models.trading import LeaderFill

D = Decimal


@dataclass(frozen=True)
class Fill:
    """A leader fill as a test writes it (realised PnL as the exchange would publish it)."""

    symbol: str
    side: str  # buy | sell
    position_side: str  # long | short
    price: Decimal
    quantity: Decimal
    at: datetime
    realised_pnl: Decimal = D(0)
    fee: Decimal = D(0)
    is_opening: bool = True


def utc(day: date, hour: int = 12, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)


def add_portfolio(
    session: Session,
    portfolio_id: int,
    *,
    capital: Decimal,
    created: datetime,
    nickname: str | None = None,
    is_listed: bool = True,
    follower_cap: int = 300,
    post_capital: bool = True,
) -> LeadPortfolio:
    """Create a person and a lead portfolio; post its capital into the ledger as a deposit."""
    session.add(Person(id=portfolio_id, handle=f"leader{portfolio_id}", created_at=created))
    session.flush()
    portfolio = LeadPortfolio(
        id=portfolio_id,
        leader_person_id=portfolio_id,
        mode="futures",
        nickname=nickname or f"leader-{portfolio_id}",
        profit_share_ratio=D("0.1"),
        capital=capital,
        follower_cap=follower_cap,
        is_listed=is_listed,
        offline_reason=None if is_listed else "imitates an advanced leader (R-LEAD-9)",
        agreement_accepted_at=created,
        created_at=created,
    )
    session.add(portfolio)
    session.flush()
    if post_capital:
        flow(session, portfolio_id, capital, created, key=f"cap-{portfolio_id}")
    return portfolio


def flow(session: Session, portfolio_id: int, amount: Decimal, at: datetime, key: str) -> None:
    """Post a deposit (amount > 0) or withdrawal (amount < 0) on the leader's capital account."""
    ledger = Ledger(session)
    if amount > 0:
        legs = [Leg(external(), "USDT", -amount), Leg(leader_capital(portfolio_id), "USDT", amount)]
        code = "deposit"
    else:
        legs = [
            Leg(leader_capital(portfolio_id), "USDT", amount),
            Leg(external("withdrawals"), "USDT", -amount),
        ]
        code = "withdrawal"
    ledger.transfer(key, code, legs, at=at)


def add_copy(
    session: Session, copy_id: int, portfolio_id: int, allocation: Decimal, started: datetime
) -> None:
    person_id = 10_000 + copy_id
    session.add(Person(id=person_id, handle=f"follower{copy_id}", created_at=started))
    session.flush()
    session.add(
        Copy(
            id=copy_id,
            portfolio_id=portfolio_id,
            follower_person_id=person_id,
            allocation=allocation,
            started_at=started,
        )
    )
    session.flush()
    ledger = Ledger(session)
    ledger.transfer(
        f"fund-{copy_id}",
        "deposit",
        [Leg(external(), "USDT", -allocation), Leg(person_spot(person_id), "USDT", allocation)],
        at=started,
    )
    ledger.transfer(
        f"alloc-{copy_id}",
        "copy_allocation",
        [
            Leg(person_spot(person_id), "USDT", -allocation),
            Leg(follower_cash(copy_id), "USDT", allocation),
        ],
        at=started,
    )


def add_fills(
    session: Session, portfolio_id: int, fills: Iterable[Fill], prefix: str = "t"
) -> None:
    rows = [
        {
            "portfolio_id": portfolio_id,
            "exchange_trade_id": f"{prefix}{portfolio_id}-{i}",
            "symbol": f.symbol,
            "side": f.side,
            "position_side": f.position_side,
            "price": f.price,
            "quantity": f.quantity,
            "fee": f.fee,
            "fee_asset": "USDT",
            "realised_pnl": f.realised_pnl,
            "traded_at": f.at,
            "is_opening": f.is_opening,
            "source": "import",
            "received_at": f.at,
        }
        for i, f in enumerate(fills)
    ]
    if rows:
        session.execute(insert(LeaderFill), rows)


def warehouse_frame(path, sql: str) -> pd.DataFrame:
    """Run ``sql`` on a DuckDB warehouse file; decimals come back as exact ``Decimal``, dates as ``date``."""
    con = duckdb.connect(str(path))
    try:
        return con.sql(sql).to_arrow_table().to_pandas()
    finally:
        con.close()


def engine_session(engine: Engine) -> Session:
    return Session(engine, expire_on_commit=False)


def day_range(first: date, days: int) -> list[date]:
    return [first + timedelta(days=i) for i in range(days)]
