"""Helpers for platform service tests (run on SQLite and PostgreSQL through the ``session`` fixture)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from copytrade.domain.errors import RuleViolation
from copytrade.domain.leaders import LeaderApplication
from copytrade.ledger import Ledger
from copytrade.platform import leaders, wallets
from models import AuditEntry, CapacityRequest, Copy, LeadPortfolio, LedgerTransfer, Person


def snapshot(session: Session) -> dict:
    """Row counts and balances: what a refusal must leave untouched."""
    counts = {
        model.__tablename__: session.scalar(select(func.count()).select_from(model))
        for model in (Person, LeadPortfolio, Copy, CapacityRequest, AuditEntry, LedgerTransfer)
    }
    balances = {(b.address, b.asset): b.amount for b in Ledger(session).balances()}
    states = session.execute(
        select(Copy.id, Copy.status, LeadPortfolio.id, LeadPortfolio.status).outerjoin(
            LeadPortfolio, LeadPortfolio.id == Copy.portfolio_id
        )
    ).all()
    return {"counts": counts, "balances": balances, "states": sorted(map(tuple, states))}


def fund(session: Session, handle: str, amount: str) -> None:
    with session.begin():
        wallets.deposit(session, handle, amount, key=f"fund-{handle}-{amount}")


def open_portfolio(
    session: Session,
    handle: str,
    mode: str = "spot",
    capital: str = "1000",
    nickname: str | None = None,
    **kw,
) -> LeadPortfolio:
    fund(session, handle, capital)
    with session.begin():
        portfolio = leaders.apply(
            session,
            handle,
            LeaderApplication(
                mode, nickname or f"{handle.title()}Trades", "steady trading", capital, True, **kw
            ),
        )
        session.refresh(portfolio)
        session.expunge(portfolio)  # keep its attributes readable outside transactions
    return portfolio


def refused_unchanged(session: Session, fn, *args, **kwargs) -> RuleViolation:
    """Call a service in a transaction, expect a refusal, and check that nothing changed."""
    if session.in_transaction():  # reading an expired attribute began one; nothing is pending
        session.rollback()
    with session.begin():
        before = snapshot(session)
    with pytest.raises(RuleViolation) as err, session.begin():
        fn(session, *args, **kwargs)
    with session.begin():
        assert snapshot(session) == before
    return err.value


__all__ = ["Decimal", "fund", "open_portfolio", "refused_unchanged", "snapshot"]
