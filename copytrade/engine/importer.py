"""Import a leader's past fills through the same validation and quarantine as live ingest (R-IN-1).

Two formats are read:

``binance-copy-trading`` — the trade history scraped from Binance's copy-trading page (the file in
``shared/data/leaders/``): UTF-8 with a BOM, CRLF, header ``Column1…Column7``: time in UTC+3,
symbol with a ``Perp`` suffix, a concatenation of the other columns (ignored), side
(``Open long``/``Close long``/``Open short``/``Close short``), price, quantity with unit and thousands
separators (``"97,649 1000PEPE"``), realised PnL with unit (``-6.10198149 USDT``); newest first.

``plain`` — a documented CSV with a header row::

    time,symbol,side,price,quantity[,realised_pnl][,trade_id][,position_side]
    2025-03-21T17:43:25Z,SUIUSDT,sell,2.2735,311.2,-16.74105

``time`` is ISO 8601 with an offset (``Z`` or ``+03:00``); a time without an offset is refused,
because guessing a time zone corrupts the history. ``side`` is buy/sell. ``position_side`` is
``long`` or ``short`` (hedge mode: whether the fill opens or closes follows from side and position
side) or ``net`` (one-way mode, the default: it follows from the position, as for live fills).
``trade_id`` is optional.

Every fill is stored with its position side: the Binance export's ``Open long``/``Close short``…
give ``long``/``short``; in hedge mode a close larger than the known position closed a position
opened before the file starts (the metrics treat that part at its cost, docs/metrics.md).

Every row is checked field by field (exact, finite, positive and storable price and quantity, a
known side, a mappable symbol, an aware time, a line of at most ``MAX_LINE_CHARS`` characters of
UTF-8) and then like a live fill (``ingest.validate``). A bad row is quarantined on its own with
the field, the value and the rule it broke; the other rows are stored. Rows that repeat an earlier
row exactly (the scraper read some pages twice) are duplicates: dropped, counted, and quarantined
with the reason. Kept fills are stored in time order as ``LeaderFill`` rows with
``source='import'`` and a deterministic trade id (the row's content hash when the file has none),
so importing the same file twice stores nothing twice (append-only).

Capital (docs/metrics.md, "Capital of an imported history"): each import is recorded in
``leader_history_imports`` with its first fill and the day from which the portfolio's declared
capital counts — the UTC day of the file's first fill, or an explicit ``capital_since`` no later
than that — so the metrics over the imported history run on the capital, not on nothing.

The platform recomputes the realised PnL of every closing fill on the average-cost basis of the
leader's position per symbol (Binance's method for one-way positions) and compares it with the
published value; ``ImportReport`` gives the share that matches to the cent and the share within
what the file's price precision allows (entry and exit prices are shown rounded to the digits
the file prints: half a unit of the last digit, times the quantity, per price).
"""

from __future__ import annotations

import csv
import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from copytrade.domain.money import UNIT, ZERO, to_units
from copytrade.engine import ingest
from copytrade.exchange.protocol import Trade
from models import LeaderFill, LeadPortfolio, QuarantinedEvent
from models.history import LeaderHistoryImport

CENT = Decimal("0.01")
BINANCE_PAGE_TZ = timezone(timedelta(hours=3))  # the scraped page shows UTC+3
_SYMBOL = re.compile(r"^[A-Z0-9]{2,20}USDT$")
# A fill line is under 200 characters; anything far longer is garbage and must not reach the
# csv module (whose field limit raises mid-file) or the quarantine table whole.
MAX_LINE_CHARS = 4096
_PAYLOAD_CHARS = 300  # what the quarantine keeps of a bad line
POSITION_SIDES = ("long", "short", "net")
_BINANCE_ACTIONS = {  # action → (order side, position side, opens)
    "open long": ("buy", "long", True),
    "close long": ("sell", "long", False),
    "open short": ("sell", "short", True),
    "close short": ("buy", "short", False),
}


@dataclass
class ImportedRow:
    line: int
    trade: Trade
    opening: bool
    position_before: Decimal
    published_pnl: Decimal | None
    position_side: str = "net"
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
    first_fill_at: datetime | None = None
    last_fill_at: datetime | None = None
    capital_since: date | None = None

    def share(self, n: int) -> float:
        return round(n / self.pnl_compared, 4) if self.pnl_compared else 0.0

    def as_dict(self) -> dict:
        return {
            "rows": self.rows,
            "kept": self.kept,
            "stored": self.stored,
            "already_stored": self.already_stored,
            "duplicates": self.duplicates,
            "quarantined": sum(self.rejected.values()),
            "rejected": self.rejected,
            "opening": self.opening,
            "closing": self.closing,
            "first_fill_at": self.first_fill_at.isoformat() if self.first_fill_at else None,
            "last_fill_at": self.last_fill_at.isoformat() if self.last_fill_at else None,
            "capital_since": self.capital_since.isoformat() if self.capital_since else None,
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


class FieldError(ValueError):
    """One field of one row broke a rule: the quarantine records field, value and rule."""

    def __init__(self, field_name: str, value: object, rule: str, code: str = "malformed") -> None:
        shown = value if isinstance(value, str) else repr(value)
        if len(shown) > 60:
            shown = f"{shown[:60]}… ({len(shown):,} characters)"
        super().__init__(f"{field_name} {shown!r}: {rule}")
        self.field_name, self.value, self.rule, self.code = field_name, shown, rule, code


@dataclass
class _Raw:
    line: int
    fields: dict
    payload: dict


def _payload(line: int, text: str) -> dict:
    if len(text) > _PAYLOAD_CHARS:
        return {"line": line, "text": text[:_PAYLOAD_CHARS], "chars": len(text)}
    return {"line": line, "text": text}


def _amount(text: str, field_name: str, *, positive: bool, unit: str | None = None) -> Decimal:
    """Parse an exact amount (``"97,649 1000PEPE"``, ``-6.10198149 USDT``, ``2.2735``).

    The rules: a finite decimal number (no NaN, no infinity, no exponent overflow), storable
    exactly in the ledger (at most 8 decimals, within BIGINT 1e-8 units), positive where asked,
    and in the expected unit when the value carries one.
    """
    raw = (text or "").strip()
    number, _, found_unit = raw.partition(" ")
    try:
        value = Decimal(number.replace(",", ""))
    except InvalidOperation:
        raise FieldError(field_name, raw, "is not a decimal number") from None
    if not value.is_finite():
        raise FieldError(field_name, raw, "must be a finite number")
    try:
        to_units(value, field_name)
    except ValueError:
        raise FieldError(
            field_name, raw, "must fit the ledger exactly (at most 8 decimals, below 9.2e10)"
        ) from None
    if positive and value <= 0:
        raise FieldError(field_name, raw, "must be greater than zero")
    found_unit = found_unit.strip()
    if unit is not None and found_unit and found_unit != unit:
        raise FieldError(field_name, raw, f"unit must be {unit}")
    return value


def _decimals(text: str) -> int:
    number = text.strip().partition(" ")[0]
    return len(number.split(".")[1]) if "." in number else 0


def _symbol(text: str, field_name: str = "symbol") -> str:
    symbol = text.strip().upper()
    if not _SYMBOL.match(symbol):
        raise FieldError(
            field_name,
            text,
            "must be an exchange id quoted in USDT, e.g. SUIUSDT",
            "unknown_symbol",
        )
    return symbol


def detect_format(head: str) -> str:
    first = head.lstrip("\ufeff").splitlines()[0] if head else ""
    if first.startswith("Column1"):
        return "binance-copy-trading"
    return "plain"


def _lines(data: bytes) -> list[tuple[int, str | None, str, str]]:
    """Split the file into (line number, text or None, problem, shown) trusting no line.

    A line that is not UTF-8 or longer than ``MAX_LINE_CHARS`` is returned with a problem and
    no text, so one bad line is quarantined and the rest is read.
    """
    out = []
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    for n, chunk in enumerate(data.split(b"\n"), start=1):
        chunk = chunk.removesuffix(b"\r")
        if not chunk.strip():
            continue
        if len(chunk) > MAX_LINE_CHARS:
            shown = chunk[:_PAYLOAD_CHARS].decode("utf-8", "replace")
            out.append(
                (n, None, f"line of {len(chunk):,} bytes: at most {MAX_LINE_CHARS:,}", shown)
            )
            continue
        try:
            out.append((n, chunk.decode("utf-8"), "", ""))
        except UnicodeDecodeError as exc:
            shown = chunk[:_PAYLOAD_CHARS].decode("utf-8", "replace")
            out.append(
                (n, None, f"line is not UTF-8 text ({exc.reason} at byte {exc.start})", shown)
            )
    return out


def _cells(text: str) -> list[str]:
    return next(csv.reader([text]), [])


def _binance_row(n: int, row: list[str]) -> dict:
    if len(row) != 7:
        raise FieldError("row", f"{len(row)} columns", "the export has 7 columns")
    time_s, symbol_s, _concat, side_s, price_s, qty_s, pnl_s = row
    fields: dict = {"raw": tuple(row)}
    try:
        local = datetime.strptime(time_s.strip(), "%Y-%m-%d %H:%M:%S")
    except ValueError:
        raise FieldError("time", time_s, "must be YYYY-MM-DD HH:MM:SS (UTC+3)") from None
    fields["time"] = local.replace(tzinfo=BINANCE_PAGE_TZ).astimezone(UTC)
    if not symbol_s.strip().endswith("Perp"):
        raise FieldError("symbol", symbol_s, "must carry the Perp suffix, e.g. SUIUSDTPerp")
    fields["symbol"] = _symbol(symbol_s.strip().removesuffix("Perp"))
    action = side_s.strip().lower()
    if action not in _BINANCE_ACTIONS:
        raise FieldError("side", side_s, "must be Open long, Close long, Open short or Close short")
    fields["side"], fields["position_side"], fields["opens"] = _BINANCE_ACTIONS[action]
    fields["price"] = _amount(price_s, "price", positive=True)
    fields["price_decimals"] = _decimals(price_s)
    base = fields["symbol"].removesuffix("USDT")
    fields["quantity"] = _amount(qty_s, "quantity", positive=True, unit=base)
    fields["pnl"] = _amount(pnl_s, "realised_pnl", positive=False, unit="USDT")
    return fields


_PLAIN_REQUIRED = ("time", "symbol", "side", "price", "quantity")
_PLAIN_OPTIONAL = ("realised_pnl", "trade_id", "position_side")


def _plain_row(n: int, row: dict) -> dict:
    fields: dict = {"raw": tuple(sorted(row.items()))}
    time_s = row["time"]
    try:
        stamp = datetime.fromisoformat(time_s.strip().replace("Z", "+00:00"))
    except ValueError:
        raise FieldError("time", time_s, "must be ISO 8601 with a UTC offset") from None
    if stamp.tzinfo is None:
        raise FieldError("time", time_s, "has no UTC offset (add Z or +hh:mm)")
    fields["time"] = stamp.astimezone(UTC)
    fields["symbol"] = _symbol(row["symbol"])
    side = row["side"].strip().lower()
    if side not in ("buy", "sell"):
        raise FieldError("side", row["side"], "must be buy or sell")
    position_side = (row.get("position_side") or "net").strip().lower()
    if position_side not in POSITION_SIDES:
        raise FieldError("position_side", row["position_side"], "must be long, short or net")
    fields["side"], fields["position_side"] = side, position_side
    fields["opens"] = (
        None if position_side == "net" else (side == "buy") == (position_side == "long")
    )
    fields["price"] = _amount(row["price"], "price", positive=True)
    fields["price_decimals"] = _decimals(row["price"])
    fields["quantity"] = _amount(row["quantity"], "quantity", positive=True)
    pnl = (row.get("realised_pnl") or "").strip()
    fields["pnl"] = _amount(pnl, "realised_pnl", positive=False) if pnl else None
    trade_id = (row.get("trade_id") or "").strip()
    if trade_id and not (trade_id.isdigit() and len(trade_id) <= 20):
        raise FieldError("trade_id", trade_id, "must be the exchange's numeric trade id")
    fields["trade_id"] = trade_id or None
    return fields


def _rows(data: bytes, fmt: str | None) -> list[_Raw]:
    lines = _lines(data)
    if not lines or lines[0][1] is None:
        raise ValueError("file: the first line must be a readable header row")
    header_line, header_text, _, _ = lines[0]
    header = [h.strip() for h in _cells(header_text)]
    fmt = fmt or detect_format(header_text)
    if fmt == "binance-copy-trading" and header[:1] != ["Column1"]:
        raise ValueError("file: not the Binance copy-trading export (header Column1…Column7)")
    if fmt == "plain":
        missing = [c for c in _PLAIN_REQUIRED if c not in header]
        if missing:
            raise ValueError(
                f"file: header lacks {missing} (plain format: {list(_PLAIN_REQUIRED)} "
                f"and optionally {list(_PLAIN_OPTIONAL)})"
            )
    out = []
    for n, text, problem, shown in lines[1:]:
        if text is None:
            out.append(_Raw(n, {"error": FieldError("line", shown, problem)}, _payload(n, shown)))
            continue
        payload = _payload(n, text)
        try:
            cells = _cells(text)
            if fmt == "binance-copy-trading":
                fields = _binance_row(n, cells)
            else:
                if len(cells) != len(header):
                    raise FieldError(
                        "row", f"{len(cells)} columns", f"the header has {len(header)} columns"
                    )
                fields = _plain_row(n, dict(zip(header, cells, strict=True)))
        except (FieldError, csv.Error) as exc:
            error = exc if isinstance(exc, FieldError) else FieldError("row", text, str(exc))
            fields = {"error": error}
        out.append(_Raw(n, fields, payload))
    if fmt == "binance-copy-trading":
        out.reverse()  # newest first in the file; time order from here on
    # a stable sort: same-second fills keep the file's order
    out.sort(key=lambda r: r.fields.get("time") or datetime.max.replace(tzinfo=UTC))
    return out


def _trade_id(raw: tuple) -> str:
    digest = hashlib.sha256(repr(raw).encode()).hexdigest()
    return str(int(digest[:15], 16))  # numeric like an exchange id, stable across imports


def read_fills(path: Path, fmt: str | None = None) -> tuple[list[ImportedRow], ImportReport, list]:
    """Parse, validate and order a file; return kept rows, the report and the rejected rows.

    Raises ValueError only for a file that cannot be read as a whole (no header, wrong format);
    every bad row is returned among the rejected rows with the field, value and rule.
    """
    raws = _rows(path.read_bytes(), fmt)
    report = ImportReport(rows=len(raws))
    rejected: list[tuple[str, str, dict]] = []
    seen: set = set()
    positions: dict[tuple[str, str], Decimal] = {}  # (symbol, position side) → signed quantity
    costs: dict[tuple[str, str], Decimal] = {}  # average entry price
    entry_decimals: dict[tuple[str, str], int] = {}
    kept: list[ImportedRow] = []
    for raw in raws:
        f = raw.fields
        if "error" in f:
            error = f["error"]
            payload = {
                **raw.payload,
                "field": error.field_name,
                "value": error.value,
                "rule": error.rule,
            }
            rejected.append((error.code, f"line {raw.line}: {error}", payload))
            continue
        key = f["raw"]
        if key in seen:
            report.duplicates += 1
            rejected.append(
                ("duplicate", f"line {raw.line} repeats an earlier row exactly", raw.payload)
            )
            continue
        seen.add(key)
        symbol, position_side = f["symbol"], f["position_side"]
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
        problem = ingest.validate(trade, {symbol: None}, None, None)  # type: ignore[dict-item]
        if problem:
            rejected.append(
                (problem.reason_code, f"line {raw.line}: {problem.reason}", raw.payload)
            )
            continue
        book = (symbol, position_side)
        position = positions.get(book, ZERO)
        if position_side == "net":
            legs = ingest.split_legs("futures", trade.side, trade.quantity, position)
            opening, known_close = legs[0].opening, legs[0].quantity
        else:
            opening = f["opens"]
            known_close = min(trade.quantity, abs(position))
        row = ImportedRow(
            raw.line,
            trade,
            opening,
            position,
            f["pnl"],
            position_side=position_side,
            price_decimals=f["price_decimals"],
        )
        if not opening and position != 0 and known_close == trade.quantity:
            direction = 1 if position > 0 else -1
            row.recomputed_pnl = (known_close * (trade.price - costs[book]) * direction).quantize(
                UNIT
            )
            row.entry_decimals = entry_decimals.get(book, 8)
        # average-cost bookkeeping per position (hedge sides never cross zero)
        signed = trade.quantity if trade.side == "buy" else -trade.quantity
        if opening:
            total = abs(position) + trade.quantity
            costs[book] = (
                abs(position) * costs.get(book, ZERO) + trade.quantity * trade.price
            ) / total
            entry_decimals[book] = max(entry_decimals.get(book, 0), f["price_decimals"])
            positions[book] = position + signed
        elif position != 0:
            after = position + signed
            positions[book] = after if after != 0 and (after > 0) == (position > 0) else ZERO
            if positions[book] == 0:
                costs.pop(book, None)
                entry_decimals.pop(book, None)
        kept.append(row)
    for code, _, _ in rejected:
        report.rejected[code] = report.rejected.get(code, 0) + 1
    report.kept = len(kept)
    if kept:
        report.first_fill_at = kept[0].trade.traded_at
        report.last_fill_at = kept[-1].trade.traded_at
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
    session: Session,
    portfolio_id: int,
    path: Path,
    fmt: str | None = None,
    capital_since: date | None = None,
) -> ImportReport:
    """Validate and store a file of past leader fills for ``portfolio_id`` (in the caller's transaction).

    Bad rows are quarantined one by one; the rest is stored. The import is recorded with the day
    from which the portfolio's capital counts (``capital_since``, default the UTC day of the
    file's first fill); a ``capital_since`` after that day is refused (ValueError, nothing stored),
    because the fills before it would run on no capital.
    """
    if session.get(LeadPortfolio, portfolio_id) is None:
        raise ValueError(f"portfolio {portfolio_id} does not exist (R-IN-2)")
    data = path.read_bytes()
    kept, report, rejected = read_fills(path, fmt)
    if kept:
        first_day = kept[0].trade.traded_at.date()
        if capital_since is not None and capital_since > first_day:
            raise ValueError(
                f"capital_since {capital_since} is after the first imported fill "
                f"({kept[0].trade.traded_at.isoformat()}): the history before it would run on "
                "no capital; give a day on or before it"
            )
        report.capital_since = capital_since or first_day
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
                "position_side": r.position_side,
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
    if kept:
        _record_import(session, portfolio_id, path.name, data, report)
    return report


def _record_import(
    session: Session, portfolio_id: int, file_name: str, data: bytes, report: ImportReport
) -> None:
    """Record the import once per (portfolio, file content, capital day): re-running adds nothing."""
    digest = hashlib.sha256(data).hexdigest()
    seen = session.scalar(
        select(LeaderHistoryImport.id).where(
            LeaderHistoryImport.portfolio_id == portfolio_id,
            LeaderHistoryImport.file_sha256 == digest,
            LeaderHistoryImport.capital_since == report.capital_since,
        )
    )
    if seen is None:
        session.add(
            LeaderHistoryImport(
                portfolio_id=portfolio_id,
                file_name=file_name[:128],
                file_sha256=digest,
                first_fill_at=report.first_fill_at,
                last_fill_at=report.last_fill_at,
                fills=report.kept,
                capital_since=report.capital_since,
            )
        )
        session.flush()
