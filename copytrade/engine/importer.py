"""Import a leader's past fills through the same validation and quarantine as live ingest (R-IN-1).

Two formats are read:

``binance-copy-trading`` — the trade history scraped from Binance's copy-trading page (the file in
``shared/data/leaders/``): UTF-8 with a BOM, CRLF, header ``Column1…Column7``: time in UTC+3,
symbol with a ``Perp`` suffix, a concatenation of the other columns (ignored), side
(``Open long``/``Close long``/``Open short``/``Close short``), price, quantity with unit and thousands
separators (``"97,649 1000PEPE"``), realised PnL with unit (``-6.10198149 USDT``); newest first.

``plain`` — a documented CSV with a header row::

    time,symbol,side,price,quantity[,realised_pnl][,trade_id]
    2025-03-21T17:43:25Z,SUIUSDT,sell,2.2735,311.2,-16.74105

``time`` is ISO 8601 with an offset (``Z`` or ``+03:00``); a time without an offset is refused,
because guessing a time zone corrupts the history. ``side`` is buy/sell (whether it opens or
closes follows from the position, as for live fills). ``trade_id`` is optional.

Every row is validated like a live fill (``ingest.validate``): exact positive price and
quantity, a known side, a mappable symbol, an aware time. Rows that repeat an earlier row exactly
(the scraper read some pages twice) are duplicates: dropped, counted, and quarantined with the
reason, like every rejected row. Kept fills are stored in time order as ``LeaderFill`` rows with
``source='import'`` and a deterministic trade id (the row's content hash when the file has none),
so importing the same file twice stores nothing twice.

The platform recomputes the realised PnL of every closing fill on the average-cost basis of the
leader's position per symbol (Binance's method for one-way positions) and compares it with the
published value; ``ImportReport`` gives the share that matches to the cent and the share within
what the file's price precision allows (entry and exit prices are shown rounded to the digits
the file prints: half a unit of the last digit, times the quantity, per price).
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from copytrade.domain.money import UNIT, ZERO
from copytrade.engine import ingest
from copytrade.exchange.protocol import Trade
from models import LeaderFill, QuarantinedEvent

CENT = Decimal("0.01")
BINANCE_PAGE_TZ = timezone(timedelta(hours=3))  # the scraped page shows UTC+3
_SYMBOL = re.compile(r"^[A-Z0-9]{2,20}USDT$")


@dataclass
class ImportedRow:
    line: int
    trade: Trade
    opening: bool
    position_before: Decimal
    published_pnl: Decimal | None
    recomputed_pnl: Decimal | None = None
    price_decimals: int = 8
    entry_decimals: int = 8


@dataclass
class ImportReport:
    """What an import found: counts, rejected rows by reason, and the PnL comparison."""

    rows: int = 0
    kept: int = 0
    stored: int = 0
    already_stored: int = 0
    duplicates: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    opening: int = 0
    closing: int = 0
    pnl_compared: int = 0
    pnl_match_cent: int = 0
    pnl_within_precision: int = 0
    pnl_no_basis: int = 0
    published_total: Decimal = ZERO
    recomputed_total: Decimal = ZERO
    worst: list[dict] = field(default_factory=list)

    def share(self, n: int) -> float:
        return round(n / self.pnl_compared, 4) if self.pnl_compared else 0.0

    def as_dict(self) -> dict:
        return {
            "rows": self.rows,
            "kept": self.kept,
            "stored": self.stored,
            "already_stored": self.already_stored,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "opening": self.opening,
            "closing": self.closing,
            "pnl_compared": self.pnl_compared,
            "pnl_match_cent": self.pnl_match_cent,
            "pnl_match_cent_share": self.share(self.pnl_match_cent),
            "pnl_within_precision": self.pnl_within_precision,
            "pnl_within_precision_share": self.share(self.pnl_within_precision),
            "pnl_no_basis": self.pnl_no_basis,
            "published_total": str(self.published_total),
            "recomputed_total": str(self.recomputed_total),
            "worst": self.worst,
        }


@dataclass
class _Raw:
    line: int
    fields: dict
    payload: dict


def _amount(text: str, field_name: str) -> tuple[Decimal, str]:
    """Parse ``"97,649 1000PEPE"`` or ``-6.10198149 USDT`` into (exact amount, unit)."""
    text = (text or "").strip()
    number, _, unit = text.partition(" ")
    try:
        value = Decimal(number.replace(",", "").replace("+", ""))
    except InvalidOperation:
        raise ValueError(f"{field_name} {text!r} is not a number with a unit") from None
    if not value.is_finite():
        raise ValueError(f"{field_name} {text!r} is not finite")
    return value, unit.strip()


def _decimals(text: str) -> int:
    text = text.strip()
    return len(text.split(".")[1]) if "." in text else 0


def detect_format(head: str) -> str:
    first = head.lstrip("\ufeff").splitlines()[0] if head else ""
    if first.startswith("Column1"):
        return "binance-copy-trading"
    return "plain"


def _rows_binance(text: str) -> list[_Raw]:
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff"), newline=""))
    out = []
    header = next(reader, None)
    if not header or header[:1] != ["Column1"]:
        raise ValueError("file: not the Binance copy-trading export (header Column1…Column7)")
    for n, row in enumerate(reader, start=2):
        payload = {"line": n, "row": row}
        if len(row) != 7:
            out.append(_Raw(n, {"error": f"{len(row)} columns instead of 7"}, payload))
            continue
        time_s, symbol_s, _concat, side_s, price_s, qty_s, pnl_s = row
        fields: dict = {"raw": tuple(row)}
        try:
            local = datetime.strptime(time_s.strip(), "%Y-%m-%d %H:%M:%S")
            fields["time"] = local.replace(tzinfo=BINANCE_PAGE_TZ).astimezone(UTC)
            if not symbol_s.endswith("Perp"):
                raise ValueError(f"symbol {symbol_s!r} has no Perp suffix")
            fields["symbol"] = symbol_s.removesuffix("Perp")
            action = side_s.strip().lower()
            mapping = {
                "open long": ("buy", True),
                "close long": ("sell", False),
                "open short": ("sell", True),
                "close short": ("buy", False),
            }
            if action not in mapping:
                raise ValueError(f"side {side_s!r} is not Open/Close long/short")
            fields["side"], fields["opens"] = mapping[action]
            fields["price"] = Decimal(price_s.strip())
            fields["price_decimals"] = _decimals(price_s)
            fields["quantity"], unit = _amount(qty_s, "quantity")
            base = fields["symbol"].removesuffix("USDT")
            if unit and unit != base:
                raise ValueError(f"quantity unit {unit!r} does not match symbol {fields['symbol']}")
            fields["pnl"], _ = _amount(pnl_s, "realised_pnl")
        except (ValueError, InvalidOperation) as exc:
            fields = {"error": str(exc)}
        out.append(_Raw(n, fields, payload))
    out.reverse()  # newest first in the file; time order from here on
    return out


def _rows_plain(text: str) -> list[_Raw]:
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff"), newline=""))
    required = {"time", "symbol", "side", "price", "quantity"}
    missing = required - set(reader.fieldnames or ())
    if missing:
        raise ValueError(f"file: header lacks {sorted(missing)} (plain format: {sorted(required)})")
    out = []
    for n, row in enumerate(reader, start=2):
        payload = {"line": n, "row": row}
        fields: dict = {"raw": tuple(sorted(row.items()))}
        try:
            stamp = datetime.fromisoformat(row["time"].strip().replace("Z", "+00:00"))
            if stamp.tzinfo is None:
                raise ValueError(f"time {row['time']!r} has no UTC offset")
            fields["time"] = stamp.astimezone(UTC)
            fields["symbol"] = row["symbol"].strip().upper()
            side = row["side"].strip().lower()
            if side not in ("buy", "sell"):
                raise ValueError(f"side {row['side']!r} is not buy or sell")
            fields["side"], fields["opens"] = side, None
            fields["price"] = Decimal(row["price"].strip())
            fields["price_decimals"] = _decimals(row["price"])
            fields["quantity"] = Decimal(row["quantity"].strip().replace(",", ""))
            pnl = (row.get("realised_pnl") or "").strip()
            fields["pnl"] = Decimal(pnl) if pnl else None
            fields["trade_id"] = (row.get("trade_id") or "").strip() or None
        except (ValueError, InvalidOperation, KeyError) as exc:
            fields = {"error": str(exc)}
        out.append(_Raw(n, fields, payload))
    out.sort(key=lambda r: r.fields.get("time") or datetime.max.replace(tzinfo=UTC))
    return out


def _trade_id(raw: tuple) -> str:
    digest = hashlib.sha256(repr(raw).encode()).hexdigest()
    return str(int(digest[:15], 16))  # numeric like an exchange id, stable across imports


def read_fills(path: Path, fmt: str | None = None) -> tuple[list[ImportedRow], ImportReport, list]:
    """Parse, validate and order a file; return kept rows, the report and the rejected rows."""
    text = path.read_text(encoding="utf-8-sig") if path.suffix else path.read_text()
    fmt = fmt or detect_format(text[:200])
    raws = _rows_binance(text) if fmt == "binance-copy-trading" else _rows_plain(text)
    report = ImportReport(rows=len(raws))
    rejected: list[tuple[str, str, dict]] = []
    seen: set = set()
    positions: dict[str, Decimal] = {}
    costs: dict[str, Decimal] = {}  # average entry price per symbol
    entry_decimals: dict[str, int] = {}
    kept: list[ImportedRow] = []
    for raw in raws:
        f = raw.fields
        if "error" in f:
            rejected.append(("malformed", f["error"], raw.payload))
            continue
        key = f["raw"]
        if key in seen:
            report.duplicates += 1
            rejected.append(
                ("duplicate", f"line {raw.line} repeats an earlier row exactly", raw.payload)
            )
            continue
        seen.add(key)
        symbol = f["symbol"]
        trade = Trade(
            trade_id=f.get("trade_id") or _trade_id(key),
            order_id=None,  # type: ignore[arg-type]
            client_order_id=None,
            symbol=symbol,
            side=f["side"],
            price=f["price"],
            quantity=f["quantity"],
            fee=ZERO,
            fee_asset="USDT",
            realised_pnl=f["pnl"],
            is_maker=False,
            traded_at=f["time"],
        )
        markets = {symbol: None} if _SYMBOL.match(symbol) else {}
        problem = ingest.validate(trade, markets, None, None)  # type: ignore[arg-type]
        if problem:
            rejected.append((problem.reason_code, problem.reason, raw.payload))
            continue
        position = positions.get(symbol, ZERO)
        legs = ingest.split_legs("futures", trade.side, trade.quantity, position)
        opening = legs[0].opening
        if f.get("opens") is not None and f["opens"] != opening and position != 0:
            rejected.append(
                (
                    "out_of_order",
                    f"line {raw.line}: {'opens' if f['opens'] else 'closes'} but the position is {position}",
                    raw.payload,
                )
            )
            continue
        row = ImportedRow(
            raw.line, trade, opening, position, f["pnl"], price_decimals=f["price_decimals"]
        )
        if f.get("opens") is False and position == 0:
            row.opening = False  # a close of a position opened before the file starts: no basis
        elif not opening:
            closing = legs[0].quantity
            direction = 1 if position > 0 else -1
            row.recomputed_pnl = (closing * (trade.price - costs[symbol]) * direction).quantize(
                UNIT
            )
            row.entry_decimals = entry_decimals.get(symbol, 8)
        # average-cost position bookkeeping
        signed = trade.quantity if trade.side == "buy" else -trade.quantity
        if row.opening:
            total = abs(position) + trade.quantity
            costs[symbol] = (
                abs(position) * costs.get(symbol, ZERO) + trade.quantity * trade.price
            ) / total
            entry_decimals[symbol] = max(entry_decimals.get(symbol, 0), f["price_decimals"])
            positions[symbol] = position + signed
        elif position != 0:
            after = position + signed
            positions[symbol] = after if (after > 0) == (position > 0) else ZERO
            if positions[symbol] == 0:
                costs.pop(symbol, None)
                entry_decimals.pop(symbol, None)
        kept.append(row)
    for code, _, _ in rejected:
        report.rejected[code] = report.rejected.get(code, 0) + 1
    report.kept = len(kept)
    _compare(kept, report)
    return kept, report, rejected


def _compare(rows: list[ImportedRow], report: ImportReport) -> None:
    worst = []
    for row in rows:
        if row.opening:
            report.opening += 1
            continue
        report.closing += 1
        if row.published_pnl is None:
            continue
        if row.recomputed_pnl is None:
            report.pnl_no_basis += 1
            continue
        report.pnl_compared += 1
        report.published_total += row.published_pnl
        report.recomputed_total += row.recomputed_pnl
        diff = abs(row.recomputed_pnl - row.published_pnl)
        bound = row.trade.quantity * (
            Decimal(5).scaleb(-row.price_decimals - 1) + Decimal(5).scaleb(-row.entry_decimals - 1)
        )
        if diff <= Decimal("0.005"):
            report.pnl_match_cent += 1
        if diff <= max(Decimal("0.005"), bound):
            report.pnl_within_precision += 1
        worst.append((diff, row))
    worst.sort(key=lambda x: x[0], reverse=True)
    report.worst = [
        {
            "line": r.line,
            "symbol": r.trade.symbol,
            "published": str(r.published_pnl),
            "recomputed": str(r.recomputed_pnl),
            "difference": str(d),
        }
        for d, r in worst[:5]
    ]


def import_fills(
    session: Session, portfolio_id: int, path: Path, fmt: str | None = None
) -> ImportReport:
    """Validate and store a file of past leader fills for ``portfolio_id`` (in the caller's transaction)."""
    kept, report, rejected = read_fills(path, fmt)
    source = f"import:{path.name}"[:32]
    existing = set(
        session.execute(
            select(LeaderFill.symbol, LeaderFill.exchange_trade_id).where(
                LeaderFill.portfolio_id == portfolio_id
            )
        ).all()
    )
    rows = []
    for r in kept:
        t = r.trade
        if (t.symbol, t.trade_id) in existing:
            report.already_stored += 1
            continue
        rows.append(
            {
                "portfolio_id": portfolio_id,
                "exchange_trade_id": t.trade_id,
                "exchange_order_id": None,
                "symbol": t.symbol,
                "side": t.side,
                "price": t.price,
                "quantity": t.quantity,
                "fee": ZERO,
                "fee_asset": "USDT",
                "realised_pnl": r.published_pnl,
                "recomputed_pnl": r.recomputed_pnl,
                "traded_at": t.traded_at,
                "is_opening": r.opening,
                "position_before": r.position_before,
                "source": "import",
            }
        )
    if rows:
        session.execute(LeaderFill.__table__.insert(), rows)
    report.stored = len(rows)
    if rejected:
        session.execute(
            QuarantinedEvent.__table__.insert(),
            [
                {
                    "source": source,
                    "portfolio_id": portfolio_id,
                    "reason_code": code,
                    "reason": reason,
                    "payload": payload,
                    "received_at": datetime.now(UTC),
                }
                for code, reason, payload in rejected
            ],
        )
    return report
