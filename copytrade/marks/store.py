"""Access to ``mark_prices``: record marks, look one up, daily closes for analytics, prune.

One rule each, here and nowhere else:

- a mark belongs to its UTC minute (``marked_at`` truncated); at most one row per market, symbol
  and minute, so recording the same marks again changes nothing, and a changed value for a minute
  corrects it (a reloaded candle file);
- a day's close is the last mark of that UTC day, and its quote volume the sum of the day's marks'
  (R-MET-3 marks positions at it, R-X-5 sizes capacity from it);
- a mark older than ``max_age`` is not a price for "now" (the caller decides what stale means).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from copytrade import clock
from copytrade.domain.money import round_down, to_units
from models.market import MARKETS, MarkPrice

ZERO = Decimal(0)


def minute_of(at: datetime) -> datetime:
    """The UTC minute a moment belongs to (naive times are refused: a zone cannot be guessed)."""
    if at.tzinfo is None:
        raise ValueError(f"marked_at {at.isoformat()!r}: a mark's time must carry a time zone")
    return at.astimezone(UTC).replace(second=0, microsecond=0)


@dataclass(frozen=True, slots=True)
class Mark:
    """One price of one market at one minute; ``quote_volume`` is that interval's (0 unknown)."""

    symbol: str
    market: str
    marked_at: datetime
    price: Decimal
    quote_volume: Decimal = ZERO
    source: str = ""

    def __post_init__(self) -> None:
        if self.market not in MARKETS:
            raise ValueError(f"market {self.market!r} must be one of {', '.join(MARKETS)}")
        if not self.symbol or len(self.symbol) > 32:
            raise ValueError(f"symbol {self.symbol!r} must be an exchange id of 1-32 characters")
        if not isinstance(self.price, Decimal) or not self.price.is_finite() or self.price <= 0:
            raise ValueError(f"price {self.price!r} of {self.symbol} must be a positive decimal")
        if self.quote_volume < 0:
            raise ValueError(f"quote_volume {self.quote_volume} of {self.symbol} must be ≥ 0")
        to_units(self.price, "price")  # storable exactly, or refused here with the field
        object.__setattr__(self, "marked_at", minute_of(self.marked_at))
        object.__setattr__(self, "quote_volume", round_down(self.quote_volume))


@dataclass(frozen=True, slots=True)
class Recorded:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0


@dataclass(frozen=True, slots=True)
class DailyClose:
    symbol: str
    market: str
    day: date
    price: Decimal
    marked_at: datetime
    quote_volume: Decimal


def record(session: Session, marks: Iterable[Mark]) -> Recorded:
    """Store marks (idempotent): new minutes are inserted, changed ones corrected, equal ones kept.

    Two marks of one minute in the same call: the later one in the iterable wins.
    """
    latest: dict[tuple[str, str, datetime], Mark] = {}
    for mark in marks:
        latest[(mark.market, mark.symbol, mark.marked_at)] = mark
    if not latest:
        return Recorded()
    inserted = updated = unchanged = 0
    by_market_symbol: dict[tuple[str, str], list[Mark]] = {}
    for mark in latest.values():
        by_market_symbol.setdefault((mark.market, mark.symbol), []).append(mark)
    new_rows = []
    for (market, symbol), group in by_market_symbol.items():
        lo = min(m.marked_at for m in group)
        hi = max(m.marked_at for m in group)
        existing = {
            row.marked_at: row
            for row in session.scalars(
                select(MarkPrice).where(
                    MarkPrice.market == market,
                    MarkPrice.symbol == symbol,
                    MarkPrice.marked_at >= lo,
                    MarkPrice.marked_at <= hi,
                )
            )
        }
        for mark in group:
            row = existing.get(mark.marked_at)
            if row is None:
                new_rows.append(
                    {
                        "symbol": mark.symbol,
                        "market": mark.market,
                        "marked_at": mark.marked_at,
                        "price": mark.price,
                        "quote_volume": mark.quote_volume,
                        "source": mark.source[:128],
                        "recorded_at": clock.now(),
                    }
                )
                inserted += 1
            elif (row.price, row.quote_volume) != (mark.price, mark.quote_volume):
                row.price, row.quote_volume, row.source = (
                    mark.price,
                    mark.quote_volume,
                    mark.source[:128],
                )
                updated += 1
            else:
                unchanged += 1
    if new_rows:
        session.execute(MarkPrice.__table__.insert(), new_rows)
    session.flush()
    return Recorded(inserted, updated, unchanged)


def latest_at_or_before(
    session: Session, symbol: str, market: str, at: datetime, max_age: timedelta | None = None
) -> Mark | None:
    """The last mark of a market at or before ``at``; None when there is none within ``max_age``."""
    at = at.astimezone(UTC)
    query = select(MarkPrice).where(
        MarkPrice.market == market, MarkPrice.symbol == symbol, MarkPrice.marked_at <= at
    )
    if max_age is not None:
        query = query.where(MarkPrice.marked_at >= at - max_age)
    row = session.scalars(query.order_by(MarkPrice.marked_at.desc()).limit(1)).first()
    if row is None:
        return None
    return Mark(row.symbol, row.market, row.marked_at, row.price, row.quote_volume, row.source)


def daily_closes(
    session: Session, symbol: str, market: str, start: date | None = None, end: date | None = None
) -> list[DailyClose]:
    """The close (last mark) and summed quote volume of each UTC day with marks, oldest first.

    The warehouse computes the same in SQL (``int_mark_daily_closes``); this is the
    Python reading for services and tests.
    """
    query = select(MarkPrice).where(MarkPrice.market == market, MarkPrice.symbol == symbol)
    if start is not None:
        query = query.where(
            MarkPrice.marked_at >= datetime(start.year, start.month, start.day, tzinfo=UTC)
        )
    if end is not None:
        after = end + timedelta(days=1)
        query = query.where(
            MarkPrice.marked_at < datetime(after.year, after.month, after.day, tzinfo=UTC)
        )
    days: dict[date, list] = {}
    for row in session.scalars(query.order_by(MarkPrice.marked_at)):
        day = days.setdefault(row.marked_at.date(), [row.marked_at, row.price, ZERO])
        day[0], day[1] = row.marked_at, row.price
        day[2] += row.quote_volume
    return [
        DailyClose(symbol, market, d, price, at, volume)
        for d, (at, price, volume) in sorted(days.items())
    ]


@dataclass(frozen=True, slots=True)
class PrunePolicy:
    """Keep every minute of the last ``keep_minutes_days`` days; before that, each day's close."""

    keep_minutes_days: int = 30

    def __post_init__(self) -> None:
        if self.keep_minutes_days < 1:
            raise ValueError(f"keep_minutes_days {self.keep_minutes_days} must be at least 1")


def prune(session: Session, policy: PrunePolicy, now: datetime | None = None) -> int:
    """Delete minute marks older than the policy keeps, except each day's last; return how many.

    Daily closes (what the metrics read) are kept for ever; the day's quote volume is folded into
    the kept mark first, so capacity (R-X-5) reads the same after pruning.
    """
    now = (now or clock.now()).astimezone(UTC)
    cutoff = (now - timedelta(days=policy.keep_minutes_days)).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    rows = session.execute(
        select(
            MarkPrice.id,
            MarkPrice.market,
            MarkPrice.symbol,
            MarkPrice.marked_at,
            MarkPrice.quote_volume,
        )
        .where(MarkPrice.marked_at < cutoff)
        .order_by(MarkPrice.market, MarkPrice.symbol, MarkPrice.marked_at)
    ).all()
    keep: dict[tuple[str, str, date], list] = {}
    for row_id, market, symbol, at, volume in rows:
        entry = keep.setdefault((market, symbol, at.date()), [row_id, ZERO, []])
        entry[1] += volume
        if entry[0] != row_id:
            entry[2].append(entry[0])
            entry[0] = row_id
    doomed = [i for _, _, ids in keep.values() for i in ids]
    for last_id, volume, ids in keep.values():
        if ids:
            session.get(MarkPrice, last_id).quote_volume = volume
    for start in range(0, len(doomed), 500):
        session.execute(delete(MarkPrice).where(MarkPrice.id.in_(doomed[start : start + 500])))
    session.flush()
    return len(doomed)


MARK_FRESHNESS = timedelta(minutes=5)  # a mark older than this is no price for "now" (R-SET-3)


@dataclass(frozen=True, slots=True)
class StoredMarks:
    """Marks from this table for whoever asks ``mark_price(symbol, at)`` (settlement's
    ``MarkPrices`` provider protocol): the last mark at or before ``at`` within ``max_age``.

    ``fallback_market`` is asked when ``market`` has no fresh mark (settlement reads USDⓈ-M marks
    and falls back to spot for coins only spot lists). ``why_missing`` says why a symbol had no
    price, so a deferred share names the reason (none recorded, or the last one too old).
    """

    session: Session
    market: str = "usdm"
    max_age: timedelta | None = MARK_FRESHNESS
    fallback_market: str | None = None

    def _markets(self) -> tuple[str, ...]:
        return (
            (self.market,) if self.fallback_market is None else (self.market, self.fallback_market)
        )

    def mark_price(self, symbol: str, at: datetime) -> Decimal | None:
        for market in self._markets():
            mark = latest_at_or_before(self.session, symbol, market, at, self.max_age)
            if mark is not None:
                return mark.price
        return None

    def why_missing(self, symbol: str, at: datetime) -> str:
        """Return why ``symbol`` has no mark at ``at``: none recorded, or the last one is stale."""
        found = [latest_at_or_before(self.session, symbol, m, at) for m in self._markets()]
        found = [m for m in found if m is not None]
        if not found:
            return f"no mark recorded at or before {at.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
        last = max(found, key=lambda m: m.marked_at)
        age = at.astimezone(UTC) - last.marked_at
        return (
            f"last mark {last.marked_at:%Y-%m-%d %H:%M} UTC is {age} old, beyond the "
            f"{self.max_age} freshness bound"
        )


def marks_at(
    session: Session, at: datetime, max_age: timedelta | None = MARK_FRESHNESS
) -> tuple[dict[tuple[str, str], Mark], dict[tuple[str, str], datetime]]:
    """Every market's and symbol's last mark at or before ``at`` within ``max_age`` (two queries),
    and the time of the last mark at or before ``at`` whatever its age (to say why one is stale).
    """
    at = at.astimezone(UTC)
    last = {
        (market, symbol): when
        for market, symbol, when in session.execute(
            select(MarkPrice.market, MarkPrice.symbol, func.max(MarkPrice.marked_at))
            .where(MarkPrice.marked_at <= at)
            .group_by(MarkPrice.market, MarkPrice.symbol)
        )
    }
    query = select(MarkPrice).where(MarkPrice.marked_at <= at)
    if max_age is not None:
        query = query.where(MarkPrice.marked_at >= at - max_age)
    fresh = {}
    for row in session.scalars(query.order_by(MarkPrice.marked_at)):
        fresh[(row.market, row.symbol)] = Mark(
            row.symbol, row.market, row.marked_at, row.price, row.quote_volume, row.source
        )
    return fresh, last


def stored_summary(session: Session) -> list[tuple[str, str, datetime, datetime, int]]:
    """(market, symbol, first mark, last mark, marks) per market and symbol."""
    return [
        tuple(r)
        for r in session.execute(
            select(
                MarkPrice.market,
                MarkPrice.symbol,
                func.min(MarkPrice.marked_at),
                func.max(MarkPrice.marked_at),
                func.count(),
            )
            .group_by(MarkPrice.market, MarkPrice.symbol)
            .order_by(MarkPrice.market, MarkPrice.symbol)
        ).all()
    ]


__all__ = [
    "MARK_FRESHNESS",
    "DailyClose",
    "Mark",
    "PrunePolicy",
    "Recorded",
    "StoredMarks",
    "daily_closes",
    "latest_at_or_before",
    "marks_at",
    "minute_of",
    "prune",
    "record",
    "stored_summary",
]
