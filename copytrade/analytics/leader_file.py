"""Read a published lead trader's fill history (Binance copy-trading page export) into leader fills.

The reference file (``shared/data/leaders/``) is real input with real quirks: UTF-8 byte-order
mark, CRLF line ends, newest row first, times in UTC+3, exact duplicate rows (scraped page by
page), quantities with thousands separators and a unit (``"97,649 1000PEPE"``), realised PnL with
a unit (``-6.10198149 USDT``). This reader turns it into rows for ``leader_fills``; duplicates are
dropped, times moved to UTC and rows put in time order.

The platform's own importer (``copytrade leaders import-fills``) is owned by the ingest area; this
module exists so the metrics can be tested against the real trader before that lands.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

from sqlalchemy import insert
from sqlalchemy.orm import Session

from copytrade.domain.money import to_decimal
from models.trading import LeaderFill

FILE_TZ = timezone(timedelta(hours=3))
_SIDES = {
    "open long": ("buy", "long", True),
    "close long": ("sell", "long", False),
    "open short": ("sell", "short", True),
    "close short": ("buy", "short", False),
}


@dataclass(frozen=True, slots=True)
class PublishedFill:
    """One fill as published: exact values, UTC time, and a trade id derived from the row's text."""

    trade_id: str
    symbol: str
    side: str
    position_side: str
    is_opening: bool
    price: Decimal
    quantity: Decimal
    realised_pnl: Decimal
    traded_at: datetime


@dataclass(frozen=True, slots=True)
class PublishedHistory:
    fills: list[PublishedFill]
    rows: int
    duplicates: int


def _amount_with_unit(text: str, field: str, line: int) -> Decimal:
    number = text.strip().split(" ")[0]
    try:
        return to_decimal(number.replace(",", ""), field)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"line {line}: {field} {text!r} is not an amount with a unit") from exc


def read_published_fills(path: Path) -> PublishedHistory:
    """Parse the file: drop exact duplicate rows, convert UTC+3 to UTC, return fills oldest first."""
    text = path.read_bytes().decode("utf-8-sig")
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if not header or len(header) < 7:
        raise ValueError(f"{path.name}: expected 7 columns (time … realised PnL), got {header!r}")
    seen: set[tuple[str, ...]] = set()
    fills: list[PublishedFill] = []
    rows = duplicates = 0
    for line, row in enumerate(reader, start=2):
        if not row:
            continue
        rows += 1
        key = tuple(cell.strip() for cell in row)
        if key in seen:
            duplicates += 1
            continue
        seen.add(key)
        when, symbol, _joined, action, price, quantity, pnl = key[:7]
        try:
            side, position_side, is_opening = _SIDES[action.lower()]
        except KeyError:
            raise ValueError(
                f"line {line}: side {action!r} is not one of {sorted(_SIDES)}"
            ) from None
        try:
            local = datetime.strptime(when, "%Y-%m-%d %H:%M:%S").replace(tzinfo=FILE_TZ)
        except ValueError as exc:
            raise ValueError(f"line {line}: time {when!r} is not YYYY-MM-DD HH:MM:SS") from exc
        fills.append(
            PublishedFill(
                trade_id="pub-" + hashlib.sha256("|".join(key).encode()).hexdigest()[:32],
                symbol=symbol.removesuffix("Perp"),
                side=side,
                position_side=position_side,
                is_opening=is_opening,
                price=_amount_with_unit(price, "price", line),
                quantity=_amount_with_unit(quantity, "quantity", line),
                realised_pnl=_amount_with_unit(pnl, "realised PnL", line),
                traded_at=local.astimezone(UTC),
            )
        )
    # The file is newest first; a stable sort keeps same-second fills in a deterministic order.
    fills.reverse()
    fills.sort(key=lambda f: f.traded_at)
    return PublishedHistory(fills=fills, rows=rows, duplicates=duplicates)


def store_published_fills(session: Session, portfolio_id: int, fills: list[PublishedFill]) -> int:
    """Insert the fills as ``leader_fills`` of ``portfolio_id`` (source ``import``); return the count."""
    position: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    rows = []
    for fill in fills:
        signed = fill.quantity if fill.side == "buy" else -fill.quantity
        key = (fill.symbol, fill.position_side)
        rows.append(
            {
                "portfolio_id": portfolio_id,
                "exchange_trade_id": fill.trade_id,
                "symbol": fill.symbol,
                "side": fill.side,
                "position_side": fill.position_side,
                "price": fill.price,
                "quantity": fill.quantity,
                "fee": Decimal(0),
                "fee_asset": "USDT",
                "realised_pnl": fill.realised_pnl,
                "traded_at": fill.traded_at,
                "is_opening": fill.is_opening,
                "position_before": position[key],
                "source": "import",
                "received_at": fill.traded_at,
            }
        )
        position[key] += signed
    if rows:
        session.execute(insert(LeaderFill), rows)
    return len(rows)
