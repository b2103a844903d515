"""Binance's order rules on the paper exchange, through unmodified ccxt over HTTP (issue 15).

Error codes and messages are Binance's: spot https://developers.binance.com/docs/binance-spot-api-docs/errors
and filters https://developers.binance.com/docs/binance-spot-api-docs/filters; USDⓈ-M
https://developers.binance.com/docs/derivatives/usds-margined-futures/error-code.
"""

from __future__ import annotations

from decimal import Decimal

import ccxt.async_support as ccxt
import pytest

ONDO = "ONDO/USDT:USDT"


def _code(exc: Exception) -> int:
    import json

    text = str(exc)
    return json.loads(text[text.index("{") :])["code"]


async def _position(futures, symbol: str) -> Decimal:
    rows = await futures.fapiPrivateV2GetPositionRisk({"symbol": symbol.replace("/", "")[:-5]})
    return Decimal(rows[0]["positionAmt"])


async def test_reduce_only_larger_than_the_position_closes_it_and_never_flips(futures):
    await futures.create_order(ONDO, "market", "buy", 100)
    order = await futures.create_order(ONDO, "market", "sell", 300, None, {"reduceOnly": True})
    assert Decimal(order["info"]["executedQty"]) == 100
    assert await _position(futures, ONDO) == 0


@pytest.mark.parametrize("side", ["buy", "sell"])
async def test_reduce_only_without_a_position_is_rejected_2022(futures, side):
    with pytest.raises(ccxt.BaseError) as caught:
        await futures.create_order(ONDO, "market", side, 10, None, {"reduceOnly": True})
    assert _code(caught.value) == -2022


async def test_reduce_only_on_the_increasing_side_is_rejected_2022(futures):
    await futures.create_order(ONDO, "market", "buy", 50)
    with pytest.raises(ccxt.BaseError) as caught:
        await futures.create_order(ONDO, "market", "buy", 10, None, {"reduceOnly": True})
    assert _code(caught.value) == -2022
    assert await _position(futures, ONDO) == 50


async def test_resting_reduce_only_limit_never_flips_when_it_fills(paper, futures):
    await futures.create_order(ONDO, "market", "buy", 20)
    last = Decimal(str((await futures.fetch_ticker(ONDO))["last"]))
    price = futures.price_to_precision(ONDO, last * Decimal("1.01"))
    await futures.create_order(ONDO, "limit", "sell", 20, price, {"reduceOnly": True})
    await futures.create_order(ONDO, "market", "sell", 5, None, {"reduceOnly": True})
    paper.admin.set_price("ONDOUSDT", Decimal(price) * 2, kind="futures")
    try:
        assert await _position(futures, ONDO) == 0
    finally:
        paper.admin.set_price("ONDOUSDT", None, kind="futures")


async def test_spot_buy_far_below_the_market_fails_percent_price_by_side_1013(spot):
    last = Decimal(str((await spot.fetch_ticker("ETH/USDT"))["last"]))
    with pytest.raises(ccxt.InvalidOrder) as caught:
        await spot.create_order("ETH/USDT", "limit", "buy", 0.1, float(last / 10))
    # ccxt maps Binance's -1013 "Filter failure: …" answers to InvalidOrder with the message
    assert str(caught.value) == "binance Filter failure: PERCENT_PRICE_BY_SIDE"


@pytest.mark.parametrize(
    ("factor", "code", "says"),
    [("1.06", -4016, "can't be higher than"), ("0.94", -4024, "can't be lower than")],
)
async def test_futures_limit_beyond_percent_price_of_the_mark(futures, factor, code, says):
    last = Decimal(str((await futures.fetch_ticker(ONDO))["last"]))
    price = futures.price_to_precision(ONDO, last * Decimal(factor))
    side = "sell" if factor < "1" else "buy"
    with pytest.raises(ccxt.BaseError) as caught:
        await futures.create_order(ONDO, "limit", side, 10, price)
    assert _code(caught.value) == code and says in str(caught.value)


@pytest.mark.parametrize(
    ("price", "code"),
    [("500.00", -4013), ("10000.05", -4014), ("10000.123", -1111)],
    ids=["below-min-price", "off-tick", "too-many-decimals"],
)
async def test_futures_price_filter_codes(futures, price, code):
    """BTCUSDT: minPrice 556.80, tick 0.10, pricePrecision 2 (Binance's filters, verbatim)."""
    request = {
        "symbol": "BTCUSDT",
        "side": "BUY",
        "type": "LIMIT",
        "timeInForce": "GTC",
        "quantity": "0.001",
        "price": price,
    }
    with pytest.raises(ccxt.BaseError) as caught:
        await futures.fapiPrivatePostOrder(request)
    assert _code(caught.value) == code


async def test_position_side_long_in_one_way_mode_is_rejected_4061(futures):
    with pytest.raises(ccxt.BaseError) as caught:
        await futures.create_order(ONDO, "market", "buy", 10, None, {"positionSide": "LONG"})
    assert _code(caught.value) == -4061


async def test_iceberg_is_kept_on_spot_and_refused_on_futures(spot, futures):
    last = Decimal(str((await spot.fetch_ticker("ETH/USDT"))["last"]))
    price = spot.price_to_precision("ETH/USDT", last * Decimal("0.98"))
    order = await spot.create_order("ETH/USDT", "limit", "buy", 1, price, {"icebergQty": 0.2})
    assert (await spot.fetch_order(order["id"], "ETH/USDT"))["info"]["icebergQty"] == "0.20000000"
    with pytest.raises(ccxt.BaseError) as caught:  # more than ICEBERG_PARTS' 10 parts
        await spot.create_order("ETH/USDT", "limit", "buy", 1, price, {"icebergQty": 0.05})
    assert "ICEBERG_PARTS" in str(caught.value)
    with pytest.raises(ccxt.BaseError) as caught:
        await futures.fapiPrivatePostOrder(
            {
                "symbol": "ONDOUSDT",
                "side": "BUY",
                "type": "MARKET",
                "quantity": "10",
                "icebergQty": "1",
            }
        )
    assert _code(caught.value) == -1106


async def test_self_trade_prevention_mode_is_echoed_or_refused(spot):
    last = Decimal(str((await spot.fetch_ticker("ETH/USDT"))["last"]))
    price = spot.price_to_precision("ETH/USDT", last * Decimal("0.98"))
    default = await spot.create_order("ETH/USDT", "limit", "buy", 0.1, price)
    assert default["info"]["selfTradePreventionMode"] == "EXPIRE_MAKER"  # the symbol's default
    chosen = await spot.create_order(
        "ETH/USDT", "limit", "buy", 0.1, price, {"selfTradePreventionMode": "EXPIRE_TAKER"}
    )
    assert chosen["info"]["selfTradePreventionMode"] == "EXPIRE_TAKER"
    with pytest.raises(ccxt.BaseError) as caught:
        await spot.create_order(
            "ETH/USDT", "limit", "buy", 0.1, price, {"selfTradePreventionMode": "SOMETIMES"}
        )
    assert _code(caught.value) == -1100


async def test_limit_maker_rests_or_is_rejected_when_it_would_take(spot):
    last = Decimal(str((await spot.fetch_ticker("ETH/USDT"))["last"]))
    below = spot.price_to_precision("ETH/USDT", last * Decimal("0.99"))
    above = spot.price_to_precision("ETH/USDT", last * Decimal("1.01"))
    rested = await spot.create_order("ETH/USDT", "LIMIT_MAKER", "buy", 0.1, below)
    assert rested["status"] == "open" and rested["info"]["type"] == "LIMIT_MAKER"
    with pytest.raises(ccxt.InvalidOrder) as caught:
        await spot.create_order("ETH/USDT", "LIMIT_MAKER", "buy", 0.1, above)
    assert "Order would immediately match and take." in str(caught.value)


async def test_exchange_info_lists_only_order_types_that_work(spot, futures):
    spot_info = await spot.publicGetExchangeInfo()
    futures_info = await futures.fapiPublicGetExchangeInfo()
    # each of these is exercised in test_paper_conditional_orders.py / above
    assert {t for s in spot_info["symbols"] for t in s["orderTypes"]} == {
        "LIMIT",
        "LIMIT_MAKER",
        "MARKET",
        "STOP_LOSS_LIMIT",
        "TAKE_PROFIT_LIMIT",
    }
    assert {t for s in futures_info["symbols"] for t in s["orderTypes"]} == {
        "LIMIT",
        "MARKET",
        "STOP",
        "STOP_MARKET",
        "TAKE_PROFIT",
        "TAKE_PROFIT_MARKET",
        "TRAILING_STOP_MARKET",
    }
    assert not any(s["ocoAllowed"] for s in spot_info["symbols"])  # order lists: not served
    assert all(s["cancelReplaceAllowed"] for s in spot_info["symbols"])
    assert all("GTD" not in s["timeInForce"] for s in futures_info["symbols"])
