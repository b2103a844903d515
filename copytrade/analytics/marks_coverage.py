"""Which held positions the last build could not mark, by portfolio and symbol (R-MET-3).

A day on which a lead portfolio held a position whose market had no mark of its own is carried at
cost (no mark yet) or at an older close; the metrics over such days carry ``marks_complete``
false. This reads the warehouse and says which symbols and days, so the user knows which marks to
load (``copytrade marks load`` / ``marks fetch``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from copytrade.analytics.leaderboard import query
from copytrade.analytics.warehouse import Warehouse


@dataclass(frozen=True, slots=True)
class UnmarkedSymbol:
    portfolio_id: int
    symbol: str
    first_day: date
    last_day: date
    days: int

    def describe(self) -> str:
        span = (
            f"{self.first_day}"
            if self.first_day == self.last_day
            else f"{self.first_day} … {self.last_day}"
        )
        return (
            f"portfolio {self.portfolio_id} {self.symbol}: {self.days} days without a mark ({span})"
        )


def unmarked_symbols(warehouse: Warehouse) -> list[UnmarkedSymbol]:
    """Every (lead portfolio, symbol) held on days without a mark, with those days' span and count."""
    rows = query(
        warehouse,
        "select book_id, unrealised_date, unmarked_symbols from int_book_unrealised_daily "
        "where book_type = 'leader' and unmarked_positions > 0 order by book_id, unrealised_date",
    )
    spans: dict[tuple[int, str], list] = {}
    for row in rows:
        for symbol in (row["unmarked_symbols"] or "").split(","):
            if not symbol:
                continue
            day = row["unrealised_date"]
            span = spans.setdefault((int(row["book_id"]), symbol), [day, day, 0])
            span[0], span[1], span[2] = min(span[0], day), max(span[1], day), span[2] + 1
    return [
        UnmarkedSymbol(pid, symbol, first, last, days)
        for (pid, symbol), (first, last, days) in sorted(spans.items())
    ]
