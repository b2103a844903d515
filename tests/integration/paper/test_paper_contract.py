"""Contract: per endpoint, the paper exchange's answer has the key set and JSON types of the
response example in Binance's API documentation (spot and USDⓈ-M), cited beside each example.

Examples are transcribed from the docs (values only stand for their JSON type). Keys the docs
mark as present only for other order types (``activatePrice``/``priceRate`` of trailing stops)
are left out of the example. Requests go through ccxt's implicit endpoint methods, which return
the raw JSON unchanged.
"""

from __future__ import annotations

from decimal import Decimal

SPOT_DOCS = "https://developers.binance.com/docs/binance-spot-api-docs/rest-api"
FAPI_DOCS = "https://developers.binance.com/docs/derivatives/usds-margined-futures"


def shape(value: object) -> object:
    """The JSON type skeleton of a value: keys with their types, a list by its first item."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if value is None:
        return "null"
    return type(value).__name__


def assert_contract(answer: object, documented: object) -> None:
    assert shape(answer) == shape(documented)


# -- spot --------------------------------------------------------------------------------------

# {SPOT_DOCS}/market-data-endpoints#24hr-ticker-price-change-statistics (FULL)
SPOT_TICKER_24HR = {
    "symbol": "BNBBTC",
    "priceChange": "-94.99999800",
    "priceChangePercent": "-95.960",
    "weightedAvgPrice": "0.29628482",
    "prevClosePrice": "0.10002000",
    "lastPrice": "4.00000200",
    "lastQty": "200.00000000",
    "bidPrice": "4.00000000",
    "bidQty": "100.00000000",
    "askPrice": "4.00000200",
    "askQty": "100.00000000",
    "openPrice": "99.00000000",
    "highPrice": "100.00000000",
    "lowPrice": "0.10000000",
    "volume": "8913.30000000",
    "quoteVolume": "15.30000000",
    "openTime": 1499783499040,
    "closeTime": 1499869899040,
    "firstId": 28385,
    "lastId": 28460,
    "count": 76,
}
# {SPOT_DOCS}/market-data-endpoints#symbol-order-book-ticker
SPOT_BOOK_TICKER = {
    "symbol": "LTCBTC",
    "bidPrice": "4.00000000",
    "bidQty": "431.00000000",
    "askPrice": "4.00000200",
    "askQty": "9.00000000",
}
# {SPOT_DOCS}/market-data-endpoints#symbol-price-ticker
SPOT_PRICE = {"symbol": "LTCBTC", "price": "4.00000200"}
# {SPOT_DOCS}/market-data-endpoints#order-book
SPOT_DEPTH = {
    "lastUpdateId": 1027024,
    "bids": [["4.00000000", "431.00000000"]],
    "asks": [["4.00000200", "12.00000000"]],
}
# {SPOT_DOCS}/market-data-endpoints#klines (also USDⓈ-M {FAPI_DOCS}/market-data/rest-api/Kline-Candlestick-Data)
KLINE = [
    1499040000000,
    "0.01634790",
    "0.80000000",
    "0.01575800",
    "0.01577100",
    "148976.11427815",
    1499644799999,
    "2434.19055334",
    308,
    "1756.87402397",
    "28.46694368",
    "0",
]
# {SPOT_DOCS}/market-data-endpoints#compressedaggregate-trades-list
SPOT_AGG_TRADE = {
    "a": 26129,
    "p": "0.01633102",
    "q": "4.70443515",
    "f": 27781,
    "l": 27781,
    "T": 1498793709153,
    "m": True,
    "M": True,
}
# {SPOT_DOCS}/trading-endpoints#new-order-trade (newOrderRespType FULL)
SPOT_NEW_ORDER_FULL = {
    "symbol": "BTCUSDT",
    "orderId": 28,
    "orderListId": -1,
    "clientOrderId": "6gCrw2kRUAF9CvJDGP16IP",
    "transactTime": 1507725176595,
    "price": "0.00000000",
    "origQty": "10.00000000",
    "executedQty": "10.00000000",
    "origQuoteOrderQty": "0.000000",
    "cummulativeQuoteQty": "10.00000000",
    "status": "FILLED",
    "timeInForce": "GTC",
    "type": "MARKET",
    "side": "SELL",
    "workingTime": 1507725176595,
    "selfTradePreventionMode": "NONE",
    "fills": [
        {
            "price": "4000.00000000",
            "qty": "1.00000000",
            "commission": "4.00000000",
            "commissionAsset": "USDT",
            "tradeId": 56,
        }
    ],
}
# {SPOT_DOCS}/account-endpoints#query-order-user_data
SPOT_QUERY_ORDER = {
    "symbol": "LTCBTC",
    "orderId": 1,
    "orderListId": -1,
    "clientOrderId": "myOrder1",
    "price": "0.1",
    "origQty": "1.0",
    "executedQty": "0.0",
    "cummulativeQuoteQty": "0.0",
    "status": "NEW",
    "timeInForce": "GTC",
    "type": "LIMIT",
    "side": "BUY",
    "stopPrice": "0.0",
    "icebergQty": "0.0",
    "time": 1499827319559,
    "updateTime": 1499827319559,
    "isWorking": True,
    "workingTime": 1499827319559,
    "origQuoteOrderQty": "0.000000",
    "selfTradePreventionMode": "NONE",
}
# {SPOT_DOCS}/trading-endpoints#cancel-order-trade
SPOT_CANCEL_ORDER = {
    "symbol": "LTCBTC",
    "origClientOrderId": "myOrder1",
    "orderId": 4,
    "orderListId": -1,
    "clientOrderId": "cancelMyOrder1",
    "transactTime": 1684804350068,
    "price": "2.00000000",
    "origQty": "1.00000000",
    "executedQty": "0.00000000",
    "origQuoteOrderQty": "0.000000",
    "cummulativeQuoteQty": "0.00000000",
    "status": "CANCELED",
    "timeInForce": "GTC",
    "type": "LIMIT",
    "side": "BUY",
    "selfTradePreventionMode": "NONE",
}
# {SPOT_DOCS}/account-endpoints#account-trade-list-user_data
SPOT_MY_TRADE = {
    "symbol": "BNBBTC",
    "id": 28457,
    "orderId": 100234,
    "orderListId": -1,
    "price": "4.00000100",
    "qty": "12.00000000",
    "quoteQty": "48.000012",
    "commission": "10.10000000",
    "commissionAsset": "BNB",
    "time": 1499865549590,
    "isBuyer": True,
    "isMaker": False,
    "isBestMatch": True,
}
# {SPOT_DOCS}/account-endpoints#account-information-user_data
SPOT_ACCOUNT = {
    "makerCommission": 15,
    "takerCommission": 15,
    "buyerCommission": 0,
    "sellerCommission": 0,
    "commissionRates": {
        "maker": "0.00150000",
        "taker": "0.00150000",
        "buyer": "0.00000000",
        "seller": "0.00000000",
    },
    "canTrade": True,
    "canWithdraw": True,
    "canDeposit": True,
    "brokered": False,
    "requireSelfTradePrevention": False,
    "preventSor": False,
    "updateTime": 123456789,
    "accountType": "SPOT",
    "balances": [{"asset": "BTC", "free": "4723846.89208129", "locked": "0.00000000"}],
    "permissions": ["SPOT"],
    "uid": 354937868,
}


async def _spot_price(spot) -> Decimal:
    return Decimal((await spot.publicGetTickerPrice({"symbol": "ETHUSDT"}))["price"])


async def test_spot_market_data_contract(spot):
    assert_contract(await spot.publicGetTicker24hr({"symbol": "ETHUSDT"}), SPOT_TICKER_24HR)
    assert_contract(await spot.publicGetTickerBookTicker({"symbol": "ETHUSDT"}), SPOT_BOOK_TICKER)
    assert_contract(await spot.publicGetTickerPrice({"symbol": "ETHUSDT"}), SPOT_PRICE)
    assert_contract(await spot.publicGetDepth({"symbol": "ETHUSDT", "limit": 5}), SPOT_DEPTH)
    klines = await spot.publicGetKlines({"symbol": "ETHUSDT", "interval": "1h", "limit": 3})
    assert len(klines) == 3 and all(shape(k) == shape(KLINE) for k in klines)
    trades = await spot.publicGetAggTrades({"symbol": "ETHUSDT", "limit": 3})
    assert len(trades) == 3 and all(shape(t) == shape(SPOT_AGG_TRADE) for t in trades)


async def test_spot_orders_trades_account_contract(spot):
    filled = await spot.privatePostOrder(
        {"symbol": "ETHUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.1"}
    )
    assert_contract(filled, SPOT_NEW_ORDER_FULL)
    price = (await _spot_price(spot) * Decimal("0.98")).quantize(Decimal("0.01"))
    resting = await spot.privatePostOrder(
        {
            "symbol": "ETHUSDT",
            "side": "BUY",
            "type": "LIMIT",
            "timeInForce": "GTC",
            "quantity": "0.1",
            "price": str(price),
        }
    )
    query = await spot.privateGetOrder({"symbol": "ETHUSDT", "orderId": resting["orderId"]})
    assert_contract(query, SPOT_QUERY_ORDER)
    cancel = await spot.privateDeleteOrder({"symbol": "ETHUSDT", "orderId": resting["orderId"]})
    assert_contract(cancel, SPOT_CANCEL_ORDER)
    (trade,) = await spot.privateGetMyTrades({"symbol": "ETHUSDT"})
    assert_contract(trade, SPOT_MY_TRADE)
    assert_contract(await spot.privateGetAccount(), SPOT_ACCOUNT)


# -- USDⓈ-M ------------------------------------------------------------------------------------

# {FAPI_DOCS}/market-data/rest-api/24hr-Ticker-Price-Change-Statistics
FUTURES_TICKER_24HR = {
    "symbol": "BTCUSDT",
    "priceChange": "-94.99999800",
    "priceChangePercent": "-95.960",
    "weightedAvgPrice": "0.29628482",
    "lastPrice": "4.00000200",
    "lastQty": "200.00000000",
    "openPrice": "99.00000000",
    "highPrice": "100.00000000",
    "lowPrice": "0.10000000",
    "volume": "8913.30000000",
    "quoteVolume": "15.30000000",
    "openTime": 1499783499040,
    "closeTime": 1499869899040,
    "firstId": 28385,
    "lastId": 28460,
    "count": 76,
}
# {FAPI_DOCS}/market-data/rest-api/Mark-Price
FUTURES_PREMIUM_INDEX = {
    "symbol": "BTCUSDT",
    "markPrice": "11793.63104562",
    "indexPrice": "11781.80495970",
    "estimatedSettlePrice": "11781.16138815",
    "lastFundingRate": "0.00038246",
    "interestRate": "0.00010000",
    "nextFundingTime": 1597392000000,
    "time": 1597370495002,
}
# {FAPI_DOCS}/market-data/rest-api/Compressed-Aggregate-Trades-List
FUTURES_AGG_TRADE = {
    "a": 26129,
    "p": "0.01633102",
    "q": "4.70443515",
    "f": 27781,
    "l": 27781,
    "T": 1498793709153,
    "m": True,
}
# {FAPI_DOCS}/trade/rest-api/New-Order (activatePrice/priceRate: trailing stops only)
FUTURES_NEW_ORDER = {
    "clientOrderId": "testOrder",
    "cumQty": "0",
    "cumQuote": "0",
    "executedQty": "0",
    "orderId": 22542179,
    "avgPrice": "0.00000",
    "origQty": "10",
    "price": "0",
    "reduceOnly": False,
    "side": "BUY",
    "positionSide": "SHORT",
    "status": "NEW",
    "stopPrice": "9300",
    "closePosition": False,
    "symbol": "BTCUSDT",
    "timeInForce": "GTD",
    "type": "TRAILING_STOP_MARKET",
    "origType": "TRAILING_STOP_MARKET",
    "updateTime": 1566818724722,
    "workingType": "CONTRACT_PRICE",
    "priceProtect": False,
    "priceMatch": "NONE",
    "selfTradePreventionMode": "NONE",
    "goodTillDate": 1693207680000,
}
# {FAPI_DOCS}/trade/rest-api/Query-Order (activatePrice/priceRate: trailing stops only)
FUTURES_QUERY_ORDER = {
    "avgPrice": "0.00000",
    "clientOrderId": "abc",
    "cumQuote": "0",
    "executedQty": "0",
    "orderId": 1917641,
    "origQty": "0.40",
    "origType": "TRAILING_STOP_MARKET",
    "price": "0",
    "reduceOnly": False,
    "side": "BUY",
    "positionSide": "SHORT",
    "status": "NEW",
    "stopPrice": "9300",
    "closePosition": False,
    "symbol": "BTCUSDT",
    "time": 1579276756075,
    "timeInForce": "GTC",
    "type": "TRAILING_STOP_MARKET",
    "updateTime": 1579276756075,
    "workingType": "CONTRACT_PRICE",
    "priceProtect": False,
    "priceMatch": "NONE",
    "selfTradePreventionMode": "NONE",
    "goodTillDate": 0,
}
# {FAPI_DOCS}/trade/rest-api/Account-Trade-List; "marginAsset" is not in the example but is in
# every live answer (issue 15 compared them), so it is expected here too.
FUTURES_USER_TRADE = {
    "buyer": False,
    "commission": "-0.07819010",
    "commissionAsset": "USDT",
    "id": 698759,
    "maker": False,
    "orderId": 25851813,
    "price": "7819.01",
    "qty": "0.002",
    "quoteQty": "15.63802",
    "realizedPnl": "-0.91539999",
    "marginAsset": "USDT",
    "side": "SELL",
    "positionSide": "SHORT",
    "symbol": "BTCUSDT",
    "time": 1569514978020,
}
# {FAPI_DOCS}/trade/rest-api/Position-Information-V3 (one-way mode)
FUTURES_POSITION_V3 = {
    "symbol": "ADAUSDT",
    "positionSide": "BOTH",
    "positionAmt": "30",
    "entryPrice": "0.385",
    "breakEvenPrice": "0.385077",
    "markPrice": "0.41047590",
    "unRealizedProfit": "0.76427700",
    "liquidationPrice": "0",
    "isolatedMargin": "0",
    "notional": "12.31427700",
    "marginAsset": "USDT",
    "isolatedWallet": "0",
    "initialMargin": "0.61571385",
    "maintMargin": "0.08004280",
    "positionInitialMargin": "0.61571385",
    "openOrderInitialMargin": "0",
    "adl": 2,
    "bidNotional": "0",
    "askNotional": "0",
    "updateTime": 1720736417660,
}
# {FAPI_DOCS}/account/rest-api/Notional-and-Leverage-Brackets (with symbol: one object)
FUTURES_LEVERAGE_BRACKET = {
    "symbol": "ETHUSDT",
    "notionalCoef": 1.50,
    "brackets": [
        {
            "bracket": 1,
            "initialLeverage": 75,
            "notionalCap": 10000,
            "notionalFloor": 0,
            "maintMarginRatio": 0.0065,
            "cum": 0.0,
        }
    ],
}
# {FAPI_DOCS}/account/rest-api/Symbol-Config
FUTURES_SYMBOL_CONFIG = {
    "symbol": "BTCUSDT",
    "marginType": "CROSSED",
    "isAutoAddMargin": "false",
    "leverage": 21,
    "maxNotionalValue": "1000000",
}
# {FAPI_DOCS}/trade/rest-api/New-Algo-Order
FUTURES_ALGO_ORDER = {
    "algoId": 2146760,
    "clientAlgoId": "6B2I9XVcJpCjqPAJ4YoFX7",
    "algoType": "CONDITIONAL",
    "orderType": "TAKE_PROFIT",
    "symbol": "BNBUSDT",
    "side": "SELL",
    "positionSide": "BOTH",
    "timeInForce": "GTC",
    "quantity": "0.01",
    "algoStatus": "NEW",
    "triggerPrice": "750.000",
    "price": "750.000",
    "icebergQuantity": None,
    "selfTradePreventionMode": "EXPIRE_MAKER",
    "workingType": "CONTRACT_PRICE",
    "priceMatch": "NONE",
    "closePosition": False,
    "priceProtect": False,
    "reduceOnly": False,
    "activatePrice": "",
    "callbackRate": "",
    "createTime": 1750485492076,
    "updateTime": 1750485492076,
    "triggerTime": 0,
    "goodTillDate": 0,
}

ONDO = "ONDOUSDT"


async def test_futures_market_data_contract(futures):
    assert_contract(await futures.fapiPublicGetTicker24hr({"symbol": ONDO}), FUTURES_TICKER_24HR)
    assert_contract(
        await futures.fapiPublicGetPremiumIndex({"symbol": "XRPUSDT"}), FUTURES_PREMIUM_INDEX
    )
    klines = await futures.fapiPublicGetKlines({"symbol": ONDO, "interval": "5m", "limit": 2})
    assert all(shape(k) == shape(KLINE) for k in klines)
    trades = await futures.fapiPublicGetAggTrades({"symbol": ONDO, "limit": 2})
    assert len(trades) == 2 and all(shape(t) == shape(FUTURES_AGG_TRADE) for t in trades)


async def test_futures_orders_positions_and_account_contract(futures):
    filled = await futures.fapiPrivatePostOrder(
        {"symbol": ONDO, "side": "BUY", "type": "MARKET", "quantity": "100"}
    )
    assert_contract(filled, FUTURES_NEW_ORDER)
    query = await futures.fapiPrivateGetOrder({"symbol": ONDO, "orderId": filled["orderId"]})
    assert_contract(query, FUTURES_QUERY_ORDER)
    (trade, *_) = await futures.fapiPrivateGetUserTrades({"symbol": ONDO})
    assert_contract(trade, FUTURES_USER_TRADE)
    (position,) = await futures.fapiPrivateV3GetPositionRisk({"symbol": ONDO})
    assert_contract(position, FUTURES_POSITION_V3)
    assert position["positionAmt"] == "100.0"  # quantityPrecision 1: Binance's fixed decimals
    bracket = await futures.fapiPrivateGetLeverageBracket({"symbol": ONDO})
    assert_contract(bracket, FUTURES_LEVERAGE_BRACKET)
    (config,) = await futures.fapiPrivateGetSymbolConfig({"symbol": ONDO})
    assert_contract(config, FUTURES_SYMBOL_CONFIG)


async def test_futures_algo_order_contract(futures):
    last = Decimal((await futures.fapiPublicGetTickerPrice({"symbol": ONDO}))["price"])
    algo = await futures.fapiPrivatePostAlgoOrder(
        {
            "algoType": "CONDITIONAL",
            "symbol": ONDO,
            "side": "SELL",
            "type": "TAKE_PROFIT",
            "quantity": "10",
            "price": str((last * Decimal("1.02")).quantize(Decimal("0.0001"))),
            "triggerPrice": str((last * Decimal("1.02")).quantize(Decimal("0.0001"))),
            "timeInForce": "GTC",
        }
    )
    assert_contract(algo, FUTURES_ALGO_ORDER)
