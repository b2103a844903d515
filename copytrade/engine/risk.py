"""Risk on the mark: which copies stop and which positions close at the current prices.

Evaluated by the engine after every leader fill and on every mark update (``marks_feed``, every
few seconds for each held symbol, and once right after a start), so a stop fires within one mark
update of its threshold even while the leader is idle (R-COPY-3, R-COPY-12).

- **Copy stop-loss / take-profit** (R-COPY-3): the copy's result *after fees and shares*
  (``copytrade.domain.copy_funds.result_after_fees_and_shares``): the engine's realised PnL and
  fees of the copy, its open positions at the mark, less the profit shares already paid to the
  leader (``copy_settlement_states.share_paid``, read once per evaluation), against the principal
  (allocation plus added funds). The trigger names come from ``copytrade.domain.triggers``.
- **Per-position TP/SL** (R-COPY-12): the position's unrealised PnL at the mark over its margin
  (futures) or cost (spot).
- **Daily loss guard** (R-X-3) stays in the engine core: it pauses on the realised loss of the day.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from copytrade.domain.copy_funds import copy_stop_hit, result_after_fees_and_shares
from copytrade.domain.money import ZERO
from copytrade.domain.triggers import Trigger
from copytrade.engine.state import CopyState, PortfolioState
from models.settlement import CopySettlementState

HUNDRED = Decimal(100)


@dataclass(frozen=True, slots=True)
class CopyStop:
    copy: CopyState
    trigger: Trigger
    result: Decimal  # after fees and shares (R-COPY-3)
    threshold: Decimal


def unrealised(copy: CopyState, prices: Mapping[str, Decimal]) -> Decimal:
    """The copy's open positions at ``prices`` (a symbol without a price counts nothing yet)."""
    return sum(
        (p.unrealised(prices[s]) for s, p in copy.positions.items() if p.quantity and s in prices),
        ZERO,
    )


def shares_paid(session: Session, copies: Iterable[CopyState]) -> dict[int, Decimal]:
    """Profit shares each copy has paid its leader so far, in its settlement asset (R-SET-8)."""
    quote = {c.copy_id: c.quote for c in copies}
    if not quote:
        return {}
    st = CopySettlementState
    rows = session.execute(
        select(st.copy_id, st.asset, st.share_paid).where(st.copy_id.in_(sorted(quote)))
    )
    return {cid: paid for cid, asset, paid in rows if quote.get(cid) == asset}


def watched(ps: PortfolioState) -> list[CopyState]:
    """The copies with a copy-level stop-loss or take-profit set."""
    return [c for c in ps.copies if c.stop_loss is not None or c.take_profit is not None]


def copy_stops(
    copies: Iterable[CopyState], prices: Mapping[str, Decimal], paid: Mapping[int, Decimal]
) -> list[CopyStop]:
    """The copies whose result after fees and shares reached their stop-loss or take-profit."""
    out = []
    for c in copies:
        result = result_after_fees_and_shares(
            realised=c.realised,
            fees=c.fees,
            unrealised=unrealised(c, prices),
            shares_paid=paid.get(c.copy_id, ZERO),
        )
        hit = copy_stop_hit(
            result,
            c.allocation,
            None if c.stop_loss is None else c.stop_loss * HUNDRED,
            None if c.take_profit is None else c.take_profit * HUNDRED,
        )
        if hit is not None:
            out.append(CopyStop(c, hit[0], result, hit[1]))
    return out


def position_closes(
    copies: Iterable[CopyState], symbols: Iterable[str], prices: Mapping[str, Decimal]
) -> list[tuple[CopyState, str]]:
    """(copy, symbol) whose position reached its per-position take-profit or stop-loss."""
    out = []
    symbols = [s for s in symbols if s in prices]
    for c in copies:
        if not (c.position_tp or c.position_sl):
            continue
        for symbol in symbols:
            pos = c.positions.get(symbol)
            if not pos or not pos.quantity:
                continue
            basis = abs(pos.quantity) * pos.average_price / (c.leverage or 1)
            if basis <= 0:
                continue
            roi = pos.unrealised(prices[symbol]) / basis
            if (c.position_tp and roi >= c.position_tp) or (
                c.position_sl and roi <= -c.position_sl
            ):
                out.append((c, symbol))
    return out
