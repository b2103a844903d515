"""A copy's statement: equity, realised and unrealised PnL, shares paid, positions, what may leave.

Read with the settlement's own reader (``copytrade.settlement.reading.load_batch``), so a copy's
statement, its stop-loss result and its settlement basis are the same numbers: realised PnL of
its fills − every fee valued in the settlement asset + funding, and open positions marked at the
mark price the ``MarkPrices`` provider knows at the instant. A position without a mark is shown as
"no mark" and its unrealised PnL as unknown; nothing is guessed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from copytrade.domain.copy_funds import result_after_fees_and_shares, withdrawable_profit
from copytrade.domain.money import SCALE, ZERO, from_units, round_down, round_up, to_units
from copytrade.domain.settlement import FUTURES
from copytrade.settlement.decide import CopyFacts, ShareDecision, decide_share
from copytrade.settlement.marks import MarkPrices, SymbolBook, unrealised_units
from copytrade.settlement.reading import MarkCache, load_batch
from models import Copy

_UNIT = 10**SCALE


@dataclass(frozen=True, slots=True)
class PositionLine:
    """One open position of a copy, from its fills."""

    symbol: str
    quantity: Decimal  # signed: + long / held, − short
    average_price: Decimal  # the open quantity's cost per unit (average cost)
    mark: Decimal | None
    unrealised: Decimal | None  # None: no mark


@dataclass(frozen=True, slots=True)
class CopyStatement:
    """What one copy holds and has made at ``at`` (amounts in its settlement asset)."""

    copy_id: int
    mode: str
    status: str
    asset: str
    at: datetime
    principal: Decimal  # allocation + funds added
    cash: Decimal  # in the settlement asset
    coins: dict[str, Decimal]  # spot: other assets held (base coins)
    realised: Decimal  # Σ realised PnL of the fills (gross)
    fees: Decimal  # every fee, valued in the settlement asset
    funding: Decimal  # received − paid
    unrealised: Decimal | None  # None: a position has no mark
    missing_marks: tuple[str, ...]
    shares_paid: Decimal
    share_outstanding: Decimal  # paused or deferred at the last settlement
    equity: Decimal | None  # None: a position has no mark
    margin_in_use: Decimal  # futures: Σ |cost| / leverage of open positions
    positions: tuple[PositionLine, ...]
    facts: CopyFacts  # what settlement would read now

    @property
    def realised_net(self) -> Decimal:
        """Realised PnL after fees and funding."""
        return self.realised - self.fees + self.funding

    @property
    def result(self) -> Decimal | None:
        """The cumulative PnL after fees and shares paid, as stop-loss and take-profit see it (R-COPY-3)."""
        if self.unrealised is None:
            return None
        return result_after_fees_and_shares(
            realised=self.realised,
            fees=self.fees,
            funding=self.funding,
            unrealised=self.unrealised,
            shares_paid=self.shares_paid,
        )

    def share_due_now(self) -> ShareDecision:
        """Return what an event settlement of this copy would decide now (R-SET-5)."""
        return decide_share(self.facts)

    def withdrawable(self) -> Decimal | None:
        """Return the profit that may leave the copy now, before settling it (None: unknown)."""
        return self._withdrawable(ZERO, self.share_outstanding)

    def withdrawable_after_settlement(self) -> Decimal | None:
        """Return the profit that may leave once the share due now is settled (R-SET-5 first)."""
        share = self.share_due_now()
        if share.status == "paid":
            return self._withdrawable(share.amount, ZERO)
        if share.status in ("paused", "deferred"):
            return self._withdrawable(ZERO, share.amount)
        return self._withdrawable(ZERO, ZERO)

    def _withdrawable(self, paid_now: Decimal, outstanding: Decimal) -> Decimal | None:
        equity = self.equity
        if equity is None:
            if self.mode == FUTURES:
                return None  # an unrealised loss could be anything: nothing leaves blind
            equity = self.cash  # spot coins without a mark count as worth nothing
        return withdrawable_profit(
            cash=self.cash - paid_now,
            principal=self.principal,
            equity=equity - paid_now,
            margin_in_use=self.margin_in_use,
            share_outstanding=outstanding,
        )


def copy_statements(
    session: Session,
    copy_ids: Sequence[int],
    at: datetime,
    marks: MarkPrices,
    *,
    lock: bool = False,
) -> dict[int, CopyStatement]:
    """Return the statements of ``copy_ids`` at ``at`` in a few set-based reads (no query per copy).

    ``lock`` locks the copy rows (PostgreSQL) as settlement does, for a caller about to move money.
    """
    ids = sorted(set(copy_ids))
    if not ids:
        return {}
    cache = MarkCache(marks)
    batch = load_batch(session, ids, at, cache, lock=lock, mark_spot=True)
    copies = {c.id: c for c in session.scalars(select(Copy).where(Copy.id.in_(ids)))}
    out: dict[int, CopyStatement] = {}
    for copy_id in ids:
        facts = batch.facts.get(copy_id)
        if facts is None:
            continue
        row, copy = batch.copies[copy_id], copies[copy_id]
        state = batch.states.get((copy_id, facts.asset))
        cash_by_asset = batch.cash.get(copy_id, {})
        cash = cash_by_asset.get(facts.asset, ZERO)
        coins = {a: v for a, v in sorted(cash_by_asset.items()) if a != facts.asset and v != 0}
        positions, unrealised, missing, margin = _positions(
            batch.books.get(copy_id, {}), cache, at, copy.leverage if row.mode == FUTURES else 1
        )
        if row.mode == FUTURES:
            equity = None if missing else cash + unrealised
        else:
            equity = _spot_equity(cash, coins, facts.asset, cache, at)
        out[copy_id] = CopyStatement(
            copy_id=copy_id,
            mode=row.mode,
            status=row.status,
            asset=facts.asset,
            at=at,
            principal=copy.allocation,
            cash=cash,
            coins=coins,
            realised=facts.realised,
            fees=facts.fees,
            funding=facts.funding,
            unrealised=None if missing else unrealised,
            missing_marks=missing,
            shares_paid=facts.share_paid,
            share_outstanding=state.outstanding if state else ZERO,
            equity=equity,
            margin_in_use=margin if row.mode == FUTURES else ZERO,
            positions=positions,
            facts=facts,
        )
    return out


def copy_results(
    session: Session, copy_ids: Sequence[int], at: datetime, marks: MarkPrices
) -> dict[int, Decimal | None]:
    """Return each copy's PnL after fees and shares paid (R-COPY-3), None where a mark is missing.

    The query the stop-loss and take-profit checks use: the same reads as settlement, so a copy
    stops on the very numbers its settlement will use.
    """
    return {cid: s.result for cid, s in copy_statements(session, copy_ids, at, marks).items()}


def _positions(
    books: dict[str, SymbolBook], marks: MarkCache, at: datetime, leverage: int
) -> tuple[tuple[PositionLine, ...], Decimal, tuple[str, ...], Decimal]:
    lines, total, missing, margin = [], 0, [], ZERO
    for symbol in sorted(books):
        book = books[symbol]
        if book.net == 0:
            continue
        cost = book.notional + book.realised * _UNIT  # units²: what the open quantity cost
        average = round_down((Decimal(cost) / book.net).scaleb(-SCALE))
        margin += Decimal(abs(cost)).scaleb(-2 * SCALE) / (leverage or 1)
        mark = marks.mark_price(symbol, at)
        if mark is None:
            missing.append(symbol)
            lines.append(PositionLine(symbol, from_units(book.net), average, None, None))
            continue
        value = unrealised_units(book, to_units(mark, f"mark price of {symbol}"))
        total += value
        lines.append(PositionLine(symbol, from_units(book.net), average, mark, from_units(value)))
    # margin rounds up: what stays in the copy is never understated
    return tuple(lines), from_units(total), tuple(missing), round_up(margin)


def _spot_equity(
    cash: Decimal, coins: dict[str, Decimal], asset: str, marks: MarkCache, at: datetime
) -> Decimal | None:
    """Return spot equity: cash plus each coin at its ``<coin><asset>`` mark (None: a mark is missing)."""
    total = cash
    for coin, amount in coins.items():
        mark = marks.mark_price(f"{coin}{asset}", at)
        if mark is None:
            return None
        total += round_down(amount * mark)
    return total
