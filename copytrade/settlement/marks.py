"""Mark prices and unrealised PnL at the settlement time (R-SET-3, R-SET-6).

Settlement never guesses a price. A futures copy's unrealised profit is its open positions marked
at the mark price the ``MarkPrices`` provider gives for the cycle's instant: by default
``RecordedMarks``, the marks the running engine records in ``mark_prices`` (within a freshness
bound); ``--mark``/``--marks-file`` give them by hand, tests pass a dict. A copy with an open position and no mark is deferred with
the reason. The lead portfolio's unrealised PnL for the −20,000 USD rule comes from a
``PortfolioUnrealised`` provider; the default marks the leader's own fills the same way.

Unrealised PnL of one symbol, from the fills alone: with ``n`` the net signed quantity, ``m`` the
mark, and the fills' signed notional ``Σ s·q·p`` (buys +, sells −) and reported realised PnL
``R``, ``unrealised = n·m − Σ s·q·p − R``: the mark value of the position minus what it still
cost after the realised part was booked. It is exact in integer units and independent of the
exchange's cost method, so realised + unrealised is the position's true total PnL. It is rounded
towards minus infinity to 1e-8, so a basis is never overstated (R-SET-10).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from copytrade.domain.errors import RuleViolation
from copytrade.domain.inputs import decimal_field
from copytrade.domain.money import SCALE, from_units, to_units
from copytrade.marks.store import MARK_FRESHNESS, marks_at
from copytrade.settlement.sqlutil import chunks, raw_units
from models.trading import LeaderFill

_UNIT = 10**SCALE


class MarkPrices(Protocol):
    """Where mark prices come from (the exchange's mark price, the paper exchange, a test dict)."""

    def mark_price(self, symbol: str, at: datetime) -> Decimal | None:
        """Return the mark price of ``symbol`` at ``at``, or None when it is not known."""
        ...


class PortfolioUnrealised(Protocol):
    """Where a lead portfolio's unrealised PnL at the settlement time comes from (R-SET-6)."""

    def unrealised(
        self, session: Session, portfolio_ids: Collection[int], at: datetime
    ) -> dict[int, Decimal | None]:
        """Return each portfolio's unrealised PnL at ``at``; None when it cannot be known."""
        ...


@dataclass(frozen=True, slots=True)
class StaticMarks:
    """Mark prices from a mapping ``symbol → price`` (the same at every instant)."""

    prices: Mapping[str, Decimal]

    def mark_price(self, symbol: str, at: datetime) -> Decimal | None:
        return self.prices.get(symbol)


NO_MARKS = StaticMarks({})


class RecordedMarks:
    """The marks the running stack records in ``mark_prices``: settlement's default provider.

    The last USDⓈ-M mark at or before the instant (spot's last price for a coin only spot lists)
    within ``max_age`` (``MARK_FRESHNESS``, 5 minutes); older or absent is no price, and the
    deferral names why (``why_missing``) (R-SET-3). The marks of an instant are read in one go,
    in their own short session; ``preload`` reads them before settlement opens its transaction
    (SQLite allows one writer, and a second session's read would wait for it). An instant within
    ``NEAR`` of a loaded one uses that one's marks.
    """

    NEAR = timedelta(minutes=1)

    def __init__(self, sessions: sessionmaker[Session], max_age: timedelta = MARK_FRESHNESS):
        self.sessions = sessions
        self.max_age = max_age
        self._loaded: dict[datetime, tuple[dict, dict]] = {}

    def preload(self, *instants: datetime) -> RecordedMarks:
        with self.sessions() as session:
            for at in instants:
                self._loaded[at] = marks_at(session, at, self.max_age)
        return self

    def _at(self, at: datetime) -> tuple[dict, dict]:
        if at not in self._loaded:
            near = [p for p in self._loaded if abs(p - at) <= self.NEAR]
            if near:
                return self._loaded[min(near, key=lambda p: abs(p - at))]
            self.preload(at)
        return self._loaded[at]

    def mark_price(self, symbol: str, at: datetime) -> Decimal | None:
        fresh, _ = self._at(at)
        for market in ("usdm", "spot"):
            mark = fresh.get((market, symbol))
            if mark is not None:
                return mark.price
        return None

    def why_missing(self, symbol: str, at: datetime) -> str:
        _, last = self._at(at)
        times = [t for m in ("usdm", "spot") if (t := last.get((m, symbol))) is not None]
        if not times:
            return f"no mark recorded at or before {at.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
        when = max(times)
        return (
            f"last mark {when:%Y-%m-%d %H:%M} UTC is {at.astimezone(UTC) - when} old, beyond "
            f"the {self.max_age} freshness bound"
        )


@dataclass(frozen=True, slots=True)
class SnapshotMarks:
    """Mark prices captured at one instant (by the engine, the paper exchange or an operator).

    A snapshot only answers for settlement instants within ``tolerance`` of when it was taken:
    a stale price is no price, and the share waits (R-SET-3).
    """

    taken_at: datetime
    prices: Mapping[str, Decimal]
    tolerance: timedelta = timedelta(minutes=15)

    def mark_price(self, symbol: str, at: datetime) -> Decimal | None:
        if abs(at - self.taken_at) > self.tolerance:
            return None
        return self.prices.get(symbol)

    @classmethod
    def load(cls, path: Path, tolerance: timedelta = timedelta(minutes=15)) -> SnapshotMarks:
        """Read ``{"taken_at": "<ISO 8601 with zone>", "prices": {"BTCUSDT": "61000.5", …}}``."""
        try:
            raw = json.loads(Path(path).read_text())
            taken_at = datetime.fromisoformat(raw["taken_at"])
            prices = {
                str(k): decimal_field(f"mark price of {k}", v, "R-SET-3")
                for k, v in raw["prices"].items()
            }
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise RuleViolation(
                "marks_file", str(path), "R-SET-3", f"not a readable mark snapshot: {exc}"
            ) from None
        if taken_at.tzinfo is None:
            raise RuleViolation(
                "marks_file", str(path), "R-SET-3", "taken_at must carry a time zone"
            )
        if any(p <= 0 for p in prices.values()):
            raise RuleViolation("marks_file", str(path), "R-SET-3", "mark prices must be positive")
        return cls(taken_at, prices, tolerance)


@dataclass(frozen=True, slots=True)
class StaticPortfolioUnrealised:
    """Portfolio unrealised PnL from a mapping ``portfolio id → PnL`` (absent: zero)."""

    values: Mapping[int, Decimal]

    def unrealised(
        self, session: Session, portfolio_ids: Collection[int], at: datetime
    ) -> dict[int, Decimal | None]:
        return {pid: self.values.get(pid, Decimal(0)) for pid in portfolio_ids}


@dataclass(slots=True)
class SymbolBook:
    """Running sums of one position's fills in integer units (quantity, notional in units², PnL)."""

    net: int = 0
    notional: int = 0  # Σ s·q·p, units × units
    realised: int = 0

    def add(self, side: str, quantity: int, price: int, realised: int | None) -> None:
        sign = 1 if side == "buy" else -1
        self.net += sign * quantity
        self.notional += sign * quantity * price
        self.realised += realised or 0


@dataclass(frozen=True, slots=True)
class MarkedPnl:
    """Unrealised PnL of a set of positions, or the symbols whose mark was missing."""

    unrealised: Decimal | None
    missing: tuple[str, ...] = ()


def unrealised_units(book: SymbolBook, mark: int) -> int:
    """Return the unrealised PnL of one open position in units, floored (see the module doc)."""
    value = book.net * mark - book.notional - book.realised * _UNIT
    return value // _UNIT  # floor: never overstate a profit or understate a loss


def mark_books(books: Mapping[str, SymbolBook], marks: MarkPrices, at: datetime) -> MarkedPnl:
    """Mark every open position in ``books`` at ``at``; report missing marks instead of guessing."""
    total, missing = 0, []
    for symbol in sorted(books):
        book = books[symbol]
        if book.net == 0:
            continue
        price = marks.mark_price(symbol, at)
        if price is None:
            why = getattr(marks, "why_missing", None)  # a provider that knows says why
            reason = why(symbol, at) if why else None
            missing.append(f"{symbol} ({reason})" if reason else symbol)
            continue
        total += unrealised_units(book, to_units(price, f"mark price of {symbol}"))
    if missing:
        return MarkedPnl(None, tuple(missing))
    return MarkedPnl(from_units(total))


def books_from_rows(rows: Iterable[tuple[str, str, int, int, int | None]]) -> dict[str, SymbolBook]:
    """Sum fills given as ``(symbol, side, quantity units, price units, realised units)``."""
    books: dict[str, SymbolBook] = defaultdict(SymbolBook)
    for symbol, side, quantity, price, realised in rows:
        books[symbol].add(side, quantity, price, realised)
    return books


@dataclass(frozen=True, slots=True)
class LeaderFillsUnrealised:
    """A lead portfolio's unrealised PnL from the leader's own fills, marked at ``marks`` (default)."""

    marks: MarkPrices

    def unrealised(
        self, session: Session, portfolio_ids: Collection[int], at: datetime
    ) -> dict[int, Decimal | None]:
        if not portfolio_ids:
            return {}
        table = LeaderFill.__table__
        raw = (
            table.c.portfolio_id,
            table.c.symbol,
            table.c.side,
            raw_units(table.c.quantity),
            raw_units(table.c.price),
            raw_units(table.c.realised_pnl),
        )
        per_portfolio: dict[int, list] = defaultdict(list)
        ids = sorted(portfolio_ids)
        for chunk in chunks(ids):
            rows = session.execute(
                select(*raw).where(table.c.portfolio_id.in_(chunk), table.c.traded_at <= at)
            )
            for pid, *fill in rows:
                per_portfolio[pid].append(fill)
        out: dict[int, Decimal | None] = {}
        for pid in ids:
            marked = mark_books(books_from_rows(per_portfolio.get(pid, ())), self.marks, at)
            out[pid] = marked.unrealised
        return out
