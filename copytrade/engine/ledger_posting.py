"""Follower fills into the ledger: trade, fee, the leader's rebate, and the copy's position (R-FEE-1/2/4).

Postings of one follower fill (``venue`` is the exchange account's venue):

- spot buy, code ``copy_fill``: follower:<copy>:cash −cost USDT, exchange:<venue> +cost USDT,
  exchange:<venue> −qty BASE, follower:<copy>:cash +qty BASE (a sell is the mirror image);
- futures: no asset changes hands on a fill; a closing fill moves its realised PnL in USDT between
  exchange:<venue> and follower:<copy>:cash (code ``realised_pnl``);
- fee, code ``trading_fee``: follower:<copy>:cash → platform:fees, in the fee's asset (R-FEE-1);
- rebate, code ``fee_rebate``: platform:fees → leader:<portfolio>:rebates, 10 % of the fee rounded
  down to 1e-8 (R-FEE-2, R-FEE-4, R-LED-6).

Realised PnL (spot and futures) is on the average-cost basis per copy and symbol, gross of fees
(fees are recorded apart), rounded towards zero to 1e-8.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal

from copytrade.ledger import Leg, TransferSpec
from copytrade.ledger.accounts import PLATFORM_FEES, follower_cash, leader_rebates

ZERO = Decimal(0)
E8 = Decimal("1e-8")
REBATE_RATE = Decimal("0.1")


try:  # the shared rule once the fees module is on main; the same rule privately until then
    from copytrade.domain.fees import leader_rebate as _shared_rebate  # type: ignore
except ImportError:  # pragma: no cover - depends on what is merged
    _shared_rebate = None


def leader_rebate(fee: Decimal) -> Decimal:
    """Return the leader's rebate of a fee: 10 % rounded down to 1e-8 (R-FEE-2, R-SET-10)."""
    if _shared_rebate is not None:
        return _shared_rebate(fee)
    return (fee * REBATE_RATE).quantize(E8, rounding=ROUND_DOWN)


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
            self.average_price = (
                (abs(held) * self.average_price + quantity * price) / total
            ).quantize(E8, rounding=ROUND_HALF_EVEN)
            self.quantity = held + signed
            return ZERO
        closing = min(quantity, abs(held))
        direction = 1 if held > 0 else -1
        realised = (closing * (price - self.average_price) * direction).quantize(
            E8, rounding=ROUND_DOWN
        )
        self.quantity = held + signed
        if self.quantity == 0:
            self.average_price = ZERO
        elif (self.quantity > 0) != (held > 0):
            self.average_price = price  # flipped through zero: the rest opened at this price
        self.realised_pnl += realised
        return realised

    def unrealised(self, mark: Decimal) -> Decimal:
        return (self.quantity * (mark - self.average_price)).quantize(E8, rounding=ROUND_DOWN)


def slippage_bps(side: str, leader_price: Decimal | None, price: Decimal) -> Decimal | None:
    """Return the follower's slippage in basis points, positive when worse than the leader (R-COPY-8)."""
    if not leader_price:
        return None
    diff = price - leader_price if side == "buy" else leader_price - price
    return (diff / leader_price * 10_000).quantize(E8, rounding=ROUND_HALF_EVEN)


def fill_transfers(
    *,
    key: str,
    copy_id: int,
    portfolio_id: int,
    venue: str,
    kind: str,
    base: str,
    quote: str,
    side: str,
    quantity: Decimal,
    price: Decimal,
    fee: Decimal,
    fee_asset: str,
    realised_pnl: Decimal,
    refs: dict,
) -> list[TransferSpec]:
    """Return the ledger transfers of one follower fill (see the module docstring)."""
    cash = follower_cash(copy_id)
    counterparty = f"exchange:{venue}"
    specs: list[TransferSpec] = []
    if kind == "spot":
        cost = (quantity * price).quantize(E8, rounding=ROUND_HALF_EVEN)
        sign = 1 if side == "buy" else -1
        specs.append(
            TransferSpec(
                key=f"copy_fill:{key}",
                code="copy_fill",
                legs=(
                    Leg(cash, quote, -sign * cost),
                    Leg(counterparty, quote, sign * cost),
                    Leg(counterparty, base, -sign * quantity),
                    Leg(cash, base, sign * quantity),
                ),
                refs=refs,
            )
        )
    elif realised_pnl:
        specs.append(
            TransferSpec(
                key=f"realised_pnl:{key}",
                code="realised_pnl",
                legs=(Leg(counterparty, quote, -realised_pnl), Leg(cash, quote, realised_pnl)),
                refs=refs,
            )
        )
    if fee > 0:
        specs.append(
            TransferSpec(
                key=f"trading_fee:{key}",
                code="trading_fee",
                legs=(Leg(cash, fee_asset, -fee), Leg(PLATFORM_FEES, fee_asset, fee)),
                refs=refs,
            )
        )
        rebate = leader_rebate(fee)
        if rebate > 0:
            specs.append(
                TransferSpec(
                    key=f"fee_rebate:{key}",
                    code="fee_rebate",
                    legs=(
                        Leg(PLATFORM_FEES, fee_asset, -rebate),
                        Leg(leader_rebates(portfolio_id), fee_asset, rebate),
                    ),
                    refs=refs,
                )
            )
    return specs
