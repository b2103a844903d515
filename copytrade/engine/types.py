"""The named types that travel between the engine's stages (accept → size → persist → send → record)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from copytrade.engine.state import CopyState


@dataclass(slots=True)
class Intent:
    """An intent the engine is about to send, with what recording needs."""

    intent_id: int
    portfolio_id: int
    copy: CopyState
    index: int | None  # position in the portfolio's book (None: copy no longer active)
    client_order_id: str
    symbol: str
    side: str
    quantity: Decimal
    reduce_only: bool
    leverage: int | None
    leader_fill_id: int | None
    leader_price: Decimal | None
    leader_time: datetime | None
    kind: str = "copy"
    leg: int = 0


@dataclass(slots=True)
class FillReport:
    """What one leader event produced (for logs, tests and the benchmark)."""

    leader_fill_id: int | None = None
    quarantined: str | None = None
    merged: bool = False  # already stored: the same trade from another source (R-IN-3)
    intents: int = 0
    sent: int = 0
    skipped: int = 0
    first_sent_at: datetime | None = None
    last_ack_at: datetime | None = None
    leader_time: datetime | None = None  # the leader fill's exchange time
    received_at: datetime | None = None  # when the engine got the event
    sized_at: datetime | None = None  # after sizing and persisting the intents
