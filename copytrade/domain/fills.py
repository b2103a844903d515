"""What one follower fill does to its copy, before any ledger: position, realised PnL, slippage.

Realised PnL is on the average-cost basis per copy and symbol, gross of fees (fees are recorded
apart), rounded towards zero to 1e-8 (R-SET-10). The ledger transfers of a fill are built from
these in ``copytrade.ledger.fill_transfers``.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal

from copytrade.domain.money import UNIT, ZERO


@dataclass(slots=True)
class PositionState:
    """A copy's position in one symbol (signed quantity, average entry price)."""

    quantity: Decimal = ZERO
    average_price: Decimal = ZERO
    realised_pnl: Decimal = ZERO
    fees_paid: Decimal = ZERO
    accumulated: Decimal = ZERO

    def apply(self, side: str, quantity: Decimal, price: Decimal) -> Decimal:
        """Apply one execution and return its realised PnL (average-cost basis)."""
        signed = quantity if side == "buy" else -quantity
        held = self.quantity
        if held == 0 or (held > 0) == (signed > 0):
            total = abs(held) + quantity
            # The average is state, not an amount anyone is paid: nearest 1e-8, no bias.
            self.average_price = (
                (abs(held) * self.average_price + quantity * price) / total
            ).quantize(UNIT, rounding=ROUND_HALF_EVEN)
            self.quantity = held + signed
            return ZERO
        closing = min(quantity, abs(held))
        direction = 1 if held > 0 else -1
        realised = (closing * (price - self.average_price) * direction).quantize(
            UNIT, rounding=ROUND_DOWN
        )
        self.quantity = held + signed
        if self.quantity == 0:
            self.average_price = ZERO
        elif (self.quantity > 0) != (held > 0):
            self.average_price = price  # flipped through zero: the rest opened at this price
        self.realised_pnl += realised
        return realised

    def unrealised(self, mark: Decimal) -> Decimal:
        return (self.quantity * (mark - self.average_price)).quantize(UNIT, rounding=ROUND_DOWN)


def slippage_bps(side: str, leader_price: Decimal | None, price: Decimal) -> Decimal | None:
    """Return the follower's slippage in basis points, positive when worse than the leader (R-COPY-8)."""
    if not leader_price:
        return None
    diff = price - leader_price if side == "buy" else leader_price - price
    return (diff / leader_price * 10_000).quantize(UNIT, rounding=ROUND_HALF_EVEN)
