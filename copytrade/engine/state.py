"""The engine's working state: lead portfolios, their active copies as sizing columns, positions.

Loaded from the database at start and after every change event (a copy joined, stopped or
changed settings); kept in memory between leader fills so sizing touches no database.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from copytrade import clock
from copytrade.domain.fills import PositionState
from copytrade.domain.markets import DEFAULT_TAKER_FEE, Market
from copytrade.domain.money import SCALE, UNIT, ZERO
from copytrade.domain.sizing import CopyBook, CopySettings
from copytrade.engine.history import derive_positions, open_gaps
from models import Copy, CopyPosition, ExchangeAccount, LeaderFill, LeaderWatermark, LeadPortfolio
from models.ledger import LedgerAccount
from models.trading import FollowerFill

AUM_LEVERAGE_CAP = Decimal(100_000)  # R-LEAD-8


def pct(value: Decimal | None) -> Decimal | None:
    """Return a percentage setting (20 means 20 %) as a fraction, or None."""
    return None if value is None else value / 100


@dataclass(slots=True)
class CopyState:
    """One active copy as the engine tracks it between fills."""

    copy_id: int
    account_id: int | None
    allocation: Decimal
    leverage: int
    kind: str  # spot | futures
    quote: str = "USDT"
    cash: Decimal = ZERO  # ledger balance of follower:<copy>:cash in the quote asset
    positions: dict[str, PositionState] = field(default_factory=dict)
    realised: Decimal = ZERO
    fees: Decimal = ZERO
    day: date | None = None
    day_pnl: Decimal = ZERO
    stop_loss: Decimal | None = None  # fraction of allocation (R-COPY-3)
    take_profit: Decimal | None = None
    position_tp: Decimal | None = None  # fraction of the position's margin/cost (R-COPY-12)
    position_sl: Decimal | None = None
    daily_loss_limit: Decimal | None = None  # quote amount (R-X-3)
    paused_until: datetime | None = None
    settings: CopySettings | None = None

    def position(self, symbol: str) -> PositionState:
        pos = self.positions.get(symbol)
        if pos is None:
            pos = self.positions[symbol] = PositionState()
        return pos

    def margin_used(self) -> Decimal:
        return sum(
            (abs(p.quantity) * p.average_price / self.leverage for p in self.positions.values()),
            ZERO,
        )

    def equity(self) -> Decimal:
        """Copy equity for ratio sizing: futures wallet, or spot cash plus holdings at cost."""
        if self.kind == "futures":
            return self.cash
        return self.cash + sum(
            (p.quantity * p.average_price for p in self.positions.values()), ZERO
        )

    def free(self) -> Decimal:
        """Cash an opening may use: spot cash, or futures wallet less the margin in use."""
        if self.kind == "futures":
            return max(self.cash - self.margin_used(), ZERO)
        return max(self.cash, ZERO)

    def marked_pnl(self, prices: dict[str, Decimal]) -> Decimal:
        """Cumulative PnL of the copy: realised − fees + unrealised at ``prices`` (R-COPY-3)."""
        unrealised = sum(
            (
                p.unrealised(prices[s])
                for s, p in self.positions.items()
                if p.quantity and s in prices
            ),
            ZERO,
        )
        return self.realised - self.fees + unrealised


@dataclass
class PortfolioState:
    """One lead portfolio: its leader's account and position, and its active copies."""

    portfolio_id: int
    mode: str
    capital: Decimal
    leader_account_id: int | None
    leader_realised: Decimal = ZERO
    leader_positions: dict[str, Decimal] = field(default_factory=dict)
    watermarks: dict[str, int] = field(default_factory=dict)
    baselines: dict[str, int] = field(default_factory=dict)  # trade ids at or below: history
    gaps: set[tuple[str, str | None]] = field(default_factory=set)  # open (kind, symbol), R-IN-3
    # Fills stored from a backfill or check whose stream event may still come: merged, not
    # quarantined as duplicates, when it does.
    not_yet_streamed: set[tuple[str, str]] = field(default_factory=set)
    known_ids: dict[str, set[str]] = field(default_factory=dict)
    copied_orders: set[str] = field(
        default_factory=set
    )  # leader orders already fixed-amount copied
    copies: list[CopyState] = field(default_factory=list)
    book: CopyBook | None = None
    copies_stale: bool = False  # a recording failed: reload the copies before the next fill
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def merge(self, source: str, event: object) -> bool:
        """Return whether a duplicate ``event`` is the same trade from a second source."""
        if source != "stream":
            return True
        key = (getattr(event, "symbol", None), getattr(event, "trade_id", None))
        if key in self.not_yet_streamed:
            self.not_yet_streamed.discard(key)
            return True
        return False

    @property
    def ingest_paused(self) -> bool:
        """Copying is close-only while the fill history is known incomplete (R-IN-3)."""
        return bool(self.gaps)

    @property
    def leader_equity(self) -> Decimal:
        return max(self.capital + self.leader_realised, UNIT)

    def aum(self) -> Decimal:
        return self.leader_equity + sum((c.equity() for c in self.copies), ZERO)

    def aum_capped(self) -> bool:
        return self.mode == "futures" and self.aum() >= AUM_LEVERAGE_CAP

    def rebuild_book(self, markets: dict[str, Market]) -> None:
        """Rebuild the sizing columns from the copies (after a change event)."""
        now = clock.now()
        settings = []
        for c in self.copies:
            s = c.settings
            s.equity = c.equity()
            s.cash = c.free()
            s.paused = bool(c.paused_until and c.paused_until > now)
            settings.append(s)
        book = CopyBook.build(settings)
        for symbol in {s for c in self.copies for s in c.positions} | set(markets):
            if any(symbol in c.positions for c in self.copies):
                book.position(symbol)[:] = [
                    _units(c.positions[symbol].quantity) if symbol in c.positions else 0
                    for c in self.copies
                ]
                book.accumulator(symbol)[:] = [
                    _units(c.positions[symbol].accumulated) if symbol in c.positions else 0
                    for c in self.copies
                ]
        self.book = book

    def refresh_copy(self, index: int) -> None:
        """Push one copy's cash, equity and positions into the sizing columns."""
        c, book = self.copies[index], self.book
        book.cash[index] = _units(c.free())
        book.equity[index] = _units(max(c.equity(), ZERO))  # sizing columns are non-negative
        for symbol, pos in c.positions.items():
            book.position(symbol)[index] = _units(pos.quantity)


def _units(value: Decimal) -> int:
    return int(value.scaleb(SCALE).to_integral_value(rounding="ROUND_DOWN"))


def load_portfolios(
    session: Session,
    markets_by_kind: dict[str, dict[str, Market]],
    only: Collection[int] | None = None,
    owns: Callable[[int], bool] | None = None,
) -> dict[int, PortfolioState]:
    """Load every active lead portfolio with a leader account (or ``only`` those; of this shard:
    ``owns``), and its copies."""
    query = select(LeadPortfolio).where(
        LeadPortfolio.status == "active", LeadPortfolio.exchange_account_id.is_not(None)
    )
    if only is not None:
        query = query.where(LeadPortfolio.id.in_(sorted(only)))
    portfolios = session.scalars(query).all()
    states: dict[int, PortfolioState] = {}
    for p in portfolios:
        if owns is not None and not owns(p.id):
            continue
        ps = PortfolioState(p.id, p.mode, p.capital, p.exchange_account_id)
        ps.leader_realised = sum(
            (
                r or ZERO
                for r in session.scalars(
                    select(LeaderFill.realised_pnl).where(LeaderFill.portfolio_id == p.id)
                )
            ),
            ZERO,
        )
        for wm in session.scalars(
            select(LeaderWatermark).where(LeaderWatermark.portfolio_id == p.id)
        ):
            ps.watermarks[wm.symbol] = wm.last_trade_id
        # The leader's position is what the stored fills give in trade-id order (R-IN-3), not a
        # running total that a lost or late fill would leave wrong for good.
        ps.leader_positions, ps.baselines = derive_positions(session, p.id, p.mode)
        ps.gaps = {(g.kind, g.symbol) for g in open_gaps(session, p.id)}
        ps.copied_orders = set(
            session.scalars(
                select(LeaderFill.exchange_order_id)
                .where(LeaderFill.portfolio_id == p.id, LeaderFill.exchange_order_id.is_not(None))
                .order_by(LeaderFill.id.desc())
                .limit(5000)
            )
        )
        states[p.id] = ps
    load_copies(session, states, markets_by_kind)
    return states


def load_copies(
    session: Session,
    states: dict[int, PortfolioState],
    markets_by_kind: dict[str, dict[str, Market]],
) -> None:
    """(Re)load the active copies of ``states`` with cash, positions and today's PnL."""
    if not states:
        return
    copies = session.scalars(
        select(Copy)
        .where(Copy.status == "active", Copy.portfolio_id.in_(list(states)))
        .order_by(Copy.id)
    ).all()
    ids = [c.id for c in copies]
    cash: dict[int, Decimal] = {}
    if ids:
        addresses = [f"follower:{i}:cash" for i in ids]
        for address, balance in session.execute(
            select(LedgerAccount.address, LedgerAccount.balance).where(
                LedgerAccount.address.in_(addresses), LedgerAccount.asset == "USDT"
            )
        ):
            cash[int(address.split(":")[1])] = balance
    positions: dict[int, dict[str, PositionState]] = {}
    for row in session.scalars(select(CopyPosition).where(CopyPosition.copy_id.in_(ids or [0]))):
        positions.setdefault(row.copy_id, {})[row.symbol] = PositionState(
            row.quantity, row.average_price, row.realised_pnl, row.fees_paid, row.accumulated
        )
    today = clock.now().date()
    start = datetime(today.year, today.month, today.day, tzinfo=UTC)
    day_pnl: dict[int, Decimal] = {}
    for copy_id, realised, fee in session.execute(
        select(FollowerFill.copy_id, FollowerFill.realised_pnl, FollowerFill.fee).where(
            FollowerFill.copy_id.in_(ids or [0]), FollowerFill.traded_at >= start
        )
    ):
        day_pnl[copy_id] = day_pnl.get(copy_id, ZERO) + (realised or ZERO) - (fee or ZERO)
    accounts = {
        a.id: a
        for a in session.scalars(
            select(ExchangeAccount).where(
                ExchangeAccount.id.in_(
                    [c.exchange_account_id for c in copies if c.exchange_account_id] or [0]
                )
            )
        )
    }
    for ps in states.values():
        ps.copies = []
    for c in copies:
        ps = states[c.portfolio_id]
        kind = ps.mode
        pos = positions.get(c.id, {})
        taker = DEFAULT_TAKER_FEE["futures" if kind == "futures" else "spot"]
        state = CopyState(
            copy_id=c.id,
            account_id=c.exchange_account_id,
            allocation=c.allocation,
            leverage=c.leverage if kind == "futures" else 1,
            kind=kind,
            cash=cash.get(c.id, ZERO),
            positions=pos,
            realised=sum((p.realised_pnl for p in pos.values()), ZERO),
            fees=sum((p.fees_paid for p in pos.values()), ZERO),
            day=today,
            day_pnl=day_pnl.get(c.id, ZERO),
            stop_loss=pct(c.stop_loss_pct),
            take_profit=pct(c.take_profit_pct),
            position_tp=pct(c.position_take_profit_pct),
            position_sl=pct(c.position_stop_loss_pct),
            daily_loss_limit=c.daily_loss_limit,
            paused_until=c.paused_until,
            settings=CopySettings(
                copy_id=c.id,
                equity=ZERO,
                cash=ZERO,
                ratio_mode=c.sizing_mode == "fixed_ratio",
                fixed_amount=c.fixed_amount or ZERO,
                max_cost=c.max_cost_per_order,
                slippage_limit=pct(c.slippage_limit_pct),
                leverage=c.leverage if kind == "futures" else 1,
                policy=c.below_min_policy,
                close_only=c.close_only,
                symbols=frozenset(c.symbols) if c.symbols is not None else None,
                taker_fee=taker,
            ),
        )
        if c.exchange_account_id and c.exchange_account_id in accounts:
            state.account_id = c.exchange_account_id
        ps.copies.append(state)
    for ps in states.values():
        ps.rebuild_book(markets_by_kind.get(ps.mode, {}))


def next_utc_midnight(now: datetime) -> datetime:
    return datetime(now.year, now.month, now.day, tzinfo=UTC) + timedelta(days=1)


def empty_mask(n: int) -> np.ndarray:
    return np.zeros(n, dtype=bool)


def copies_signature(session: Session, portfolio_id: int) -> int:
    """Return a hash of a portfolio's active copies and their settings (to skip needless reloads)."""
    rows = session.execute(
        select(
            Copy.id,
            Copy.allocation,
            Copy.sizing_mode,
            Copy.fixed_amount,
            Copy.below_min_policy,
            Copy.stop_loss_pct,
            Copy.take_profit_pct,
            Copy.max_cost_per_order,
            Copy.slippage_limit_pct,
            Copy.position_take_profit_pct,
            Copy.position_stop_loss_pct,
            Copy.leverage,
            Copy.symbols,
            Copy.daily_loss_limit,
            Copy.close_only,
            Copy.paused_until,
            Copy.exchange_account_id,
        )
        .where(Copy.portfolio_id == portfolio_id, Copy.status == "active")
        .order_by(Copy.id)
    ).all()
    return hash(tuple(tuple(tuple(v) if isinstance(v, list) else v for v in row) for row in rows))
