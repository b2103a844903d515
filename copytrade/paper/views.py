"""Binance's JSON shapes for orders, trades, accounts and user-data events (spot and USDⓈ-M)."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

from copytrade.domain.money import ZERO
from copytrade.paper.accounts import Account, Fill, Order

if TYPE_CHECKING:
    from copytrade.paper.exchange import PaperExchange


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
            "workingTime": order.created_ms,
            "origQuoteOrderQty": s8(order.quote_order_qty),
            "selfTradePreventionMode": "NONE",
        }
    )
    if query:
        body.update(
            {
                "stopPrice": s8(ZERO),
                "icebergQty": s8(ZERO),
                "time": order.created_ms,
                "updateTime": order.updated_ms,
                "isWorking": True,
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
    body = spot_order(order, response_type="RESULT")
    body["origClientOrderId"] = order.client_order_id
    return body


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
        "P": s8(ZERO),
        "F": s8(ZERO),
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
        "w": order.is_open,
        "m": fill.is_maker if fill else False,
        "M": False,
        "O": order.created_ms,
        "Z": s8(order.cum_quote),
        "Y": s8(fill.quote_qty if fill else ZERO),
        "Q": s8(order.quote_order_qty),
        "W": order.created_ms,
        "V": "NONE",
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


def futures_order(order: Order, *, query: bool = False) -> dict:
    body = {
        "orderId": order.order_id,
        "symbol": order.symbol,
        "status": order.status,
        "clientOrderId": order.client_order_id,
        "price": plain(order.price),
        "avgPrice": plain(order.average_price),
        "origQty": plain(order.quantity),
        "executedQty": plain(order.executed_qty),
        "cumQty": plain(order.executed_qty),
        "cumQuote": plain(order.cum_quote),
        "timeInForce": order.time_in_force or "GTC",
        "type": order.type,
        "reduceOnly": order.reduce_only,
        "closePosition": False,
        "side": order.side,
        "positionSide": "BOTH",
        "stopPrice": "0",
        "workingType": "CONTRACT_PRICE",
        "priceProtect": False,
        "origType": order.type,
        "priceMatch": "NONE",
        "selfTradePreventionMode": "NONE",
        "goodTillDate": 0,
        "updateTime": order.updated_ms,
    }
    if query:
        body["time"] = order.created_ms
    return body


def futures_trade(f: Fill) -> dict:
    return {
        "buyer": f.side == "BUY",
        "commission": plain(f.commission),
        "commissionAsset": f.commission_asset,
        "id": f.trade_id,
        "maker": f.is_maker,
        "orderId": f.order_id,
        "price": plain(f.price),
        "qty": plain(f.qty),
        "quoteQty": plain(f.quote_qty),
        "realizedPnl": plain(f.realized_pnl),
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
            "V": "NONE",
            "pm": "NONE",
            "gtd": 0,
        },
    }


def _position_entry(ex: PaperExchange, account: Account, symbol: str) -> dict:
    pos = account.positions.get(symbol)
    qty = pos.qty if pos else ZERO
    entry = pos.entry_price if pos else ZERO
    return {
        "s": symbol,
        "pa": plain(qty),
        "ep": plain(entry),
        "bep": plain(entry),
        "cr": "0",
        "up": plain(ex.unrealized_pnl(pos) if pos else ZERO),
        "mt": "isolated" if account.margin_type.get(symbol) == "ISOLATED" else "cross",
        "iw": "0",
        "ps": "BOTH",
    }


def futures_account_update(
    ex: PaperExchange, account: Account, reason: str, symbols: list[str], now: int
) -> dict:
    wallet = account.futures_wallet.get("USDT", ZERO)
    return {
        "e": "ACCOUNT_UPDATE",
        "E": now,
        "T": now,
        "a": {
            "m": reason,
            "B": [{"a": "USDT", "wb": plain(wallet), "cw": plain(wallet), "bc": "0"}],
            "P": [_position_entry(ex, account, s) for s in symbols],
        },
    }


def position_risk(ex: PaperExchange, account: Account, symbol: str, now: int) -> dict:
    pos = account.positions.get(symbol)
    qty = pos.qty if pos else ZERO
    mark = ex.mark_price(symbol)
    leverage = account.leverage_of(symbol)
    isolated = account.margin_type.get(symbol) == "ISOLATED"
    margin = ex.position_margin(account, pos) if pos else ZERO
    return {
        "symbol": symbol,
        "positionSide": "BOTH",
        "positionAmt": plain(qty),
        "entryPrice": plain(pos.entry_price if pos else ZERO),
        "breakEvenPrice": plain(pos.entry_price if pos else ZERO),
        "markPrice": plain(mark),
        "unRealizedProfit": plain(ex.unrealized_pnl(pos) if pos else ZERO),
        "liquidationPrice": "0",
        "isolatedMargin": plain(margin if isolated else ZERO),
        "notional": plain(qty * mark),
        "marginAsset": "USDT",
        "isolatedWallet": plain(margin if isolated else ZERO),
        "initialMargin": plain(margin),
        "maintMargin": plain(margin / 10),
        "positionInitialMargin": plain(margin),
        "openOrderInitialMargin": "0",
        "adl": 0,
        "bidNotional": "0",
        "askNotional": "0",
        "leverage": str(leverage),
        "marginType": "isolated" if isolated else "cross",
        "isolated": isolated,
        "maxNotionalValue": "1000000",
        "isAutoAddMargin": "false",
        "updateTime": pos.updated_ms if pos else now,
    }


def futures_account(ex: PaperExchange, account: Account, now: int, *, version: int = 3) -> dict:
    wallet = account.futures_wallet.get("USDT", ZERO)
    positions = [p for p in account.positions.values() if p.qty]
    upnl = sum((ex.unrealized_pnl(p) for p in positions), ZERO)
    pos_margin = sum((ex.position_margin(account, p) for p in positions), ZERO)
    order_margin = ex.open_order_margin(account)
    available = ex.available_balance(account)
    margin_balance = wallet + upnl
    totals = {
        "totalInitialMargin": plain(pos_margin + order_margin),
        "totalMaintMargin": plain(pos_margin / 10),
        "totalWalletBalance": plain(wallet),
        "totalUnrealizedProfit": plain(upnl),
        "totalMarginBalance": plain(margin_balance),
        "totalPositionInitialMargin": plain(pos_margin),
        "totalOpenOrderInitialMargin": plain(order_margin),
        "totalCrossWalletBalance": plain(wallet),
        "totalCrossUnPnl": plain(upnl),
        "availableBalance": plain(available),
        "maxWithdrawAmount": plain(available),
    }
    asset = {
        "asset": "USDT",
        "walletBalance": plain(wallet),
        "unrealizedProfit": plain(upnl),
        "marginBalance": plain(margin_balance),
        "maintMargin": plain(pos_margin / 10),
        "initialMargin": plain(pos_margin + order_margin),
        "positionInitialMargin": plain(pos_margin),
        "openOrderInitialMargin": plain(order_margin),
        "crossWalletBalance": plain(wallet),
        "crossUnPnl": plain(upnl),
        "availableBalance": plain(available),
        "maxWithdrawAmount": plain(available),
        "marginAvailable": True,
        "updateTime": account.updated_ms or now,
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
    body["positions"] = [
        {
            "symbol": p.symbol,
            "positionSide": "BOTH",
            "positionAmt": plain(p.qty),
            "unrealizedProfit": plain(ex.unrealized_pnl(p)),
            "isolatedMargin": "0",
            "notional": plain(p.qty * ex.mark_price(p.symbol)),
            "isolatedWallet": "0",
            "initialMargin": plain(ex.position_margin(account, p)),
            "maintMargin": plain(ex.position_margin(account, p) / 10),
            "entryPrice": plain(p.entry_price),
            "leverage": str(account.leverage_of(p.symbol)),
            "isolated": account.margin_type.get(p.symbol) == "ISOLATED",
            "updateTime": p.updated_ms,
        }
        for p in positions
    ]
    return body
