"""Completeness of a lead portfolio's fill history against the exchange (R-IN-3).

Two things live here (the leader's position from the stored fills and the close-only gate are
in ``history``):

* known gaps (``ingest_gaps``): a backfill that keeps failing, fills found missing, a position
  that drifts from the exchange's. While a portfolio has an open gap its copying is close-only:
  openings are skipped with ``ingest_incomplete``, reductions are still followed;
* the trailing-window check: the exchange's trade list of each followed symbol, from the
  ``window`` newest stored fills on, against the stored fills (missing ones are ingested), and the
  leader's futures position on the exchange against the derived one.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from copytrade.domain.money import ZERO
from copytrade.engine.history import LIVE_SOURCES, derive_positions, open_gaps
from models import AuditEntry, LeaderFill, LeaderWatermark
from models.trading import IngestGap
from models.types import utcnow

if TYPE_CHECKING:
    from copytrade.engine.core import CopyEngine
    from copytrade.engine.state import PortfolioState

log = logging.getLogger(__name__)

# How far back the check compares: the exchange's trades after the WINDOW_FILLS-th newest stored
# fill of each symbol. Counted in fills, not hours, so it means the same on Binance and on the
# paper exchange, whose clock replays history.
WINDOW_FILLS = 1000
PAGE = 1000


class HistoryUnavailable(Exception):
    """The exchange's trade list of some symbols could not be read (retried by the caller)."""

    def __init__(self, symbols: list[str], cause: BaseException) -> None:
        super().__init__(f"trade list of {', '.join(symbols)} unavailable: {cause!r}")
        self.symbols = symbols
        self.cause = cause


@dataclass
class CheckReport:
    """What one completeness check of one portfolio found."""

    portfolio_id: int
    symbols: int = 0
    compared: int = 0  # exchange trades compared with the stored fills
    missing: list[str] = field(default_factory=list)  # symbol#id found missing and stored
    drift: list[str] = field(default_factory=list)  # unexplained position differences
    unverified: str | None = None  # why the check could not run to the end

    def as_dict(self) -> dict:
        return dict(self.__dict__)


# -- known gaps -------------------------------------------------------------------------------------


def open_gap(
    engine: CopyEngine, ps: PortfolioState, kind: str, symbol: str | None, detail: str
) -> None:
    """Record a gap (once per portfolio, kind and symbol) and put the portfolio close-only."""
    key = (kind, symbol)
    if key in ps.gaps:
        return
    log.warning("portfolio %s close-only: %s %s: %s", ps.portfolio_id, kind, symbol or "", detail)
    with engine.sf() as session, session.begin():
        exists = session.scalar(
            select(IngestGap.id).where(
                IngestGap.portfolio_id == ps.portfolio_id,
                IngestGap.kind == kind,
                IngestGap.symbol.is_(None) if symbol is None else IngestGap.symbol == symbol,
                IngestGap.resolved_at.is_(None),
            )
        )
        if exists is None:
            session.add(
                IngestGap(portfolio_id=ps.portfolio_id, symbol=symbol, kind=kind, detail=detail)
            )
            session.add(
                AuditEntry(
                    actor="system",
                    action="portfolio_close_only",
                    subject_type="lead_portfolio",
                    subject_id=str(ps.portfolio_id),
                    rule="R-IN-3",
                    reason=f"{kind} {symbol or ''}: {detail}"[:2000],
                )
            )
    ps.gaps.add(key)


def resolve_gaps(
    engine: CopyEngine, ps: PortfolioState, kind: str, resolution: str, symbol: str | None = None
) -> int:
    """Close the open gaps of ``kind`` (and ``symbol`` if given); copying resumes when none is left."""
    keys = {k for k in ps.gaps if k[0] == kind and (symbol is None or k[1] == symbol)}
    with engine.sf() as session, session.begin():
        query = update(IngestGap).where(
            IngestGap.portfolio_id == ps.portfolio_id,
            IngestGap.kind == kind,
            IngestGap.resolved_at.is_(None),
        )
        if symbol is not None:
            query = query.where(IngestGap.symbol == symbol)
        closed = session.execute(query.values(resolved_at=utcnow(), resolution=resolution)).rowcount
    ps.gaps -= keys
    if closed:
        log.warning(
            "portfolio %s: %d %s gap(s) resolved (%s)%s",
            ps.portfolio_id,
            closed,
            kind,
            resolution,
            "" if ps.gaps else "; copying resumes",
        )
    return closed


def record_found(engine: CopyEngine, ps: PortfolioState, symbol: str, ids: list[str]) -> None:
    """Record fills the check found missing below the watermark, stored at once (a closed gap)."""
    now = utcnow()
    with engine.sf() as session, session.begin():
        session.add(
            IngestGap(
                portfolio_id=ps.portfolio_id,
                symbol=symbol,
                kind="missing_fills",
                detail=f"{len(ids)} fill(s) on the exchange were not stored: "
                + ", ".join(f"#{i}" for i in ids[:50]),
                fills=len(ids),
                opened_at=now,
                resolved_at=now,
                resolution="backfilled by the completeness check",
            )
        )


@dataclass(frozen=True, slots=True)
class PortfolioIngest:
    """One lead portfolio's ingest state as the operator sees it (``copytrade engine status``)."""

    portfolio_id: int
    mode: str
    symbols: int
    fills: int
    gaps: list[str]


def ingest_status(session: Session) -> list[PortfolioIngest]:
    """Return the ingest state of every active lead portfolio with a leader account."""
    from sqlalchemy import func

    from models import LeadPortfolio

    out = []
    for p in session.scalars(
        select(LeadPortfolio)
        .where(LeadPortfolio.status == "active", LeadPortfolio.exchange_account_id.is_not(None))
        .order_by(LeadPortfolio.id)
    ):
        symbols = session.scalar(
            select(func.count())
            .select_from(LeaderWatermark)
            .where(LeaderWatermark.portfolio_id == p.id)
        )
        fills = session.scalar(
            select(func.count())
            .select_from(LeaderFill)
            .where(LeaderFill.portfolio_id == p.id, LeaderFill.source.in_(LIVE_SOURCES))
        )
        gaps = [
            f"{g.kind}{' ' + g.symbol if g.symbol else ''} since {g.opened_at:%Y-%m-%d %H:%M:%S}: "
            f"{g.detail}"
            for g in open_gaps(session, p.id)
        ]
        out.append(PortfolioIngest(p.id, p.mode, symbols or 0, fills or 0, gaps))
    return out


# -- reading the exchange ---------------------------------------------------------------------------


async def trades_from(gateway, symbol: str, start: int) -> list:
    """Return every trade of ``symbol`` with id ≥ ``start``, page by page (raises on failure)."""
    out = []
    while True:
        page = await gateway.my_trades(symbol, str(start), PAGE)
        page = [t for t in page if str(t.trade_id).isdigit() and int(t.trade_id) >= start]
        out.extend(page)
        if len(page) < PAGE:
            return out
        start = max(int(t.trade_id) for t in page) + 1


def window_start(session: Session, ps: PortfolioState, symbol: str, window: int) -> int:
    """Return the first trade id the check compares: after the ``window``-th newest stored fill."""
    ids = sorted(
        (
            int(t)
            for t in session.scalars(
                select(LeaderFill.exchange_trade_id).where(
                    LeaderFill.portfolio_id == ps.portfolio_id,
                    LeaderFill.symbol == symbol,
                    LeaderFill.source.in_(LIVE_SOURCES),
                )
            )
            if t.isdigit()
        ),
        reverse=True,
    )
    baseline = ps.baselines.get(symbol, 0)
    anchor = ids[window] if len(ids) > window else baseline
    return max(anchor, baseline) + 1


async def leader_positions(gateway, ps: PortfolioState) -> dict[str, Decimal] | None:
    """Return the leader's futures positions on the exchange (None for spot: not comparable)."""
    if ps.mode != "futures":
        return None
    return {p.symbol: p.quantity for p in await gateway.positions()}


# -- the check --------------------------------------------------------------------------------------


async def check_portfolio(
    engine: CopyEngine, ps: PortfolioState, window: int = WINDOW_FILLS
) -> CheckReport:
    """Compare a portfolio's stored fills and position with the exchange; fill gaps, flag drift."""
    report = CheckReport(ps.portfolio_id)
    gateway = engine.gateway_for(ps.leader_account_id)
    symbols = sorted(ps.watermarks)
    report.symbols = len(symbols)
    try:
        before = await leader_positions(gateway, ps)
        for symbol in symbols:
            await _compare_symbol(engine, ps, gateway, symbol, window, report)
        after = await leader_positions(gateway, ps)
    except Exception as exc:  # the exchange could not be read: try again at the next check
        report.unverified = f"exchange unavailable: {exc!r}"[:500]
        log.warning("completeness check of portfolio %s: %s", ps.portfolio_id, report.unverified)
        return report
    if before is None:
        return report
    if before != after:
        report.unverified = "the leader traded during the check; compared again next time"
        return report
    with engine.sf() as session:
        derived, _ = derive_positions(session, ps.portfolio_id, ps.mode)
    for symbol in symbols:
        theirs, ours = after.get(symbol, ZERO), derived.get(symbol, ZERO)
        if theirs != ours:
            text = (
                f"{symbol}: exchange {theirs.normalize():f}, stored fills give {ours.normalize():f}"
            )
            report.drift.append(text)
            open_gap(engine, ps, "position_drift", symbol, text)
        elif ("position_drift", symbol) in ps.gaps:
            resolve_gaps(engine, ps, "position_drift", "positions agree again", symbol)
    return report


async def _compare_symbol(engine, ps, gateway, symbol, window, report) -> None:
    with engine.sf() as session:
        start = window_start(session, ps, symbol, window)
        stored = set(
            session.scalars(
                select(LeaderFill.exchange_trade_id).where(
                    LeaderFill.portfolio_id == ps.portfolio_id, LeaderFill.symbol == symbol
                )
            )
        )
    trades = await trades_from(gateway, symbol, start)
    report.compared += len(trades)
    ps.known_ids.setdefault(symbol, set()).update(stored)
    top = max((int(i) for i in stored if i.isdigit()), default=0)
    missing = sorted((t for t in trades if t.trade_id not in stored), key=lambda t: int(t.trade_id))
    holes = [t.trade_id for t in missing if int(t.trade_id) < top]
    for trade in missing:
        result = await engine.on_leader_event(ps.portfolio_id, trade, "completeness")
        if not result.quarantined:
            report.missing.append(f"{symbol}#{trade.trade_id}")
    if holes:
        log.warning(
            "portfolio %s %s: %d fill(s) below the watermark were missing and are now stored",
            ps.portfolio_id,
            symbol,
            len(holes),
        )
        record_found(engine, ps, symbol, holes)


async def check_all(engine: CopyEngine, window: int = WINDOW_FILLS) -> list[CheckReport]:
    """Check every followed portfolio, one after the other."""
    out = []
    for ps in list(engine.portfolios.values()):
        if ps.leader_account_id is not None:
            out.append(await check_portfolio(engine, ps, window))
            await asyncio.sleep(0)
    return out
