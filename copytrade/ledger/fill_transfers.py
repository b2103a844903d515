"""The ledger transfers of one follower fill: the one builder, for the engine and every fixture.

Postings of one follower fill (``venue`` is the exchange account's venue; every transfer is keyed
``<code>:<key>``, so one fill's transfers share their key):

- spot, code ``copy_fill``: a buy moves cost = quantity × price in the quote asset from
  follower:<copy>:cash to exchange:<venue> and quantity in the base asset the other way (a sell
  is the mirror image);
- futures: no asset changes hands on a fill; a closing fill moves its realised PnL in the quote
  asset between exchange:<venue> and follower:<copy>:cash (code ``realised_pnl``);
- fee, code ``trading_fee``: follower:<copy>:cash → platform:fees, in the fee's asset (R-FEE-1);
- rebate, code ``fee_rebate``: platform:fees → leader:<portfolio>:rebates, 10 % of the fee
  (R-FEE-2, R-FEE-4, R-LED-6).

Rounding, one rule (R-SET-10): every amount computed here (the spot cost, the rebate) is
truncated towards zero to 1e-8 (``copytrade.domain.money.round_down``), so nobody is moved more
than the formula gives. Quantities, fees and realised PnL arrive exact (from the exchange, or from
``copytrade.domain.fills``) and are posted as they are.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from copytrade.domain.fees import leader_rebate
from copytrade.domain.money import round_down
from copytrade.ledger.accounts import PLATFORM_FEES, exchange, follower_cash, leader_rebates
from copytrade.ledger.service import Leg, TransferSpec


def spot_cost(quantity: Decimal, price: Decimal) -> Decimal:
    """Return the quote amount of a spot fill: quantity × price, rounded down to 1e-8 (R-SET-10)."""
    return round_down(quantity * price)


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
    at: datetime | None = None,
) -> list[TransferSpec]:
    """Return the ledger transfers of one follower fill (see the module docstring).

    ``kind`` is ``spot`` or ``futures``; ``at`` stamps the transfers (None: when posted).
    """
    cash = follower_cash(copy_id)
    counterparty = exchange(venue)
    specs: list[TransferSpec] = []
    if kind == "spot":
        cost = spot_cost(quantity, price)
        sign = 1 if side == "buy" else -1
        legs = (
            Leg(cash, quote, -sign * cost),
            Leg(counterparty, quote, sign * cost),
            Leg(counterparty, base, -sign * quantity),
            Leg(cash, base, sign * quantity),
        )
        specs.append(TransferSpec(f"copy_fill:{key}", "copy_fill", legs, refs=refs, at=at))
    elif realised_pnl:
        legs = (Leg(counterparty, quote, -realised_pnl), Leg(cash, quote, realised_pnl))
        specs.append(TransferSpec(f"realised_pnl:{key}", "realised_pnl", legs, refs=refs, at=at))
    if fee > 0:
        legs = (Leg(cash, fee_asset, -fee), Leg(PLATFORM_FEES, fee_asset, fee))
        specs.append(TransferSpec(f"trading_fee:{key}", "trading_fee", legs, refs=refs, at=at))
        rebate = leader_rebate(fee)
        if rebate > 0:
            legs = (
                Leg(PLATFORM_FEES, fee_asset, -rebate),
                Leg(leader_rebates(portfolio_id), fee_asset, rebate),
            )
            specs.append(TransferSpec(f"fee_rebate:{key}", "fee_rebate", legs, refs=refs, at=at))
    return specs
