"""Stage 2, size: the portfolio's copy book + a ``LeaderFill`` → an ``IntentBatch``.

Every active copy is sized in one vectorised pass per leg (``copytrade.domain.sizing``): a
quantity in 1e-8 units and a code (send, or the reason it is skipped) per copy. While the
portfolio's history is incomplete, openings are skipped (close-only, R-IN-3).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from copytrade.domain.sizing import FillSpec, Sizing, size_fill
from copytrade.engine import history
from copytrade.engine.accept import LeaderFill
from copytrade.engine.ingest import Leg
from copytrade.engine.state import PortfolioState


class LegSizing(NamedTuple):
    """One leg of the leader fill and every copy's sizing of it (arrays in book order)."""

    leg: Leg
    sizing: Sizing


@dataclass(slots=True)
class IntentBatch:
    """What one leader fill asks of every active copy, before anything is stored or sent."""

    fill: LeaderFill
    legs: list[LegSizing]
    # the accumulate remainders (R-COPY-6) before sizing: persist stores those that changed
    accumulated_before: dict[str, np.ndarray]


def size(ps: PortfolioState, fill: LeaderFill) -> IntentBatch:
    """Size every active copy for each leg of ``fill``."""
    book = ps.book
    trade = fill.trade
    aum_capped = ps.aum_capped()
    before = {s: a.copy() for s, a in book.accumulated.items()}
    legs = []
    for leg in fill.legs:
        if leg.opening and ps.ingest_paused:  # close-only while incomplete (R-IN-3)
            legs.append(LegSizing(leg, history.paused_sizing(book)))
            continue
        spec = FillSpec(
            symbol=trade.symbol,
            side=trade.side,
            opening=leg.opening,
            quantity=leg.quantity,
            price=trade.price,
            leader_position_before=leg.position_before,
            leader_equity=ps.leader_equity,
            reference_price=fill.reference_price,
            market=fill.market,
            aum_capped=aum_capped,
            first_fill_of_order=fill.first_of_order,
        )
        legs.append(LegSizing(leg, size_fill(book, spec)))
    return IntentBatch(fill, legs, before)
