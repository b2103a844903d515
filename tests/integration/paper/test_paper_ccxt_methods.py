"""Every ccxt unified method issue 15 names runs against the paper exchange, with sync and async
ccxt (unmodified; only ``urls['api']`` points at the paper exchange)."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from decimal import Decimal

import ccxt as ccxt_sync
import pytest

from tests.support.paper_exchange import ccxt_client, sync_ccxt_client

ONDO = "ONDO/USDT:USDT"


async def call(method, *args, **kwargs):
    """Call a ccxt method of a sync or an async client alike."""
    result = method(*args, **kwargs)
    return await result if inspect.isawaitable(result) else result


@pytest.fixture(params=["sync", "async"])
async def clients(request, paper, account) -> AsyncIterator[tuple]:
    make = sync_ccxt_client if request.param == "sync" else ccxt_client
    spot = make("spot", paper.base_url, account.api_key, account.api_secret)
    futures = make("futures", paper.base_url, account.api_key, account.api_secret)
    await call(spot.load_markets)
    await call(futures.load_markets)
    yield spot, futures
    for client in (spot, futures):
        await call(client.close) if hasattr(client, "close") else None


async def test_fetch_ticker_and_tickers_are_spot_with_24h_figures(clients):
    spot, _ = clients
    ticker = await call(spot.fetch_ticker, "ETH/USDT")
    assert ticker["symbol"] == "ETH/USDT"  # not taken for a perpetual any more
    assert ticker["bid"] < ticker["last"] < ticker["ask"]
    assert ticker["baseVolume"] > 0 and ticker["quoteVolume"] > 0
    assert ticker["low"] <= ticker["vwap"] <= ticker["high"]
    tickers = await call(spot.fetch_tickers, ["ETH/USDT", "LTC/USDT"])
    assert set(tickers) == {"ETH/USDT", "LTC/USDT"}
    assert Decimal(ticker["info"]["lastPrice"]) % Decimal("0.01") == 0  # on the tick


async def test_fetch_ohlcv_and_trades_from_the_replayed_candles(clients):
    spot, futures = clients
    for client, symbol in ((spot, "ETH/USDT"), (futures, ONDO)):
        candles = await call(client.fetch_ohlcv, symbol, "5m", None, 12)
        assert len(candles) == 12
        times = [c[0] for c in candles]
        assert all(b - a == 300_000 for a, b in zip(times, times[1:], strict=False))
        assert all(c[3] <= min(c[1], c[4]) and c[2] >= max(c[1], c[4]) for c in candles)
        since = await call(client.fetch_ohlcv, symbol, "1h", times[0], 3)
        assert since[0][0] >= times[0] and len(since) <= 3
        trades = await call(client.fetch_trades, symbol, None, 20)
        assert 0 < len(trades) <= 20
        assert all(t["price"] > 0 and t["amount"] >= 0 for t in trades)


async def test_create_orders_in_one_batch(clients):
    _, futures = clients
    last = Decimal(str((await call(futures.fetch_ticker, ONDO))["last"]))
    low = futures.price_to_precision(ONDO, last * Decimal("0.98"))
    orders = await call(
        futures.create_orders,
        [
            {"symbol": ONDO, "type": "limit", "side": "buy", "amount": 10, "price": low},
            {"symbol": ONDO, "type": "market", "side": "buy", "amount": 10},
            {"symbol": ONDO, "type": "market", "side": "buy", "amount": 0.1},  # below 5 USDT
        ],
    )
    # each item answered on its own: the refused one carries Binance's {code, msg}
    assert sorted(o["status"] for o in orders) == ["closed", "open", "rejected"]
    (refused,) = [o for o in orders if o["status"] == "rejected"]
    assert refused["info"]["code"] == -4164


async def test_edit_order_and_fetch_open_order(clients):
    _, futures = clients
    last = Decimal(str((await call(futures.fetch_ticker, ONDO))["last"]))
    low = futures.price_to_precision(ONDO, last * Decimal("0.97"))
    lower = futures.price_to_precision(ONDO, last * Decimal("0.96"))
    order = await call(futures.create_order, ONDO, "limit", "buy", 10, low)
    edited = await call(futures.edit_order, order["id"], ONDO, "limit", "buy", 12, lower)
    assert edited["id"] == order["id"]
    assert edited["amount"] == 12 and Decimal(str(edited["price"])) == Decimal(lower)
    found = await call(futures.fetch_open_order, order["id"], ONDO)
    assert found["status"] == "open" and found["amount"] == 12
    await call(futures.cancel_order, order["id"], ONDO)
    with pytest.raises(ccxt_sync.OrderNotFound):
        await call(futures.fetch_open_order, order["id"], ONDO)


async def test_fetch_leverage_and_leverage_tiers(clients):
    _, futures = clients
    await call(futures.set_leverage, 7, ONDO)
    leverage = await call(futures.fetch_leverage, ONDO)
    assert leverage["longLeverage"] == 7 and leverage["marginMode"] == "cross"
    tiers = await call(futures.fetch_leverage_tiers, [ONDO])
    first = tiers[ONDO][0]
    assert first["maxLeverage"] == 125 and first["maintenanceMarginRate"] == 0.004


async def test_positions_have_liquidation_maintenance_and_break_even_figures(clients):
    _, futures = clients
    await call(futures.set_leverage, 10, ONDO)
    await call(futures.create_order, ONDO, "market", "buy", 200)
    (position,) = await call(futures.fetch_positions, [ONDO])
    info = position["info"]
    entry, notional = Decimal(info["entryPrice"]), Decimal(info["notional"])
    assert Decimal(info["maintMargin"]) == (abs(notional) * Decimal("0.004")).quantize(
        Decimal("0.00000001")
    )
    assert Decimal(info["breakEvenPrice"]) > entry  # a long must cover both fees
    assert Decimal(info["liquidationPrice"]) < entry
    trades = await call(futures.fetch_my_trades, ONDO)
    assert trades and all(t["info"]["marginAsset"] == "USDT" for t in trades)


async def test_futures_stop_and_take_profit_orders_create_fetch_cancel(clients):
    _, futures = clients
    await call(futures.create_order, ONDO, "market", "buy", 20)
    last = Decimal(str((await call(futures.fetch_ticker, ONDO))["last"]))
    stop = futures.price_to_precision(ONDO, last * Decimal("0.95"))
    target = futures.price_to_precision(ONDO, last * Decimal("1.05"))
    sl = await call(futures.create_order, ONDO, "market", "sell", 20, None, {"stopLossPrice": stop})
    tp = await call(
        futures.create_order, ONDO, "market", "sell", 20, None, {"takeProfitPrice": target}
    )
    assert {sl["info"]["orderType"], tp["info"]["orderType"]} == {
        "STOP_MARKET",
        "TAKE_PROFIT_MARKET",
    }
    opened = await call(futures.fetch_open_orders, ONDO, None, None, {"trigger": True})
    assert {o["id"] for o in opened} == {sl["id"], tp["id"]}
    found = await call(futures.fetch_order, sl["id"], ONDO, {"trigger": True})
    assert found["status"] == "open" and Decimal(str(found["triggerPrice"])) == Decimal(stop)
    await call(futures.cancel_order, sl["id"], ONDO, {"trigger": True})
    await call(futures.cancel_order, tp["id"], ONDO, {"trigger": True})
    assert await call(futures.fetch_open_orders, ONDO, None, None, {"trigger": True}) == []


async def test_spot_edit_order_cancels_and_replaces(clients):
    spot, _ = clients
    last = Decimal(str((await call(spot.fetch_ticker, "ETH/USDT"))["last"]))
    low = spot.price_to_precision("ETH/USDT", last * Decimal("0.97"))
    lower = spot.price_to_precision("ETH/USDT", last * Decimal("0.96"))
    order = await call(spot.create_order, "ETH/USDT", "limit", "buy", 0.1, low)
    edited = await call(spot.edit_order, order["id"], "ETH/USDT", "limit", "buy", 0.2, lower)
    assert edited["id"] != order["id"] and edited["status"] == "open"
    assert edited["amount"] == 0.2
    assert (await call(spot.fetch_order, order["id"], "ETH/USDT"))["status"] == "canceled"
    with pytest.raises(ccxt_sync.BaseError) as caught:  # the old one is gone: nothing placed
        await call(spot.edit_order, order["id"], "ETH/USDT", "limit", "buy", 0.2, lower)
    assert "-2022" in str(caught.value)
    assert [o["id"] for o in await call(spot.fetch_open_orders, "ETH/USDT")] == [edited["id"]]
