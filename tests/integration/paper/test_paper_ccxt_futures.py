"""Unmodified ccxt.binanceusdm over real HTTP against the paper exchange (USDⓈ-M /fapi)."""

from __future__ import annotations

from decimal import Decimal

import ccxt.async_support as ccxt
import pytest

PEPE = "1000PEPE/USDT:USDT"


async def test_load_markets_lists_real_and_candle_file_perpetuals(futures):
    markets = futures.markets
    btc = markets["BTC/USDT:USDT"]
    assert btc["precision"]["amount"] == 0.001 and btc["precision"]["price"] == 0.1
    assert markets[PEPE]["precision"]["price"] == 0.0000001
    assert "ONDO/USDT:USDT" in markets and "XRP/USDT:USDT" in markets


async def test_set_leverage_margin_mode_and_fetch_positions(futures):
    assert (await futures.set_leverage(5, PEPE))["leverage"] == 5
    await futures.set_margin_mode("isolated", PEPE)
    with pytest.raises(ccxt.MarginModeAlreadySet):
        await futures.set_margin_mode("isolated", PEPE)
    order = await futures.create_order(
        PEPE, "market", "buy", "20000", None, {"clientOrderId": "fut-open"}
    )
    assert order["status"] == "closed" and order["clientOrderId"] == "fut-open"
    positions = await futures.fetch_positions()
    assert len(positions) == 1
    position = positions[0]
    assert position["symbol"] == PEPE
    assert position["info"]["positionAmt"] == "20000"
    assert position["side"] == "long"
    # /fapi/v3/positionRisk (ccxt's default) has no leverage or margin type, as on Binance:
    # they come from symbolConfig (fetch_leverage), or from the older v2 answer.
    leverage = await futures.fetch_leverage(PEPE)
    assert leverage["longLeverage"] == 5 and leverage["marginMode"] == "isolated"
    (v2,) = await futures.fetch_positions([PEPE], {"useV2": True})
    assert v2["leverage"] == 5 and v2["marginMode"] == "isolated"


async def test_fetch_balance_and_realised_pnl_on_close(paper, futures, account):
    await futures.create_order(PEPE, "market", "buy", "100000", None, {"clientOrderId": "rp-open"})
    paper.admin.set_price("1000PEPEUSDT", "0.0150000", kind="futures")
    try:
        await futures.create_order(
            PEPE,
            "market",
            "sell",
            "100000",
            None,
            {"clientOrderId": "rp-close", "reduceOnly": True},
        )
    finally:
        paper.admin.set_price("1000PEPEUSDT", None, kind="futures")
    trades = await futures.fetch_my_trades(PEPE)
    assert [t["side"] for t in trades] == ["buy", "sell"]
    pnl = Decimal(trades[1]["info"]["realizedPnl"])
    assert pnl > 0
    fees = sum(Decimal(t["info"]["commission"]) for t in trades)
    balance = await futures.fetch_balance()
    assert Decimal(balance["info"]["totalWalletBalance"]) == Decimal(5000) + pnl - fees
    assert await futures.fetch_positions() == []


async def test_limit_order_open_fetch_by_client_id_cancel(futures):
    price = Decimal(str((await futures.fetch_ticker(PEPE))["last"])) * Decimal(
        "0.97"
    )  # within PERCENT_PRICE (0.95–1.05 × mark)
    price = futures.price_to_precision(PEPE, price)
    order = await futures.create_order(
        PEPE, "limit", "buy", "5000", price, {"clientOrderId": "fl-1"}
    )
    assert order["status"] == "open"
    assert [o["clientOrderId"] for o in await futures.fetch_open_orders(PEPE)] == ["fl-1"]
    found = await futures.fetch_order(None, PEPE, {"origClientOrderId": "fl-1"})
    assert found["id"] == order["id"]
    cancelled = await futures.cancel_order(None, PEPE, {"origClientOrderId": "fl-1"})
    assert cancelled["status"] == "canceled"
    assert await futures.fetch_open_orders(PEPE) == []


async def test_user_trades_since_an_id(futures):
    for i in range(3):
        await futures.create_order(
            PEPE,
            "market",
            "buy" if i % 2 == 0 else "sell",
            "1000",
            None,
            {"clientOrderId": f"ut-{i}"},
        )
    ids = [int(t["id"]) for t in await futures.fetch_my_trades(PEPE)]
    since = await futures.fetch_my_trades(PEPE, None, None, {"fromId": str(ids[-1])})
    assert [int(t["id"]) for t in since] == ids[-1:]


async def test_off_step_quantity_and_small_notional_refused_with_binance_codes(futures):
    with pytest.raises(ccxt.BadRequest) as caught:
        await futures.fapiPrivatePostOrder(
            {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.0015"}
        )
    assert '"code":-1111' in str(caught.value)
    with pytest.raises(ccxt.ExchangeError) as caught:
        await futures.create_order(PEPE, "market", "buy", "100")  # 1.4 USDT < 5
    assert '"code":-4164' in str(caught.value)


async def test_insufficient_margin_is_code_2019(futures):
    """ccxt maps -2019 to InsufficientFunds only for fapi.binance.com URLs; the gateway maps it everywhere."""
    await futures.set_leverage(1, "BTC/USDT:USDT")
    with pytest.raises(ccxt.ExchangeError) as caught:
        await futures.create_order("BTC/USDT:USDT", "market", "buy", "1")  # 10,000 USDT > 5,000
    assert '"code":-2019' in str(caught.value)
