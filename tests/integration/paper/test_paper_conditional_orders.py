"""Conditional orders triggered by the replayed price path (issue 15): spot STOP_LOSS_LIMIT and
TAKE_PROFIT_LIMIT on /api/v3/order, USDⓈ-M STOP/TAKE_PROFIT(_MARKET) and TRAILING_STOP_MARKET on
/fapi/v1/algoOrder, the endpoint ccxt 4.5 sends them to. Prices are moved with the admin pin,
which plays the new price through the matching exactly as a replayed point."""

from __future__ import annotations

import json
from decimal import Decimal

import ccxt.async_support as ccxt
import pytest

ONDO = "ONDO/USDT:USDT"


def _code(exc: Exception) -> int:
    text = str(exc)
    return json.loads(text[text.index("{") :])["code"]


@pytest.fixture
def pin(paper):
    pinned: list[tuple[str, str]] = []

    def move(symbol: str, price: Decimal, kind: str) -> None:
        paper.admin.set_price(symbol, price, kind=kind)
        pinned.append((symbol, kind))

    yield move
    for symbol, kind in pinned:
        paper.admin.set_price(symbol, None, kind=kind)


async def _last(client, symbol: str) -> Decimal:
    return Decimal(str((await client.fetch_ticker(symbol))["last"]))


async def _position(futures) -> Decimal:
    rows = await futures.fapiPrivateV2GetPositionRisk({"symbol": "ONDOUSDT"})
    return Decimal(rows[0]["positionAmt"])


async def test_spot_stop_loss_limit_waits_then_sells_when_the_price_falls(spot, pin):
    await spot.create_order("ETH/USDT", "market", "buy", 0.2)
    last = await _last(spot, "ETH/USDT")
    stop = spot.price_to_precision("ETH/USDT", last * Decimal("0.98"))
    limit = spot.price_to_precision("ETH/USDT", last * Decimal("0.97"))
    order = await spot.create_order(
        "ETH/USDT", "limit", "sell", 0.1, limit, {"stopLossPrice": stop}
    )
    assert order["info"]["type"] == "STOP_LOSS_LIMIT" and order["status"] == "open"
    waiting = await spot.fetch_order(order["id"], "ETH/USDT")
    assert waiting["info"]["isWorking"] is False and waiting["info"]["stopPrice"] == f"{stop}000000"
    pin("ETHUSDT", last * Decimal("0.975"), "spot")
    done = await spot.fetch_order(order["id"], "ETH/USDT")
    assert done["status"] == "closed" and done["info"]["isWorking"] is True
    assert done["average"] >= float(limit)


async def test_spot_take_profit_limit_buy_triggers_on_a_fall(spot, pin):
    last = await _last(spot, "ETH/USDT")
    trigger = spot.price_to_precision("ETH/USDT", last * Decimal("0.98"))
    limit = spot.price_to_precision("ETH/USDT", last * Decimal("0.985"))
    order = await spot.create_order(
        "ETH/USDT", "limit", "buy", 0.1, limit, {"takeProfitPrice": trigger}
    )
    assert order["info"]["type"] == "TAKE_PROFIT_LIMIT" and order["status"] == "open"
    pin("ETHUSDT", last * Decimal("0.979"), "spot")
    assert (await spot.fetch_order(order["id"], "ETH/USDT"))["status"] == "closed"


async def test_spot_stop_that_would_trigger_at_once_is_rejected(spot):
    last = await _last(spot, "ETH/USDT")
    above = spot.price_to_precision("ETH/USDT", last * Decimal("1.02"))
    with pytest.raises(ccxt.BaseError) as caught:
        await spot.create_order("ETH/USDT", "limit", "buy", 0.1, above, {"takeProfitPrice": above})
    assert "Order would trigger immediately." in str(caught.value)


async def test_spot_cancelled_stop_releases_its_lock(spot):
    balance = await spot.fetch_balance()
    last = await _last(spot, "ETH/USDT")
    stop = spot.price_to_precision("ETH/USDT", last * Decimal("1.02"))
    limit = spot.price_to_precision("ETH/USDT", last * Decimal("1.03"))
    order = await spot.create_order("ETH/USDT", "limit", "buy", 0.1, limit, {"stopLossPrice": stop})
    locked = (await spot.fetch_balance())["USDT"]["used"]
    assert Decimal(str(locked)) == Decimal("0.1") * Decimal(limit)
    await spot.cancel_order(order["id"], "ETH/USDT")
    assert (await spot.fetch_balance())["USDT"]["free"] == balance["USDT"]["free"]


async def test_futures_stop_market_goes_to_algo_order_and_closes_the_position(futures, pin):
    await futures.create_order(ONDO, "market", "buy", 20)
    last = await _last(futures, ONDO)
    stop = futures.price_to_precision(ONDO, last * Decimal("0.97"))
    algo = await futures.create_order(
        ONDO, "market", "sell", 20, None, {"stopLossPrice": stop, "reduceOnly": True}
    )
    assert algo["info"]["algoStatus"] == "NEW" and algo["info"]["orderType"] == "STOP_MARKET"
    listed = await futures.fetch_open_orders(ONDO, None, None, {"trigger": True})
    assert [o["id"] for o in listed] == [algo["id"]]
    pin("ONDOUSDT", last * Decimal("0.96"), "futures")
    done = await futures.fetch_order(algo["id"], ONDO, {"trigger": True})
    # placed a market order that filled at once: TRIGGERED then FINISHED, as Binance reports
    assert done["info"]["algoStatus"] == "FINISHED" and done["info"]["actualOrderId"]
    assert done["status"] == "closed"
    assert await _position(futures) == 0
    assert await futures.fetch_open_orders(ONDO, None, None, {"trigger": True}) == []


async def test_futures_take_profit_limit_and_cancel(futures, pin):
    last = await _last(futures, ONDO)
    trigger = futures.price_to_precision(ONDO, last * Decimal("0.98"))
    limit = futures.price_to_precision(ONDO, last * Decimal("0.985"))
    kept = await futures.create_order(ONDO, "limit", "buy", 10, limit, {"takeProfitPrice": trigger})
    dropped = await futures.create_order(
        ONDO, "limit", "buy", 10, limit, {"takeProfitPrice": trigger}
    )
    assert kept["info"]["orderType"] == "TAKE_PROFIT"
    cancelled = await futures.cancel_order(dropped["id"], ONDO, {"trigger": True})
    assert cancelled["info"]["msg"] == "success"
    pin("ONDOUSDT", last * Decimal("0.979"), "futures")
    assert (await futures.fetch_order(kept["id"], ONDO, {"trigger": True}))["info"][
        "algoStatus"
    ] == "FINISHED"  # its limit buy crossed the book when it triggered
    gone = await futures.fetch_order(dropped["id"], ONDO, {"trigger": True})
    assert gone["info"]["algoStatus"] == "CANCELED"
    assert await _position(futures) == 10


async def test_futures_trailing_stop_follows_the_peak(futures, pin):
    await futures.create_order(ONDO, "market", "buy", 30)
    last = await _last(futures, ONDO)
    algo = await futures.create_order(
        ONDO, "market", "sell", 30, None, {"trailingPercent": 1, "reduceOnly": True}
    )
    assert algo["info"]["orderType"] == "TRAILING_STOP_MARKET"
    pin("ONDOUSDT", last * Decimal("1.03"), "futures")  # new peak: no trigger on the rise
    assert await _position(futures) == 30
    pin("ONDOUSDT", last * Decimal("1.025"), "futures")  # −0.5 % from the peak
    assert await _position(futures) == 30
    pin("ONDOUSDT", last * Decimal("1.015"), "futures")  # −1.5 %: triggers
    assert await _position(futures) == 0


async def test_futures_conditional_types_on_the_order_endpoint_are_refused_4120(futures):
    with pytest.raises(ccxt.BaseError) as caught:
        await futures.fapiPrivatePostOrder(
            {
                "symbol": "ONDOUSDT",
                "side": "SELL",
                "type": "STOP_MARKET",
                "quantity": "10",
                "stopPrice": "0.5",
            }
        )
    assert _code(caught.value) == -4120


async def test_futures_stop_that_would_trigger_at_once_is_rejected_2021(futures):
    last = await _last(futures, ONDO)
    above = futures.price_to_precision(ONDO, last * Decimal("1.02"))
    with pytest.raises(ccxt.BaseError) as caught:
        await futures.create_order(ONDO, "market", "sell", 10, None, {"stopLossPrice": above})
    assert _code(caught.value) == -2021


async def test_futures_triggered_limit_rests_as_triggered_then_finishes_when_cancelled(
    futures, pin
):
    last = await _last(futures, ONDO)
    trigger = futures.price_to_precision(ONDO, last * Decimal("1.02"))
    limit = futures.price_to_precision(ONDO, last * Decimal("0.99"))  # below: it will rest
    algo = await futures.create_order(ONDO, "limit", "buy", 10, limit, {"stopLossPrice": trigger})
    assert algo["info"]["orderType"] == "STOP"
    pin("ONDOUSDT", last * Decimal("1.021"), "futures")
    triggered = await futures.fetch_order(algo["id"], ONDO, {"trigger": True})
    assert triggered["info"]["algoStatus"] == "TRIGGERED"
    actual = triggered["info"]["actualOrderId"]
    assert (await futures.fetch_order(actual, ONDO))["status"] == "open"
    await futures.cancel_order(actual, ONDO)
    finished = await futures.fetch_order(algo["id"], ONDO, {"trigger": True})
    assert finished["info"]["algoStatus"] == "FINISHED"
