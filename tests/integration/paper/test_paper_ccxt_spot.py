"""Unmodified ccxt.binance over real HTTP against the paper exchange (spot /api/v3)."""

from __future__ import annotations

from decimal import Decimal

import ccxt.async_support as ccxt
import pytest

from tests.support.paper_exchange import ccxt_client, point_at_paper


async def test_load_markets_with_api_key_and_no_options(paper, account):
    """A plain ccxt.binance with a key (sapi calls included) loads the real BTC/USDT filters."""
    client = point_at_paper(
        ccxt.binance({"apiKey": account.api_key, "secret": account.api_secret}), paper.base_url
    )
    try:
        markets = await client.load_markets()
    finally:
        await client.close()
    btc = markets["BTC/USDT"]
    assert btc["precision"]["amount"] == 0.00001
    assert btc["precision"]["price"] == 0.01
    assert btc["limits"]["cost"]["min"] == 5
    assert "ETH/BTC" in markets and "XRP/ETH" in markets
    assert "BTC/USDT:USDT" in markets  # the USDⓈ-M list is served too


async def test_fetch_balance(spot):
    balance = await spot.fetch_balance()
    assert balance["info"]["balances"] == [
        {"asset": "USDT", "free": "10000.00000000", "locked": "0.00000000"}
    ]
    assert balance["USDT"]["free"] == 10000


async def test_market_order_keeps_our_client_id_and_fills(spot):
    order = await spot.create_order(
        "BTC/USDT", "market", "buy", "0.01", None, {"clientOrderId": "copy-1-a"}
    )
    assert order["clientOrderId"] == "copy-1-a"
    assert order["status"] == "closed"
    assert order["info"]["executedQty"] == "0.01000000"
    balance = await spot.fetch_balance()
    cost = Decimal(order["info"]["cummulativeQuoteQty"])
    assert Decimal(balance["info"]["balances"][1]["free"]) == Decimal(10000) - cost
    assert balance["info"]["balances"][0] == {
        "asset": "BTC",
        "free": "0.00999000",
        "locked": "0.00000000",
    }


async def test_limit_order_rests_is_listed_found_by_client_id_and_cancelled(spot):
    ticker = await spot.fetch_ticker("BTC/USDT")
    price = Decimal(str(ticker["last"])) - 500
    order = await spot.create_order(
        "BTC/USDT", "limit", "buy", "0.02", str(price), {"clientOrderId": "rest-1"}
    )
    assert order["status"] == "open"
    open_orders = await spot.fetch_open_orders("BTC/USDT")
    assert [o["clientOrderId"] for o in open_orders] == ["rest-1"]
    locked = (await spot.fetch_balance())["USDT"]["used"]
    assert Decimal(str(locked)) == Decimal("0.02") * price

    found = await spot.fetch_order(None, "BTC/USDT", {"origClientOrderId": "rest-1"})
    assert found["id"] == order["id"] and found["status"] == "open"

    cancelled = await spot.cancel_order(None, "BTC/USDT", {"origClientOrderId": "rest-1"})
    assert cancelled["status"] == "canceled"
    assert await spot.fetch_open_orders("BTC/USDT") == []
    balance = await spot.fetch_balance()
    assert balance["USDT"]["free"] == 10000 and balance["USDT"]["used"] == 0


async def test_unknown_client_id_is_order_not_found(spot):
    with pytest.raises(ccxt.OrderNotFound):
        await spot.fetch_order(None, "BTC/USDT", {"origClientOrderId": "never-sent"})


async def test_my_trades_since_an_id(spot):
    for i in range(3):
        await spot.create_order(
            "BTC/USDT", "market", "buy", "0.001", None, {"clientOrderId": f"t-{i}"}
        )
    trades = await spot.fetch_my_trades("BTC/USDT")
    assert len(trades) == 3
    ids = [int(t["id"]) for t in trades]
    assert ids == sorted(ids)
    since = await spot.fetch_my_trades("BTC/USDT", None, None, {"fromId": str(ids[1])})
    assert [int(t["id"]) for t in since] == ids[1:]


async def test_orders_rounded_to_real_filters_are_accepted(spot):
    """BTC/USDT of the shared snapshot: step 0.00001, tick 0.01, min notional 5."""
    amount = spot.amount_to_precision("BTC/USDT", 0.000567891)
    assert amount == "0.00056"
    order = await spot.create_order("BTC/USDT", "market", "buy", amount)
    assert order["status"] == "closed"
    price = spot.price_to_precision("BTC/USDT", 9000.123456)
    assert price == "9000.12"
    limit = await spot.create_order("BTC/USDT", "limit", "buy", "0.001", price)
    assert limit["status"] == "open"


@pytest.mark.parametrize(
    ("amount", "price", "filter_name"),
    [
        ("0.000015", None, "LOT_SIZE"),  # off the 0.00001 step
        ("0.001", "9000.005", "PRICE_FILTER"),  # off the 0.01 tick
    ],
)
async def test_off_filter_orders_refused_with_binance_code(spot, amount, price, filter_name):
    order_type = "limit" if price else "market"
    with pytest.raises(ccxt.InvalidOrder) as caught:
        # Bypass ccxt's own rounding so the exchange sees the raw value, as a buggy client would.
        await spot.privatePostOrder(
            {
                "symbol": "BTCUSDT",
                "side": "BUY",
                "type": order_type.upper(),
                "quantity": amount,
                **({"price": price, "timeInForce": "GTC"} if price else {}),
            }
        )
    assert '"code":-1013' in str(caught.value)
    assert f"Filter failure: {filter_name}" in str(caught.value)


async def test_below_min_notional_refused(spot):
    with pytest.raises(ccxt.BadRequest) as caught:
        await spot.create_order("BTC/USDT", "market", "buy", "0.0001")  # ~1 USDT < 5
    assert '"code":-1013' in str(caught.value) and "NOTIONAL" in str(caught.value)


async def test_insufficient_balance_is_insufficient_funds(spot):
    with pytest.raises(ccxt.InsufficientFunds, match="insufficient balance"):
        await spot.create_order("BTC/USDT", "market", "buy", "2")  # ~20,000 USDT > 10,000
    assert (await spot.fetch_balance())["USDT"]["free"] == 10000


async def test_bad_secret_and_unknown_key_are_authentication_errors(paper, account):
    for key, secret in ((account.api_key, "0" * 64), ("f" * 64, account.api_secret)):
        client = ccxt_client("spot", paper.base_url, key, secret)
        client.options["fetchCurrencies"] = False
        try:
            with pytest.raises(ccxt.AuthenticationError):
                await client.fetch_balance()
        finally:
            await client.close()


async def test_stale_timestamp_refused(spot):
    """A request older than its recvWindow is refused with -1021 (ccxt: InvalidNonce)."""
    with pytest.raises(ccxt.InvalidNonce):
        await spot.privateGetAccount(
            {"timestamp": spot.milliseconds() - 60_000, "recvWindow": 5000}
        )


async def test_limit_order_fills_partially_as_price_crosses_it(paper, spot):
    """Each crossing point of the price path fills up to one book level (R: partial fills)."""
    await spot.close()
    admin = paper.admin
    acc = admin.create_account(spot={"USDT": "40000"})
    client = ccxt_client("spot", paper.base_url, acc.api_key, acc.api_secret)
    try:
        await client.load_markets()
        admin.set_price("ETHUSDT", "1000")
        # One level holds 2,000 × 5 USDT = 10,000 USDT ≈ 10.1 ETH at 990: 25 ETH needs three crossings.
        order = await client.create_order(
            "ETH/USDT", "limit", "buy", "25", "990", {"clientOrderId": "partial-1"}
        )
        assert order["status"] == "open" and order["filled"] == 0
        fills = []
        for _ in range(3):
            admin.set_price("ETHUSDT", "985")
            state = await client.fetch_order(None, "ETH/USDT", {"origClientOrderId": "partial-1"})
            fills.append(Decimal(state["info"]["executedQty"]))
        assert fills[0] > 0 and fills[0] < Decimal(25)
        assert fills[0] < fills[1] < fills[2] == Decimal(25)
        assert state["status"] == "closed"
        trades = await client.fetch_my_trades("ETH/USDT")
        assert len(trades) == 3
        assert all(t["takerOrMaker"] == "maker" and t["price"] == 990 for t in trades)
    finally:
        admin.set_price("ETHUSDT", None)
        await client.close()
