"""Read what settlement needs for a batch of copies in a handful of set-based queries.

Per batch: the copies with their portfolios (locked, so a concurrent settlement of the same copy
waits), their carried state, their fills aggregated in SQL up to the cycle's instant, the fills of
open futures positions (marked in Python: exact notional products overflow BIGINT in SQL), and the
follower balances. Nothing here is a query per copy.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from sqlalchemy import and_, case, exists, func, or_, select
from sqlalchemy.orm import Session

from copytrade.domain.money import ZERO, from_units
from copytrade.domain.settlement import FUTURES, fee_in_settlement_asset
from copytrade.ledger.accounts import follower_cash
from copytrade.ledger.rawsql import Raw
from copytrade.settlement.decide import CopyFacts
from copytrade.settlement.funding import funding_by_copy
from copytrade.settlement.marks import MarkedPnl, MarkPrices, SymbolBook, mark_books
from copytrade.settlement.sqlutil import chunks, raw_units
from models.platform import Copy, LeadPortfolio
from models.settlement import CopySettlementState, SettlementPayout
from models.trading import FollowerFill


@dataclass(frozen=True, slots=True)
class CopyRow:
    """A copy and its portfolio's settlement terms."""

    copy_id: int
    portfolio_id: int
    follower_person_id: int
    status: str
    stop_reason: str | None
    mode: str
    ratio: Decimal
    leader_person_id: int
    asset: str


@dataclass(slots=True)
class StateRow:
    share_paid: Decimal = ZERO
    peak_profit: Decimal = ZERO
    outstanding: Decimal = ZERO
    rebate_paid: Decimal = ZERO
    final_cycle_id: int | None = None
    cash_released_at: datetime | None = None
    exists: bool = False


@dataclass(slots=True)
class Batch:
    """The facts of one batch of copies, and the rows they came from."""

    facts: dict[int, CopyFacts] = field(default_factory=dict)
    copies: dict[int, CopyRow] = field(default_factory=dict)
    states: dict[tuple[int, str], StateRow] = field(default_factory=dict)
    cash: dict[int, dict[str, Decimal]] = field(default_factory=dict)  # every asset of the copy
    open_positions: dict[int, tuple[str, ...]] = field(default_factory=dict)  # futures, net ≠ 0
    books: dict[int, dict[str, SymbolBook]] = field(default_factory=dict)  # open positions' fills


class MarkCache:
    """Ask the mark provider once per symbol and instant within a run."""

    def __init__(self, marks: MarkPrices) -> None:
        self.marks = marks
        self._seen: dict[tuple[str, datetime], Decimal | None] = {}

    def mark_price(self, symbol: str, at: datetime) -> Decimal | None:
        key = (symbol, at)
        if key not in self._seen:
            self._seen[key] = self.marks.mark_price(symbol, at)
        return self._seen[key]

    def why_missing(self, symbol: str, at: datetime) -> str | None:
        why = getattr(self.marks, "why_missing", None)
        return why(symbol, at) if why else None


def weekly_candidates(session: Session, cycle_id: int, as_of: datetime) -> list[int]:
    """Return the copies the weekly cycle still has to settle, by id.

    In scope: active copies, stopped copies whose final settlement has not run, stopped copies
    still carrying a paused or deferred share (R-SET-7) or whose cash has not gone back to the
    follower yet. Out: copies started after the cycle's instant, and copies this cycle already
    settled (a resumed run skips them, R-SET-9).
    """
    state = CopySettlementState
    done = exists().where(
        SettlementPayout.cycle_id == cycle_id, SettlementPayout.copy_id == Copy.id
    )
    query = (
        select(Copy.id)
        .join(LeadPortfolio, LeadPortfolio.id == Copy.portfolio_id)
        .outerjoin(
            state, and_(state.copy_id == Copy.id, state.asset == LeadPortfolio.capital_asset)
        )
        .where(
            Copy.started_at <= as_of,
            or_(
                Copy.status == "active",
                state.copy_id.is_(None),
                state.final_cycle_id.is_(None),
                raw_units(state.outstanding) > 0,
                state.cash_released_at.is_(None),
            ),
            ~done,
        )
        .order_by(Copy.id)
    )
    return list(session.scalars(query))


def settled_in(session: Session, cycle_ids: Sequence[int]) -> set[int]:
    """Return the copies that already have a payout row in any of ``cycle_ids``."""
    out: set[int] = set()
    for chunk in chunks(list(cycle_ids)):
        out.update(
            session.scalars(
                select(SettlementPayout.copy_id)
                .where(SettlementPayout.cycle_id.in_(chunk))
                .distinct()
            )
        )
    return out


def load_batch(
    session: Session,
    copy_ids: Sequence[int],
    as_of: datetime,
    marks: MarkCache,
    *,
    lock: bool = True,
    mark_spot: bool = False,
) -> Batch:
    """Read the facts of ``copy_ids`` (sorted) at ``as_of``, locking their copy rows (``lock``).

    ``mark_spot`` also marks open spot positions (for a copy's statement and its stop-loss;
    settlement itself ignores spot unrealised PnL, R-SET-2).
    """
    wanted = set(copy_ids)
    lo, hi = copy_ids[0], copy_ids[-1]
    batch = Batch()

    # Core results (``connection().execute``): no ORM row machinery for tens of thousands of rows.
    connection = session.connection()
    copy_query = (
        select(
            Copy.id,
            Copy.portfolio_id,
            Copy.follower_person_id,
            Copy.status,
            Copy.stop_reason,
            LeadPortfolio.mode,
            LeadPortfolio.profit_share_ratio,
            LeadPortfolio.leader_person_id,
            LeadPortfolio.capital_asset,
        )
        .join(LeadPortfolio, LeadPortfolio.id == Copy.portfolio_id)
        .where(Copy.id >= lo, Copy.id <= hi)
        .order_by(Copy.id)
    )
    if lock:
        copy_query = copy_query.with_for_update(of=Copy)
    for row in connection.execute(copy_query):
        if row[0] in wanted:
            batch.copies[row[0]] = CopyRow(*row)

    st = CopySettlementState
    for copy_id, asset, *values in connection.execute(
        select(
            st.copy_id,
            st.asset,
            st.share_paid,
            st.peak_profit,
            st.outstanding,
            st.rebate_paid,
            st.final_cycle_id,
            st.cash_released_at,
        ).where(st.copy_id >= lo, st.copy_id <= hi)
    ):
        if copy_id in wanted:
            batch.states[(copy_id, asset)] = StateRow(*values, exists=True)

    # Fills summed per copy, symbol and fee asset, in SQL (exact integer sums).
    ff = FollowerFill.__table__
    qty = raw_units(ff.c.quantity)
    signed_qty = case((ff.c.side == "buy", qty), else_=-qty)
    realised: dict[int, int] = defaultdict(int)
    fees: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    rebates: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    net: dict[tuple[int, str], int] = defaultdict(int)
    fee_assets: dict[int, set[str]] = defaultdict(set)  # assets of fees > 0, per copy
    for (
        copy_id,
        symbol,
        fee_asset,
        s_realised,
        s_fee,
        s_rebate,
        s_qty,
        max_fee,
    ) in connection.execute(
        select(
            ff.c.copy_id,
            ff.c.symbol,
            ff.c.fee_asset,
            func.sum(func.coalesce(raw_units(ff.c.realised_pnl), 0)),
            func.sum(raw_units(ff.c.fee)),
            func.sum(raw_units(ff.c.rebate)),
            func.sum(signed_qty),
            func.max(raw_units(ff.c.fee)),
        )
        .where(ff.c.copy_id >= lo, ff.c.copy_id <= hi, ff.c.traded_at <= as_of)
        .group_by(ff.c.copy_id, ff.c.symbol, ff.c.fee_asset)
    ):
        if copy_id not in wanted:
            continue
        if max_fee is not None and max_fee > 0:
            fee_assets[copy_id].add(fee_asset)
        realised[copy_id] += int(s_realised or 0)
        fees[copy_id][fee_asset] += int(s_fee or 0)
        rebates[copy_id][fee_asset] += int(s_rebate or 0)
        net[(copy_id, symbol)] += int(s_qty or 0)

    open_symbols: dict[int, list[str]] = defaultdict(list)
    for (copy_id, symbol), qty in sorted(net.items()):
        if qty and batch.copies.get(copy_id) and batch.copies[copy_id].mode == FUTURES:
            open_symbols[copy_id].append(symbol)
    batch.open_positions = {cid: tuple(symbols) for cid, symbols in open_symbols.items()}
    to_mark = set(open_symbols)
    if mark_spot:
        to_mark |= {cid for (cid, _), qty in net.items() if qty and cid in batch.copies}
    marked, batch.books = _mark_open_positions(session, sorted(to_mark), as_of, marks)

    batch.cash = _follower_cash(session, batch.copies.values())
    assets = {copy_id: row.asset for copy_id, row in batch.copies.items()}
    # Only the copies with a fee > 0 in an asset that is none of the batch's settlement assets
    # (the fills that query would find): most copies pay every fee in their settlement asset.
    settlement_assets = set(assets.values())
    valued_fees = _fees_in_other_assets(
        session,
        assets,
        as_of,
        [cid for cid in sorted(assets) if fee_assets.get(cid, set()) - settlement_assets],
    )
    funding = funding_by_copy(session, assets, as_of)

    paid_rebates: dict[int, dict[str, Decimal]] = defaultdict(dict)
    for (copy_id, asset), state in batch.states.items():
        paid_rebates[copy_id][asset] = state.rebate_paid
    for copy_id, row in batch.copies.items():
        state = batch.states.get((copy_id, row.asset), StateRow())
        pnl = marked.get(copy_id, MarkedPnl(ZERO))
        paid = paid_rebates.get(copy_id, {})
        accrued = rebates.get(copy_id, {})
        due = {asset: from_units(units) - paid.get(asset, ZERO) for asset, units in accrued.items()}
        batch.facts[copy_id] = CopyFacts(
            copy_id=copy_id,
            portfolio_id=row.portfolio_id,
            leader_person_id=row.leader_person_id,
            mode=row.mode,
            ratio=row.ratio,
            asset=row.asset,
            realised=from_units(realised.get(copy_id, 0)),
            fees=from_units(fees.get(copy_id, {}).get(row.asset, 0))
            + valued_fees.get(copy_id, ZERO),
            funding=funding.get(copy_id, ZERO),
            unrealised=pnl.unrealised if pnl.unrealised is not None else ZERO,
            missing_marks=pnl.missing,
            share_paid=state.share_paid,
            peak_profit=state.peak_profit,
            balance=batch.cash.get(copy_id, {}).get(row.asset, ZERO),
            rebates_due=due,
        )
    return batch


def _mark_open_positions(
    session: Session, copy_ids: list[int], as_of: datetime, marks: MarkCache
) -> tuple[dict[int, MarkedPnl], dict[int, dict[str, SymbolBook]]]:
    """Mark the open positions of ``copy_ids`` from their fills (see ``marks``); return the books too."""
    if not copy_ids:
        return {}, {}
    books: dict[int, dict[str, SymbolBook]] = defaultdict(lambda: defaultdict(SymbolBook))
    raw = Raw(session)
    rows = raw.select_matching(
        "SELECT copy_id, symbol, side, quantity, price, realised_pnl, traded_at FROM follower_fills "
        "WHERE copy_id IN ({in_})",
        "copy_id",
        copy_ids,
        "integer",
    )
    cutoff = raw.stamp(as_of)
    for copy_id, symbol, side, quantity, price, realised, traded_at in rows:
        if traded_at <= cutoff:  # stored UTC text on SQLite, aware datetimes on PostgreSQL
            books[copy_id][symbol].add(side, quantity, price, realised)
    marked = {copy_id: mark_books(books[copy_id], marks, as_of) for copy_id in copy_ids}
    return marked, {copy_id: dict(books[copy_id]) for copy_id in copy_ids}


def _fees_in_other_assets(
    session: Session, assets: dict[int, str], as_of: datetime, copy_ids: list[int] | None = None
) -> dict[int, Decimal]:
    """Return each copy's fees paid outside its settlement asset, valued at their fills' prices.

    Only fees that can be valued at the fill count (the fill's base coin; see
    ``fee_in_settlement_asset``); each is rounded up, so the basis is never overstated. Fees in
    any of ``assets``' settlement assets are left out; ``copy_ids`` (default: every copy of
    ``assets``) are the copies whose fills are read.
    """
    wanted = sorted(assets) if copy_ids is None else copy_ids
    if not wanted:
        return {}
    ff = FollowerFill.__table__
    out: dict[int, Decimal] = defaultdict(lambda: ZERO)
    for chunk in chunks(wanted):
        rows = session.connection().execute(
            select(
                ff.c.copy_id,
                ff.c.symbol,
                ff.c.fee_asset,
                raw_units(ff.c.fee),
                raw_units(ff.c.price),
            ).where(
                ff.c.copy_id.in_(chunk),
                ff.c.fee_asset.notin_(sorted(set(assets.values()))),
                raw_units(ff.c.fee) > 0,
                ff.c.traded_at <= as_of,
            )
        )
        for copy_id, symbol, fee_asset, fee, price in rows:
            value = fee_in_settlement_asset(
                from_units(fee), fee_asset, symbol, from_units(price), assets[copy_id]
            )
            if value is not None:
                out[copy_id] += value
    return dict(out)


def _follower_cash(session: Session, copies) -> dict[int, dict[str, Decimal]]:
    """Return each copy's cash per asset (its settlement asset is R-SET-7's available balance)."""
    by_address = {follower_cash(row.copy_id): row.copy_id for row in copies}
    out: dict[int, dict[str, Decimal]] = defaultdict(dict)
    for address, asset, units in Raw(session).select_matching(
        "SELECT address, asset, balance FROM ledger_accounts WHERE address IN ({in_})",
        "address",
        sorted(by_address),
        "text",
    ):
        out[by_address[address]][asset] = from_units(units)
    return out
