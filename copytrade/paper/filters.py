"""Binance's order filters that the domain ``Market`` does not check, with Binance's answers.

The domain's ``Market.check_order`` holds the filters the platform sizes against (LOT_SIZE,
PRICE_FILTER, NOTIONAL); the ones here need the exchange's own state (the current price) or only
exist to refuse what Binance refuses: spot PERCENT_PRICE_BY_SIDE and ICEBERG_PARTS, the USDⓈ-M
price, quantity and PERCENT_PRICE filters with their ``-40xx`` codes.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from copytrade.domain.markets import Market
from copytrade.paper.catalog import PaperMarket
from copytrade.paper.errors import BinanceError

PRECISION = (-1111, "Precision is over the maximum defined for this asset.")


def _filter(pm: PaperMarket, name: str) -> dict | None:
    return next((f for f in pm.entry.get("filters", []) if f["filterType"] == name), None)


def _decimals(value: Decimal) -> int:
    return max(0, -int(value.normalize().as_tuple().exponent))  # type: ignore[arg-type]


def check_spot_percent_price(pm: PaperMarket, side: str, price: Decimal, avg: Decimal) -> None:
    """PERCENT_PRICE_BY_SIDE: a limit price within the side's multipliers of the average price.

    Binance's reference is ``avgPrice`` over the filter's ``avgPriceMins``; here the replayed
    price at the moment stands for it (docs/paper-exchange.md).
    """
    f = _filter(pm, "PERCENT_PRICE_BY_SIDE")
    if f is None:
        return
    prefix = "bid" if side == "BUY" else "ask"
    up = Decimal(f[f"{prefix}MultiplierUp"])
    down = Decimal(f[f"{prefix}MultiplierDown"])
    if not avg * down <= price <= avg * up:
        raise BinanceError(-1013, "Filter failure: PERCENT_PRICE_BY_SIDE")


def check_iceberg(
    pm: PaperMarket, otype: str, tif: str, quantity: Decimal, iceberg: Decimal
) -> None:
    """An iceberg order as Binance accepts it: allowed on the symbol, LIMIT(_MAKER), GTC, ≤ parts."""
    if not pm.entry.get("icebergAllowed"):
        raise BinanceError(-2010, "Iceberg orders are not supported for this symbol.")
    if otype not in ("LIMIT", "LIMIT_MAKER") or (otype == "LIMIT" and tif != "GTC"):
        raise BinanceError(-1013, "Filter failure: ICEBERG_PARTS")
    if iceberg <= 0 or iceberg >= quantity:
        raise BinanceError(-1013, "Filter failure: ICEBERG_PARTS")
    parts = _filter(pm, "ICEBERG_PARTS")
    limit = int(parts["limit"]) if parts else 10
    if (quantity / iceberg).to_integral_value(rounding=ROUND_CEILING) > limit:
        raise BinanceError(-1013, "Filter failure: ICEBERG_PARTS")


def check_futures_order(
    pm: PaperMarket,
    quantity: Decimal,
    price: Decimal | None,
    mark: Decimal,
    last: Decimal,
    reduce_only: bool,
) -> None:
    """Raise Binance USDⓈ-M's answers for quantity, price, PERCENT_PRICE and notional failures."""
    market: Market = pm.market
    is_market = price is None
    step = market.market_step_size if is_market else market.step_size
    min_qty = market.market_min_qty if is_market else market.min_qty
    max_qty = market.market_max_qty if is_market else market.max_qty
    if quantity <= 0:
        raise BinanceError(-4003, "Quantity less than or equal to zero.")
    if step and quantity % step != 0:
        raise BinanceError(*PRECISION)
    if quantity < min_qty:
        raise BinanceError(-4004, "Quantity less than or equal to min quantity.")
    if max_qty and quantity > max_qty:
        raise BinanceError(-4005, "Quantity greater than max quantity.")
    if price is not None:
        check_futures_price(pm, price, mark)
    notional = quantity * (price if price is not None else last)
    if market.min_notional and notional < market.min_notional and not reduce_only:
        raise BinanceError(
            -4164,
            f"Order's notional must be no smaller than {market.min_notional.normalize()} "
            "(unless you choose reduce only).",
        )


def check_futures_price(
    pm: PaperMarket, price: Decimal, mark: Decimal, *, percent: bool = True
) -> None:
    """PRICE_FILTER (-4001, -1111, -4013, -4014, -4002) and PERCENT_PRICE around the mark (-4016/-4024)."""
    market = pm.market
    if price <= 0:
        raise BinanceError(-4001, "Price less than 0.")
    precision = int(pm.entry.get("pricePrecision", _decimals(market.tick_size)))
    if _decimals(price) > precision:
        raise BinanceError(*PRECISION)
    if price < market.min_price:
        raise BinanceError(-4013, "Price less than min price.")
    if market.max_price and price > market.max_price:
        raise BinanceError(-4002, "Price greater than max price.")
    if market.tick_size and (price - market.min_price) % market.tick_size != 0:
        raise BinanceError(-4014, "Price not increased by tick size.")
    f = _filter(pm, "PERCENT_PRICE")
    if f is None or not percent:  # trigger prices are not limit prices
        return
    tick = market.tick_size or Decimal(1)
    cap = _to_tick(mark * Decimal(f["multiplierUp"]), tick, ROUND_FLOOR)
    floor = _to_tick(mark * Decimal(f["multiplierDown"]), tick, ROUND_CEILING)
    if price > cap:
        raise BinanceError(-4016, f"Limit price can't be higher than {cap:f}.")
    if price < floor:
        raise BinanceError(-4024, f"Limit price can't be lower than {floor:f}.")


def _to_tick(value: Decimal, tick: Decimal, rounding: str) -> Decimal:
    return (value / tick).to_integral_value(rounding=rounding) * tick
