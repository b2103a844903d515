"""Markets: precision and filters from Binance's exchangeInfo, and rounding that never rounds up (R-COPY-6).

A ``Market`` is built from Binance's raw ``exchangeInfo`` symbol entry (the ``info`` of ccxt's
market structure), so the paper exchange, the gateway and the sizing code read the same filters.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from copytrade.domain.money import ZERO, floor_to_step, to_decimal

# Binance's standard taker fee per market kind (VIP 0), used when exchangeInfo carries none.
DEFAULT_TAKER_FEE = {"spot": Decimal("0.001"), "futures": Decimal("0.0004")}


class FilterFailure(ValueError):
    """An order breaks a market filter; ``code``/``filter`` mirror Binance's answer (-1013, -4164 …)."""

    def __init__(self, filter_type: str, message: str, code: int = -1013) -> None:
        self.filter_type = filter_type
        self.code = code
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class Market:
    """One tradable symbol with Binance's filters; quantities in base units (contracts for futures)."""

    symbol: str  # exchange id, e.g. BTCUSDT
    base: str
    quote: str
    kind: str  # spot | futures
    tick_size: Decimal
    step_size: Decimal
    min_qty: Decimal
    max_qty: Decimal
    market_step_size: Decimal
    market_min_qty: Decimal
    market_max_qty: Decimal
    min_notional: Decimal
    max_notional: Decimal | None
    apply_min_to_market: bool = True
    min_price: Decimal = ZERO
    max_price: Decimal | None = None
    taker_fee: Decimal = DEFAULT_TAKER_FEE["spot"]
    maker_fee: Decimal = DEFAULT_TAKER_FEE["spot"]

    @classmethod
    def from_exchange_info(
        cls,
        entry: dict,
        kind: str,
        taker_fee: Decimal | str | None = None,
        maker_fee: Decimal | str | None = None,
    ) -> Market:
        """Build a market from a raw exchangeInfo ``symbols[]`` entry (spot or USDⓈ-M)."""
        filters = {f["filterType"]: f for f in entry.get("filters", [])}
        price = filters.get("PRICE_FILTER", {})
        lot = filters.get("LOT_SIZE", {})
        market_lot = filters.get("MARKET_LOT_SIZE", {})
        notional = filters.get("NOTIONAL") or filters.get("MIN_NOTIONAL") or {}

        def dec(source: dict, key: str, default: str = "0") -> Decimal:
            return to_decimal(str(source.get(key, default)), key)

        step = dec(lot, "stepSize")
        market_step = dec(market_lot, "stepSize") or step
        default_fee = str(DEFAULT_TAKER_FEE["futures" if kind == "futures" else "spot"])
        return cls(
            symbol=entry["symbol"],
            base=entry["baseAsset"],
            quote=entry["quoteAsset"],
            kind=kind,
            tick_size=dec(price, "tickSize"),
            step_size=step,
            min_qty=dec(lot, "minQty"),
            max_qty=dec(lot, "maxQty"),
            market_step_size=market_step,
            market_min_qty=dec(market_lot, "minQty") or dec(lot, "minQty"),
            market_max_qty=dec(market_lot, "maxQty") or dec(lot, "maxQty"),
            min_notional=to_decimal(
                str(notional.get("minNotional", notional.get("notional", "0")))
            ),
            max_notional=to_decimal(str(notional["maxNotional"]))
            if "maxNotional" in notional
            else None,
            apply_min_to_market=bool(notional.get("applyMinToMarket", True)),
            min_price=dec(price, "minPrice"),
            max_price=dec(price, "maxPrice") or None,
            taker_fee=to_decimal(str(taker_fee or default_fee)),
            maker_fee=to_decimal(
                str(maker_fee or (Decimal(default_fee) / 2 if kind == "futures" else default_fee))
            ),
        )

    # -- precision -----------------------------------------------------------------------------

    def round_amount(self, quantity: Decimal, *, market_order: bool = True) -> Decimal:
        """Return ``quantity`` truncated to the lot step (never rounded up past the computed size)."""
        step = self.market_step_size if market_order else self.step_size
        return floor_to_step(quantity, step).normalize() if quantity > 0 else ZERO

    def round_price(self, price: Decimal) -> Decimal:
        """Return ``price`` truncated to the tick size."""
        return floor_to_step(price, self.tick_size)

    def min_order_quantity(self, price: Decimal, *, market_order: bool = True) -> Decimal:
        """Return the smallest quantity at ``price`` that passes lot size and minimum notional."""
        step = self.market_step_size if market_order else self.step_size
        min_qty = self.market_min_qty if market_order else self.min_qty
        needed = max(min_qty, step)
        if self.min_notional and (self.apply_min_to_market or not market_order) and price > 0:
            by_notional = self.min_notional / price
            units = -(-by_notional // step)  # ceil to the step
            needed = max(needed, units * step)
        return needed.normalize()

    # -- filters -------------------------------------------------------------------------------

    def check_order(self, quantity: Decimal, price: Decimal, *, market_order: bool = True) -> None:
        """Raise ``FilterFailure`` (Binance's filter and code) if the order breaks a filter."""
        step = self.market_step_size if market_order else self.step_size
        min_qty = self.market_min_qty if market_order else self.min_qty
        max_qty = self.market_max_qty if market_order else self.max_qty
        lot = (
            "MARKET_LOT_SIZE"
            if market_order and self.market_step_size != self.step_size
            else "LOT_SIZE"
        )
        if quantity <= 0 or quantity < min_qty or (max_qty and quantity > max_qty):
            raise FilterFailure(lot, f"Filter failure: {lot}")
        if step and quantity % step != 0:
            raise FilterFailure(lot, f"Filter failure: {lot}")
        if not market_order:
            if price <= 0 or (self.tick_size and price % self.tick_size != 0):
                raise FilterFailure("PRICE_FILTER", "Filter failure: PRICE_FILTER")
            if price < self.min_price or (self.max_price and price > self.max_price):
                raise FilterFailure("PRICE_FILTER", "Filter failure: PRICE_FILTER")
        notional = quantity * price
        if (
            self.min_notional
            and (self.apply_min_to_market or not market_order)
            and notional < self.min_notional
        ):
            if self.kind == "futures":
                raise FilterFailure(
                    "MIN_NOTIONAL",
                    f"Order's notional must be no smaller than {self.min_notional.normalize()} "
                    "(unless you choose reduce only).",
                    code=-4164,
                )
            raise FilterFailure("NOTIONAL", "Filter failure: NOTIONAL")
        if self.max_notional and not market_order and notional > self.max_notional:
            raise FilterFailure("NOTIONAL", "Filter failure: NOTIONAL")
