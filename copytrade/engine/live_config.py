"""Changes made while the engine runs reach it within a sweep (every few seconds, R-COPY-2/5).

The sweep (``runner``) polls the database, on SQLite and PostgreSQL alike: a cheap signature of
each portfolio's copies (``state.copies_signature``: count, ids, last update) reloads a portfolio
whose copies joined, changed settings or stopped (a stopped one is closed by ``closing``); the
ids of the active lead portfolios with a leader account show a new portfolio, which is loaded
and followed from then on (baseline, backfill, stream, as at a start). Polling costs one small
query per portfolio per sweep; LISTEN/NOTIFY would save it on PostgreSQL but needs a connection
per engine held open, and SQLite has nothing like it, so one mechanism serves both.
"""

from __future__ import annotations

from sqlalchemy import select

from copytrade.engine.state import copies_signature, load_portfolios
from models import LeadPortfolio


def new_portfolio_ids(engine) -> list[int]:
    """Active lead portfolios with a leader account that the engine does not follow yet."""
    with engine.sf() as session:
        ids = session.scalars(
            select(LeadPortfolio.id).where(
                LeadPortfolio.status == "active", LeadPortfolio.exchange_account_id.is_not(None)
            )
        ).all()
    return sorted(pid for pid in set(ids) - set(engine.portfolios) if engine.owns(pid))  # shard


def add_new_portfolios(engine) -> list[int]:
    """Load the portfolios created since the start into the engine; return their ids."""
    new = new_portfolio_ids(engine)
    if not new:
        return []
    with engine.sf() as session:
        states = load_portfolios(session, engine.markets_by_kind, only=new)
        for pid in states:
            engine._copies_signature[pid] = copies_signature(session, pid)
    engine.portfolios.update(states)
    return sorted(states)
