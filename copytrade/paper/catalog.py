"""The paper exchange's markets: real Binance exchangeInfo entries plus entries for the candle files.

Spot and USDⓈ-M entries come verbatim from ccxt's static snapshot of Binance
(``exchange/binance-markets.json``, the ``info`` of each market). The symbols of
``market/`` that the snapshot lacks (the BTC-quoted spot pairs, XRPETH, 1000PEPEUSDT and
ONDOUSDT perpetuals) get entries of the same shape; their filters are Binance's published ones
for those symbols where known, otherwise derived from the decimals of the price file (see
docs/paper-exchange.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from copytrade.domain.markets import Market

SPOT, FUTURES = "spot", "futures"
# What the paper exchange executes; exchangeInfo lists exactly these (never a type it refuses).
ORDER_TYPES = {
    SPOT: (
        "LIMIT",
        "LIMIT_MAKER",
        "MARKET",
        "STOP_LOSS",
        "STOP_LOSS_LIMIT",
        "TAKE_PROFIT",
        "TAKE_PROFIT_LIMIT",
    ),
    FUTURES: (
        "LIMIT",
        "MARKET",
        "STOP",
        "STOP_MARKET",
        "TAKE_PROFIT",
        "TAKE_PROFIT_MARKET",
        "TRAILING_STOP_MARKET",
    ),
}
# USDⓈ-M conditional types go through /fapi/v1/algoOrder (Binance: -4120 on /fapi/v1/order).
ALGO_TYPES = ("STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET", "TRAILING_STOP_MARKET")
TIME_IN_FORCE = {SPOT: ("GTC", "IOC", "FOK"), FUTURES: ("GTC", "IOC", "FOK", "GTX")}
# Spot features of the snapshot's entries that the paper exchange does not serve.
UNSERVED_SPOT_FEATURES = ("ocoAllowed", "otoAllowed", "allowTrailingStop")


@dataclass(slots=True)
class PaperMarket:
    """One listed symbol: the raw exchangeInfo entry served to clients and the parsed filters."""

    entry: dict
    market: Market
    kind: str
    price_source: str = ""  # how its price path is made (for docs / admin)
    extra: dict = field(default_factory=dict)

    @property
    def symbol(self) -> str:
        return self.market.symbol

    @property
    def price_decimals(self) -> int:
        """Decimals Binance writes this symbol's prices with (spot: always 8)."""
        return int(self.entry["pricePrecision"]) if self.kind == FUTURES else 8

    @property
    def qty_decimals(self) -> int:
        """Decimals Binance writes this symbol's quantities with (spot: always 8)."""
        return int(self.entry["quantityPrecision"]) if self.kind == FUTURES else 8


def _spot_entry(
    symbol: str,
    base: str,
    quote: str,
    tick: str,
    step: str,
    min_qty: str,
    min_notional: str,
    max_qty: str = "9000000.00000000",
) -> dict:
    """Return a spot exchangeInfo entry in the shape Binance serves."""
    return {
        "symbol": symbol,
        "status": "TRADING",
        "baseAsset": base,
        "baseAssetPrecision": 8,
        "quoteAsset": quote,
        "quotePrecision": 8,
        "quoteAssetPrecision": 8,
        "baseCommissionPrecision": 8,
        "quoteCommissionPrecision": 8,
        "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"],
        "icebergAllowed": False,
        "ocoAllowed": False,
        "quoteOrderQtyMarketAllowed": True,
        "allowTrailingStop": False,
        "cancelReplaceAllowed": True,
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": False,
        "filters": [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": tick,
                "maxPrice": "1000000.00000000",
                "tickSize": tick,
            },
            {"filterType": "LOT_SIZE", "minQty": min_qty, "maxQty": max_qty, "stepSize": step},
            {
                "filterType": "MARKET_LOT_SIZE",
                "minQty": "0.00000000",
                "maxQty": max_qty,
                "stepSize": "0.00000000",
            },
            {
                "filterType": "NOTIONAL",
                "minNotional": min_notional,
                "applyMinToMarket": True,
                "maxNotional": "9000000.00000000",
                "applyMaxToMarket": False,
                "avgPriceMins": 5,
            },
            {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": 200},
        ],
        "permissions": ["SPOT"],
        "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
        "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
    }


def _futures_entry(
    symbol: str,
    base: str,
    tick: str,
    step: str,
    min_qty: str,
    max_qty: str,
    market_max_qty: str,
    min_notional: str,
    price_precision: int,
    quantity_precision: int,
) -> dict:
    """Return a USDⓈ-M perpetual exchangeInfo entry in the shape Binance serves."""
    return {
        "symbol": symbol,
        "pair": symbol,
        "contractType": "PERPETUAL",
        "deliveryDate": 4133404800000,
        "onboardDate": 1569398400000,
        "status": "TRADING",
        "maintMarginPercent": "2.5000",
        "requiredMarginPercent": "5.0000",
        "baseAsset": base,
        "quoteAsset": "USDT",
        "marginAsset": "USDT",
        "pricePrecision": price_precision,
        "quantityPrecision": quantity_precision,
        "baseAssetPrecision": 8,
        "quotePrecision": 8,
        "underlyingType": "COIN",
        "underlyingSubType": [],
        "settlePlan": 0,
        "triggerProtect": "0.0500",
        "liquidationFee": "0.012500",
        "marketTakeBound": "0.05",
        "maxMoveOrderLimit": 10000,
        "filters": [
            {"filterType": "PRICE_FILTER", "minPrice": tick, "maxPrice": "2000", "tickSize": tick},
            {"filterType": "LOT_SIZE", "stepSize": step, "minQty": min_qty, "maxQty": max_qty},
            {
                "filterType": "MARKET_LOT_SIZE",
                "stepSize": step,
                "minQty": min_qty,
                "maxQty": market_max_qty,
            },
            {"filterType": "MAX_NUM_ORDERS", "limit": 200},
            {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": 10},
            {"filterType": "MIN_NOTIONAL", "notional": min_notional},
            {
                "filterType": "PERCENT_PRICE",
                "multiplierUp": "1.0500",
                "multiplierDecimal": 4,
                "multiplierDown": "0.9500",
            },
        ],
        "orderTypes": [
            "LIMIT",
            "MARKET",
            "STOP",
            "STOP_MARKET",
            "TAKE_PROFIT",
            "TAKE_PROFIT_MARKET",
            "TRAILING_STOP_MARKET",
        ],
        "timeInForce": ["GTC", "IOC", "FOK", "GTX"],
    }


def _btc_quoted_entries() -> list[dict]:
    """Entries for the BTC/ETH-quoted spot pairs of the candle files (Binance's 2018-era filters)."""
    # tick, step, min qty; min notional 0.0001 BTC (0.001 ETH) as Binance lists BTC-quoted pairs.
    spec = {
        "ADABTC": ("ADA", "BTC", "0.00000001", "1.00000000", "1.00000000", "0.00010000"),
        "ETCBTC": ("ETC", "BTC", "0.00000100", "0.01000000", "0.01000000", "0.00010000"),
        "ETHBTC": ("ETH", "BTC", "0.00000100", "0.00100000", "0.00100000", "0.00010000"),
        "LTCBTC": ("LTC", "BTC", "0.00000100", "0.01000000", "0.01000000", "0.00010000"),
        "NXTBTC": ("NXT", "BTC", "0.00000001", "1.00000000", "1.00000000", "0.00010000"),
        "TRXBTC": ("TRX", "BTC", "0.00000001", "1.00000000", "1.00000000", "0.00010000"),
        "XLMBTC": ("XLM", "BTC", "0.00000001", "1.00000000", "1.00000000", "0.00010000"),
        "XRPETH": ("XRP", "ETH", "0.00000001", "1.00000000", "1.00000000", "0.00100000"),
    }
    return [_spot_entry(sym, *values) for sym, values in spec.items()]


def _extra_futures_entries() -> list[dict]:
    """Entries for the 2025 perpetuals of the candle files, with Binance's filters for them."""
    return [
        _futures_entry(
            "1000PEPEUSDT", "1000PEPE", "0.0000001", "1", "1", "80000000", "20000000", "5", 7, 0
        ),
        _futures_entry("ONDOUSDT", "ONDO", "0.0001", "0.1", "0.1", "1000000", "200000", "5", 4, 1),
    ]


@dataclass(slots=True)
class Catalog:
    """Every listed market by kind and exchange symbol."""

    spot: dict[str, PaperMarket]
    futures: dict[str, PaperMarket]

    def get(self, kind: str, symbol: str) -> PaperMarket | None:
        return (self.spot if kind == SPOT else self.futures).get(symbol)

    def of(self, kind: str) -> dict[str, PaperMarket]:
        return self.spot if kind == SPOT else self.futures

    def exchange_info(self, kind: str, server_time_ms: int) -> dict:
        """Return the body of ``GET /api/v3/exchangeInfo`` or ``/fapi/v1/exchangeInfo``."""
        symbols = [m.entry for m in self.of(kind).values()]
        limits = [
            {
                "rateLimitType": "REQUEST_WEIGHT",
                "interval": "MINUTE",
                "intervalNum": 1,
                "limit": 6000,
            },
            {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
        ]
        body: dict = {
            "timezone": "UTC",
            "serverTime": server_time_ms,
            "rateLimits": limits,
            "exchangeFilters": [],
            "symbols": symbols,
        }
        if kind == FUTURES:
            body["assets"] = [{"asset": "USDT", "marginAvailable": True, "autoAssetExchange": "0"}]
            body["futuresType"] = "U_MARGINED"
        return body


def load_catalog(data_dir: Path) -> Catalog:
    """Read the snapshot and add the candle-file symbols; spot = type spot, futures = linear swaps."""
    raw = json.loads((data_dir / "exchange" / "binance-markets.json").read_text())
    spot_entries: list[dict] = []
    futures_entries: list[dict] = []
    for unified in raw.values():
        if unified.get("type") == "spot":
            spot_entries.append(unified["info"])
        elif unified.get("type") == "swap" and unified.get("linear"):
            futures_entries.append(unified["info"])
    known_spot = {e["symbol"] for e in spot_entries}
    known_futures = {e["symbol"] for e in futures_entries}
    spot_entries += [e for e in _btc_quoted_entries() if e["symbol"] not in known_spot]
    futures_entries += [e for e in _extra_futures_entries() if e["symbol"] not in known_futures]
    spot = {e["symbol"]: _paper_market(e, SPOT) for e in spot_entries}
    futures = {e["symbol"]: _paper_market(e, FUTURES) for e in futures_entries}
    return Catalog(spot=spot, futures=futures)


def _paper_market(entry: dict, kind: str) -> PaperMarket:
    entry = _normalise_entry(entry, kind)
    return PaperMarket(entry=entry, market=Market.from_exchange_info(entry, kind), kind=kind)


def _normalise_entry(entry: dict, kind: str) -> dict:
    """Return the entry with Binance's live types (ccxt's snapshot keeps some numbers as strings)."""
    entry = json.loads(json.dumps(entry))
    entry["orderTypes"] = [t for t in entry.get("orderTypes", []) if t in ORDER_TYPES[kind]]
    if kind == FUTURES:
        entry["timeInForce"] = [t for t in entry.get("timeInForce", []) if t in TIME_IN_FORCE[kind]]
    else:
        for feature in UNSERVED_SPOT_FEATURES:
            if feature in entry:
                entry[feature] = False
    if kind == FUTURES:
        for key in ("pricePrecision", "quantityPrecision", "baseAssetPrecision", "quotePrecision"):
            if key in entry:
                entry[key] = int(entry[key])
        for key in ("deliveryDate", "onboardDate"):
            if key in entry:
                entry[key] = int(entry[key])
    else:
        for key in (
            "baseAssetPrecision",
            "quotePrecision",
            "quoteAssetPrecision",
            "baseCommissionPrecision",
            "quoteCommissionPrecision",
        ):
            if key in entry:
                entry[key] = int(entry[key])
    return entry


def decimal_places(value: Decimal) -> int:
    """Return how many decimals a step or tick has (0.00100000 → 3)."""
    exponent = value.normalize().as_tuple().exponent
    return max(0, -int(exponent))  # type: ignore[arg-type]
