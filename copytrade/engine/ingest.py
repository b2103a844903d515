"""Ingest leader fills: validate each exchange event, split it into legs, or quarantine it (R-IN-1).

A leader fill is accepted once per (portfolio, symbol, exchange trade id). An event is quarantined,
with its reason, when it is malformed (not a trade, bad side, non-positive or non-finite amounts,
naive time, non-numeric id), names a symbol the platform does not list, repeats a stored trade id
(duplicate), or is history from before the engine started following the symbol (a trade id at or
below the symbol's baseline). A genuine fill that merely arrives late (below the watermark, after a
gap, a reconnect or a restart) is not malformed: it is stored and applied (R-IN-1, R-IN-3).
Nothing here raises: one bad event never stops other leaders.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime
from decimal import Decimal

from copytrade.domain.markets import Market
from copytrade.domain.money import ZERO
from copytrade.exchange.protocol import Trade


@dataclass(frozen=True, slots=True)
class Leg:
    """One part of a leader fill: an opening or a reduction of the leader's position."""

    index: int
    opening: bool
    quantity: Decimal
    position_before: Decimal  # absolute leader position the reduction is a fraction of


@dataclass(frozen=True, slots=True)
class Rejection:
    reason_code: str  # malformed | duplicate | before_baseline | unknown_symbol
    reason: str


def payload_of(event: object) -> dict | str:
    """Return a JSON-safe copy of an event for the quarantine table."""
    if isinstance(event, Trade):
        raw = asdict(event)
        return json.loads(json.dumps(raw, default=str))
    if isinstance(event, dict):
        return json.loads(json.dumps(event, default=str))
    return repr(event)[:2000]


def validate(
    event: object,
    markets: dict[str, Market],
    known_ids: set[str] | None,
    baseline: int | None,
) -> Rejection | None:
    """Return why ``event`` must be quarantined, or None when it is a good new leader fill."""
    if not isinstance(event, Trade):
        return Rejection("malformed", f"not a trade event: {type(event).__name__}")
    problems = []
    if not isinstance(event.trade_id, str) or not event.trade_id.isdigit():
        problems.append(f"trade_id {event.trade_id!r} is not a numeric exchange id")
    if event.side not in ("buy", "sell"):
        problems.append(f"side {event.side!r} is not buy or sell")
    for name in ("price", "quantity"):
        value = getattr(event, name)
        if not isinstance(value, Decimal) or not value.is_finite() or value <= 0:
            problems.append(f"{name} {value!r} is not a positive exact number")
    if not isinstance(event.traded_at, datetime) or event.traded_at.tzinfo is None:
        problems.append(f"traded_at {event.traded_at!r} is not a time-zone aware time")
    if problems:
        return Rejection("malformed", "; ".join(problems))
    if event.symbol not in markets:
        return Rejection("unknown_symbol", f"symbol {event.symbol!r} is not listed by the platform")
    if known_ids is not None and event.trade_id in known_ids:
        return Rejection("duplicate", f"trade {event.symbol}#{event.trade_id} was already stored")
    if baseline is not None and int(event.trade_id) <= baseline:
        return Rejection(
            "before_baseline",
            f"trade {event.symbol}#{event.trade_id} is at or below #{baseline}, where the engine "
            "started following the symbol: history is not copied (R-IN-3)",
        )
    return None


def split_legs(kind: str, side: str, quantity: Decimal, position: Decimal) -> list[Leg]:
    """Split a leader fill into legs given the leader's signed position before it.

    Spot: a buy opens; a sell reduces (never below zero: a spot leader cannot go short).
    Futures (one-way mode): a fill against the position reduces it, and the part beyond zero
    opens the other side as a second leg.
    """
    signed = quantity if side == "buy" else -quantity
    if kind == "spot":
        if side == "buy":
            return [Leg(0, True, quantity, abs(position))]
        return [Leg(0, False, quantity, max(position, ZERO))]
    if position == 0 or (position > 0) == (signed > 0):
        return [Leg(0, True, quantity, abs(position))]
    closing = min(quantity, abs(position))
    legs = [Leg(0, False, closing, abs(position))]
    if quantity > closing:
        legs.append(Leg(1, True, quantity - closing, ZERO))
    return legs


def position_after(kind: str, side: str, quantity: Decimal, position: Decimal) -> Decimal:
    """Return the leader's signed position after a fill (spot never below zero)."""
    after = position + (quantity if side == "buy" else -quantity)
    return max(after, ZERO) if kind == "spot" else after
