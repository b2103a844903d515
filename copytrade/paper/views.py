"""Binance's JSON shapes for orders, trades, accounts and user-data events (spot and USDⓈ-M)."""

from __future__ import annotations

from decimal import Decimal

from copytrade.domain.money import ZERO
from copytrade.paper.accounts import Account, AlgoOrder, Fill, Order
from copytrade.paper.candles import Window
from copytrade.paper.catalog import PaperMarket
from copytrade.paper.risk import BRACKETS, FuturesFigures, PositionFigures


def s8(value: Decimal) -> str:
    """Spot style: fixed 8 decimals ("0.10000000")."""
    return f"{value:.8f}"


def plain(value: Decimal) -> str:
    """Futures style: no exponent, no trailing zeros ("0.001", "50000")."""
    if not value:
        return "0"
    text = f"{value:f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def fixed(value: Decimal, decimals: int) -> str:
    """Binance's fixed decimals per field ("0.200" for a quantity of precision 3)."""
    return f"{value:.{decimals}f}"


def px(pm: PaperMarket, value: Decimal) -> str:
    return fixed(value, pm.price_decimals)


def qty(pm: PaperMarket, value: Decimal) -> str:
    return fixed(value, pm.qty_decimals)


def leverage_brackets(symbol: str) -> dict:
    """``/fapi/v1/leverageBracket`` for one symbol (numbers as JSON numbers, as Binance sends)."""
    return {
        "symbol": symbol,
        "notionalCoef": 1.0,
        "brackets": [
            {
                "bracket": b.bracket,
                "initialLeverage": b.initial_leverage,
                "notionalCap": int(b.cap),
                "notionalFloor": int(b.floor),
                "maintMarginRatio": float(b.maint_margin_ratio),
                "cum": float(b.cum),
            }
            for b in BRACKETS
        ],
    }


# -- market data (spot and USDⓈ-M) ---------------------------------------------------------------


def kline(pm: PaperMarket, w: Window) -> list:
    """One candle as ``/api/v3/klines`` and ``/fapi/v1/klines`` answer it (taker split unknown: 0)."""
    return [
        w.start,
        px(pm, w.open),
        px(pm, w.high),
        px(pm, w.low),
        px(pm, w.close),
        qty(pm, w.volume),
        w.end,
        fixed(w.quote_volume, 8),
        w.count,
        qty(pm, ZERO),
        fixed(ZERO, 8),
        "0",
    ]


def agg_trade(pm: PaperMarket, point: tuple[int, int, Decimal, Decimal, bool]) -> dict:
    trade_id, time_ms, price, amount, buyer_maker = point
    row = {
        "a": trade_id,
        "p": px(pm, price),
        "q": qty(pm, amount),
        "f": trade_id,
        "l": trade_id,
        "T": time_ms,
        "m": buyer_maker,
    }
    if pm.kind == "spot":
        row["M"] = True
    return row


def ticker_24hr(
    pm: PaperMarket, w: Window, bid: tuple[Decimal, Decimal], ask: tuple[Decimal, Decimal]
) -> dict:
    """``ticker/24hr`` of one symbol: the window's figures; spot adds the book's best bid/ask."""
    change = w.close - w.open
    body = {
        "symbol": pm.symbol,
        "priceChange": px(pm, change),
        "priceChangePercent": f"{change / w.open * 100:.3f}",
        "weightedAvgPrice": px(pm, w.weighted_average),
    }
    if pm.kind == "spot":
        body["prevClosePrice"] = px(pm, w.prev_close)
    body["lastPrice"] = px(pm, w.close)
    body["lastQty"] = qty(pm, w.last_qty)
    if pm.kind == "spot":
        body.update(
            {
                "bidPrice": px(pm, bid[0]),
                "bidQty": qty(pm, bid[1]),
                "askPrice": px(pm, ask[0]),
                "askQty": qty(pm, ask[1]),
            }
        )
    body.update(
        {
            "openPrice": px(pm, w.open),
            "highPrice": px(pm, w.high),
            "lowPrice": px(pm, w.low),
            "volume": qty(pm, w.volume),
            "quoteVolume": fixed(w.quote_volume, 8),
            "openTime": w.start,
            "closeTime": w.end,
            "firstId": w.first_id,
            "lastId": w.last_id,
            "count": w.count,
        }
    )
    return body


# -- spot ---------------------------------------------------------------------------------------


def spot_order(
    order: Order,
    *,
    fills: list[Fill] | None = None,
    response_type: str = "FULL",
    query: bool = False,
) -> dict:
    """Return a spot order as ``POST/GET /api/v3/order`` answers."""
    body = {
        "symbol": order.symbol,
        "orderId": order.order_id,
        "orderListId": -1,
        "clientOrderId": order.client_order_id,
    }
    if response_type == "ACK" and not query:
        body["transactTime"] = order.created_ms
        return body
    stop = bool(order.stop_price)
    if not query:
        body["transactTime"] = order.updated_ms
    body.update(
        {
            "price": s8(order.price),
            "origQty": s8(order.quantity),
            "executedQty": s8(order.executed_qty),
            "cummulativeQuoteQty": s8(order.cum_quote),
            "status": order.status,
            "timeInForce": order.time_in_force or "GTC",
            "type": order.type,
            "side": order.side,
            "workingTime": order.working_ms,
            "origQuoteOrderQty": s8(order.quote_order_qty),
            "selfTradePreventionMode": order.self_trade_prevention,
        }
    )
    if order.iceberg_qty and not query:
        body["icebergQty"] = s8(order.iceberg_qty)  # new-order answers carry it only when sent
    if stop and not query:
        body["stopPrice"] = s8(order.stop_price)
    if query:
        body.update(
            {
                "stopPrice": s8(order.stop_price),
                "icebergQty": s8(order.iceberg_qty),
                "time": order.created_ms,
                "updateTime": order.updated_ms,
                "isWorking": order.working,
            }
        )
    elif response_type == "FULL":
        body["fills"] = [
            {
                "price": s8(f.price),
                "qty": s8(f.qty),
                "commission": s8(f.commission),
                "commissionAsset": f.commission_asset,
                "tradeId": f.trade_id,
            }
            for f in fills or []
        ]
    return body


def spot_cancel(order: Order) -> dict:
    """``DELETE /api/v3/order``: the order as it ended, without ``workingTime`` (as Binance)."""
    body = spot_order(order, response_type="RESULT")
    body.pop("workingTime", None)
    return {"symbol": body.pop("symbol"), "origClientOrderId": order.client_order_id, **body}


def spot_trade(f: Fill) -> dict:
    return {
        "symbol": f.symbol,
        "id": f.trade_id,
        "orderId": f.order_id,
        "orderListId": -1,
        "price": s8(f.price),
        "qty": s8(f.qty),
        "quoteQty": s8(f.quote_qty),
        "commission": s8(f.commission),
        "commissionAsset": f.commission_asset,
        "time": f.time_ms,
        "isBuyer": f.side == "BUY",
        "isMaker": f.is_maker,
        "isBestMatch": True,
    }


def spot_account(account: Account, now: int) -> dict:
    assets = sorted(set(account.spot_free) | set(account.spot_locked))
    maker, taker = account.fees("spot")
    return {
        "makerCommission": int(maker * 10000),
        "takerCommission": int(taker * 10000),
        "buyerCommission": 0,
        "sellerCommission": 0,
        "commissionRates": {
            "maker": s8(maker),
            "taker": s8(taker),
            "buyer": s8(ZERO),
            "seller": s8(ZERO),
        },
        "canTrade": True,
        "canWithdraw": False,
        "canDeposit": True,
        "brokered": False,
        "requireSelfTradePrevention": False,
        "preventSor": False,
        "updateTime": account.updated_ms or now,
        "accountType": "SPOT",
        "balances": [
            {
                "asset": a,
                "free": s8(account.spot_free.get(a, ZERO)),
                "locked": s8(account.spot_locked.get(a, ZERO)),
            }
            for a in assets
        ],
        "permissions": ["SPOT"],
        "uid": int(account.account_id.split("-")[-1]),
    }


def execution_report(order: Order, fill: Fill | None, exec_type: str, now: int) -> dict:
    return {
        "e": "executionReport",
        "E": now,
        "s": order.symbol,
        "c": order.client_order_id,
        "S": order.side,
        "o": order.type,
        "f": order.time_in_force or "GTC",
        "q": s8(order.quantity),
        "p": s8(order.price),
        "P": s8(order.stop_price),
        "F": s8(order.iceberg_qty),
        "g": -1,
        "C": order.client_order_id if exec_type == "CANCELED" else "",
        "x": exec_type,
        "X": order.status,
        "r": "NONE",
        "i": order.order_id,
        "l": s8(fill.qty if fill else ZERO),
        "z": s8(order.executed_qty),
        "L": s8(fill.price if fill else ZERO),
        "n": s8(fill.commission if fill else ZERO),
        "N": fill.commission_asset if fill else None,
        "T": fill.time_ms if fill else now,
        "t": fill.trade_id if fill else -1,
        "v": 0,
        "I": 0,
        "w": order.is_open and order.working,
        "m": fill.is_maker if fill else False,
        "M": False,
        "O": order.created_ms,
        "Z": s8(order.cum_quote),
        "Y": s8(fill.quote_qty if fill else ZERO),
        "Q": s8(order.quote_order_qty),
        "W": order.working_ms,
        "V": order.self_trade_prevention,
    }


def outbound_account_position(account: Account, assets: list[str], now: int) -> dict:
    return {
        "e": "outboundAccountPosition",
        "E": now,
        "u": now,
        "B": [
            {
                "a": a,
                "f": s8(account.spot_free.get(a, ZERO)),
                "l": s8(account.spot_locked.get(a, ZERO)),
            }
            for a in assets
        ],
    }


# -- USDⓈ-M futures -----------------------------------------------------------------------------


def futures_order(order: Order, pm: PaperMarket, *, query: bool = False) -> dict:
    """A USDⓈ-M order as ``/fapi/v1/order`` answers: prices and quantities in the symbol's decimals."""
    body = {
        "orderId": order.order_id,
        "symbol": order.symbol,
        "status": order.status,
        "clientOrderId": order.client_order_id,
        "price": px(pm, order.price),
        "avgPrice": px(pm, order.average_price),
        "origQty": qty(pm, order.quantity),
        "executedQty": qty(pm, order.executed_qty),
        "cumQuote": fixed(order.cum_quote, 8),
        "timeInForce": order.time_in_force or "GTC",
        "type": order.type,
        "reduceOnly": order.reduce_only,
        "closePosition": False,
        "side": order.side,
        "positionSide": "BOTH",
        "stopPrice": px(pm, ZERO),
        "workingType": "CONTRACT_PRICE",
        "priceProtect": False,
        "origType": order.type,
        "priceMatch": "NONE",
        "selfTradePreventionMode": order.self_trade_prevention,
        "goodTillDate": 0,
        "updateTime": order.updated_ms,
    }
    if query:
        body["time"] = order.created_ms  # a query answer has no cumQty (Binance's example)
    else:
        body["cumQty"] = qty(pm, order.executed_qty)
    return body


def futures_algo_order(algo: AlgoOrder, pm: PaperMarket, *, query: bool = False) -> dict:
    """A conditional order as ``/fapi/v1/algoOrder`` answers it (``actualOrderId`` on queries)."""
    trailing = algo.order_type == "TRAILING_STOP_MARKET"
    body = {
        "algoId": algo.algo_id,
        "clientAlgoId": algo.client_algo_id,
        "algoType": "CONDITIONAL",
        "orderType": algo.order_type,
        "symbol": algo.symbol,
        "side": algo.side,
        "positionSide": "BOTH",
        "timeInForce": algo.time_in_force,
        "quantity": qty(pm, algo.quantity),
        "algoStatus": algo.status,
        "triggerPrice": px(pm, algo.trigger_price),
        "price": px(pm, algo.price),
        "icebergQuantity": None,
        "selfTradePreventionMode": algo.self_trade_prevention,
        "workingType": algo.working_type,
        "priceMatch": "NONE",
        "closePosition": algo.close_position,
        "priceProtect": False,
        "reduceOnly": algo.reduce_only,
        "activatePrice": px(pm, algo.activate_price) if trailing else "",
        "callbackRate": f"{algo.callback_rate:f}" if trailing else "",
        "createTime": algo.created_ms,
        "updateTime": algo.updated_ms,
        "triggerTime": algo.trigger_ms,
        "goodTillDate": 0,
    }
    if query:
        body["actualOrderId"] = str(algo.actual_order_id or "")
    return body


def futures_trade(f: Fill, pm: PaperMarket) -> dict:
    """One ``/fapi/v1/userTrades`` row (money in 8 decimals, margin asset USDT)."""
    return {
        "buyer": f.side == "BUY",
        "commission": fixed(f.commission, 8),
        "commissionAsset": f.commission_asset,
        "id": f.trade_id,
        "maker": f.is_maker,
        "orderId": f.order_id,
        "price": px(pm, f.price),
        "qty": qty(pm, f.qty),
        "quoteQty": fixed(f.quote_qty, 8),
        "realizedPnl": fixed(f.realized_pnl, 8),
        "marginAsset": "USDT",
        "side": f.side,
        "positionSide": "BOTH",
        "symbol": f.symbol,
        "time": f.time_ms,
    }


def order_trade_update(order: Order, fill: Fill | None, exec_type: str, now: int) -> dict:
    return {
        "e": "ORDER_TRADE_UPDATE",
        "E": now,
        "T": fill.time_ms if fill else now,
        "o": {
            "s": order.symbol,
            "c": order.client_order_id,
            "S": order.side,
            "o": order.type,
            "f": order.time_in_force or "GTC",
            "q": plain(order.quantity),
            "p": plain(order.price),
            "ap": plain(order.average_price),
            "sp": "0",
            "x": exec_type,
            "X": order.status,
            "i": order.order_id,
            "l": plain(fill.qty if fill else ZERO),
            "z": plain(order.executed_qty),
            "L": plain(fill.price if fill else ZERO),
            "N": fill.commission_asset if fill else "USDT",
            "n": plain(fill.commission if fill else ZERO),
            "T": fill.time_ms if fill else now,
            "t": fill.trade_id if fill else 0,
            "b": "0",
            "a": "0",
            "m": fill.is_maker if fill else False,
            "R": order.reduce_only,
            "wt": "CONTRACT_PRICE",
            "ot": order.type,
            "ps": "BOTH",
            "cp": False,
            "rp": plain(fill.realized_pnl if fill else ZERO),
            "pP": False,
            "si": 0,
            "ss": 0,
            "V": order.self_trade_prevention,
            "pm": "NONE",
            "gtd": 0,
        },
    }


def _position_entry(f: PositionFigures) -> dict:
    return {
        "s": f.symbol,
        "pa": plain(f.qty),
        "ep": plain(f.entry_price),
        "bep": plain(f.break_even_price),
        "cr": "0",
        "up": plain(f.unrealized_pnl),
        "mt": "isolated" if f.isolated else "cross",
        "iw": plain(f.initial_margin if f.isolated else ZERO),
        "ps": "BOTH",
    }


def futures_account_update(
    account: Account, reason: str, positions: list[PositionFigures], now: int
) -> dict:
    wallet = account.futures_wallet.get("USDT", ZERO)
    return {
        "e": "ACCOUNT_UPDATE",
        "E": now,
        "T": now,
        "a": {
            "m": reason,
            "B": [{"a": "USDT", "wb": plain(wallet), "cw": plain(wallet), "bc": "0"}],
            "P": [_position_entry(f) for f in positions],
        },
    }


def position_risk(pm: PaperMarket, f: PositionFigures, now: int, *, version: int = 3) -> dict:
    """One ``/fapi/v3/positionRisk`` row (or the older ``v2`` shape, with leverage and margin
    type): prices and money in 8 decimals, the amount in the symbol's."""
    margin = f.initial_margin
    isolated_margin = fixed(margin if f.isolated else ZERO, 8)
    common = {
        "symbol": f.symbol,
        "positionSide": "BOTH",
        "positionAmt": qty(pm, f.qty),
        "entryPrice": fixed(f.entry_price, 8),
        "breakEvenPrice": fixed(f.break_even_price, 8),
        "markPrice": fixed(f.mark_price, 8),
        "unRealizedProfit": fixed(f.unrealized_pnl, 8),
        "liquidationPrice": fixed(f.liquidation_price, 8) if f.liquidation_price else "0",
        "isolatedMargin": isolated_margin,
        "notional": fixed(f.notional, 8),
        "isolatedWallet": isolated_margin,
        "updateTime": f.updated_ms or now,
    }
    if version == 2:
        return {
            **common,
            "leverage": str(f.leverage),
            "maxNotionalValue": fixed(f.max_notional, 0),
            "marginType": "isolated" if f.isolated else "cross",
            "isAutoAddMargin": "false",
        }
    return {
        **common,
        "marginAsset": "USDT",
        "initialMargin": fixed(margin, 8),
        "maintMargin": fixed(f.maint_margin, 8),
        "positionInitialMargin": fixed(margin, 8),
        "openOrderInitialMargin": "0",
        "adl": _adl(f),
        "bidNotional": "0",
        "askNotional": "0",
    }


def _adl(f: PositionFigures) -> int:
    """Binance's ADL quantile (0–4): here from the position's profit on its margin, as Binance
    ranks (there is no other trader to rank against); 0 without a profitable position."""
    if not f.qty or f.unrealized_pnl <= 0 or not f.initial_margin:
        return 0
    ratio = f.unrealized_pnl / f.initial_margin
    return 1 + min(3, int(ratio))


def futures_account(account: Account, fig: FuturesFigures, *, version: int = 3) -> dict:
    margin_balance = fig.wallet + fig.unrealized_pnl
    initial = fig.position_margin + fig.open_order_margin
    totals = {
        "totalInitialMargin": fixed(initial, 8),
        "totalMaintMargin": fixed(fig.maint_margin, 8),
        "totalWalletBalance": fixed(fig.wallet, 8),
        "totalUnrealizedProfit": fixed(fig.unrealized_pnl, 8),
        "totalMarginBalance": fixed(margin_balance, 8),
        "totalPositionInitialMargin": fixed(fig.position_margin, 8),
        "totalOpenOrderInitialMargin": fixed(fig.open_order_margin, 8),
        "totalCrossWalletBalance": fixed(fig.wallet, 8),
        "totalCrossUnPnl": fixed(fig.unrealized_pnl, 8),
        "availableBalance": fixed(fig.available, 8),
        "maxWithdrawAmount": fixed(fig.available, 8),
    }
    asset = {
        "asset": "USDT",
        "walletBalance": fixed(fig.wallet, 8),
        "unrealizedProfit": fixed(fig.unrealized_pnl, 8),
        "marginBalance": fixed(margin_balance, 8),
        "maintMargin": fixed(fig.maint_margin, 8),
        "initialMargin": fixed(initial, 8),
        "positionInitialMargin": fixed(fig.position_margin, 8),
        "openOrderInitialMargin": fixed(fig.open_order_margin, 8),
        "crossWalletBalance": fixed(fig.wallet, 8),
        "crossUnPnl": fixed(fig.unrealized_pnl, 8),
        "availableBalance": fixed(fig.available, 8),
        "maxWithdrawAmount": fixed(fig.available, 8),
        "marginAvailable": True,
        "updateTime": fig.updated_ms,
    }
    body: dict = dict(totals)
    if version == 2:
        body.update(
            {
                "feeTier": 0,
                "canTrade": True,
                "canDeposit": True,
                "canWithdraw": False,
                "updateTime": 0,
                "multiAssetsMargin": False,
            }
        )
    body["assets"] = [asset]
    body["positions"] = [_account_position(f, version) for f in fig.positions]
    return body


def _account_position(f: PositionFigures, version: int) -> dict:
    """A position of ``/fapi/v3/account`` (v2 adds entry price, leverage, isolated)."""
    row = {
        "symbol": f.symbol,
        "positionSide": "BOTH",
        "positionAmt": plain(f.qty),
        "unrealizedProfit": fixed(f.unrealized_pnl, 8),
        "isolatedMargin": fixed(f.initial_margin if f.isolated else ZERO, 8),
        "notional": fixed(f.notional, 8),
        "isolatedWallet": fixed(f.initial_margin if f.isolated else ZERO, 8),
        "initialMargin": fixed(f.initial_margin, 8),
        "maintMargin": fixed(f.maint_margin, 8),
        "updateTime": f.updated_ms,
    }
    if version == 2:
        row.update(
            entryPrice=plain(f.entry_price),
            leverage=str(f.leverage),
            isolated=f.isolated,
        )
    return row
