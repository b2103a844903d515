"""The paper exchange's engine: fills, fees, locking, partial fills on the replayed path, futures."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from copytrade.paper.errors import BinanceError
from copytrade.paper.prices import parse_time_ms


def order(ex, account, kind="spot", **params):
    p = {k: str(v) for k, v in params.items()}
    p.setdefault("symbol", "BTCUSDT")
    p.setdefault("type", "MARKET")
    return ex.place_order(account, kind, p)


def test_market_buy_pays_quote_and_fee_in_base(exchange):
    acc = exchange.create_account(spot={"USDT": D(10000)})
    exchange.set_price("spot", "BTCUSDT", D(20000))
    o, fills = order(exchange, acc, side="BUY", quantity="0.1", newClientOrderId="a")
    assert o.status == "FILLED" and o.client_order_id == "a"
    cost = sum(f.quote_qty for f in fills)
    fee = sum(f.commission for f in fills)
    assert acc.spot_free["USDT"] == D(10000) - cost
    assert acc.spot_free["BTC"] == D("0.1") - fee
    assert fee == D("0.0001")  # 0.1 % taker
    assert all(f.commission_asset == "BTC" and not f.is_maker for f in fills)


def test_order_size_moves_the_fill_price(exchange):
    acc = exchange.create_account(spot={"USDT": D(1_000_000)})
    exchange.set_price("spot", "BTCUSDT", D(10000))
    _, small = order(exchange, acc, side="BUY", quantity="0.01")
    _, large = order(exchange, acc, side="BUY", quantity="5")  # ~5 levels of 10,000 USDT
    avg = lambda fills: sum(f.quote_qty for f in fills) / sum(f.qty for f in fills)  # noqa: E731
    assert len(small) == 1 and len(large) > 3
    assert avg(large) > avg(small) > D(10000)
    assert [f.price for f in large] == sorted(f.price for f in large)


def test_sell_fee_in_quote_and_insufficient_base_refused(exchange):
    acc = exchange.create_account(spot={"BTC": D("0.5")})
    exchange.set_price("spot", "BTCUSDT", D(10000))
    _, fills = order(exchange, acc, side="SELL", quantity="0.5")
    proceeds = sum(f.quote_qty for f in fills)
    assert acc.spot_free["USDT"] == proceeds - sum(f.commission for f in fills)
    with pytest.raises(BinanceError) as caught:
        order(exchange, acc, side="SELL", quantity="0.1")
    assert caught.value.code == -2010
    assert acc.spot_free["BTC"] == 0


@pytest.mark.parametrize(
    ("quantity", "price", "code", "message"),
    [
        ("0.000015", None, -1013, "Filter failure: LOT_SIZE"),
        ("0.0001", None, -1013, "Filter failure: NOTIONAL"),
        ("0.001", "9000.001", -1013, "Filter failure: PRICE_FILTER"),
        ("9001", "9000", -1013, "Filter failure: LOT_SIZE"),
    ],
)
def test_spot_filters_refused_with_binance_codes(exchange, quantity, price, code, message):
    acc = exchange.create_account(spot={"USDT": D(10_000_000)})
    exchange.set_price("spot", "BTCUSDT", D(10000))
    params = {"side": "BUY", "quantity": quantity}
    if price:
        params.update(type="LIMIT", price=price, timeInForce="GTC")
    with pytest.raises(BinanceError) as caught:
        order(exchange, acc, **params)
    assert (caught.value.code, caught.value.msg) == (code, message)
    assert acc.orders == {} and acc.spot_free["USDT"] == D(10_000_000)


def test_limit_order_locks_then_cancel_unlocks(exchange):
    acc = exchange.create_account(spot={"USDT": D(1000)})
    exchange.set_price("spot", "BTCUSDT", D(10000))
    o, fills = order(
        exchange,
        acc,
        side="BUY",
        type="LIMIT",
        quantity="0.05",
        price="9000",
        timeInForce="GTC",
        newClientOrderId="l1",
    )
    assert fills == [] and o.status == "NEW"
    assert acc.spot_locked["USDT"] == D(450) and acc.spot_free["USDT"] == D(550)
    with pytest.raises(BinanceError) as caught:  # open orders keep their client id unique
        order(
            exchange,
            acc,
            side="BUY",
            type="LIMIT",
            quantity="0.01",
            price="9000",
            timeInForce="GTC",
            newClientOrderId="l1",
        )
    assert caught.value.msg == "Duplicate order sent."
    exchange.cancel_order(acc, "spot", {"symbol": "BTCUSDT", "origClientOrderId": "l1"})
    assert acc.spot_locked["USDT"] == 0 and acc.spot_free["USDT"] == D(1000)
    with pytest.raises(BinanceError) as caught:
        exchange.cancel_order(acc, "spot", {"symbol": "BTCUSDT", "origClientOrderId": "l1"})
    assert caught.value.code == -2011


def test_crossing_limit_buy_takes_then_rests_and_gets_back_the_price_difference(exchange):
    acc = exchange.create_account(spot={"USDT": D(100_000)})
    exchange.set_price("spot", "BTCUSDT", D(10000))
    # 3 BTC at ≤ 10,010: levels at 10,001 / 10,003 / … hold ~1 BTC each up to the limit.
    o, fills = order(
        exchange, acc, side="BUY", type="LIMIT", quantity="8", price="10005", timeInForce="GTC"
    )
    taken = sum(f.qty for f in fills)
    assert 0 < taken < D(8) and o.status == "PARTIALLY_FILLED"
    spent = sum(f.quote_qty for f in fills)
    rest = D(8) - taken
    assert acc.spot_locked["USDT"] == rest * D(10005)
    assert acc.spot_free["USDT"] == D(100_000) - spent - rest * D(10005)


def test_ioc_remainder_expires_and_fok_fills_nothing(exchange):
    acc = exchange.create_account(spot={"USDT": D(200_000)})
    exchange.set_price("spot", "BTCUSDT", D(10000))
    ioc, fills = order(
        exchange, acc, side="BUY", type="LIMIT", quantity="8", price="10003", timeInForce="IOC"
    )
    assert ioc.status == "EXPIRED" and fills and acc.spot_locked["USDT"] == 0
    fok, fills = order(
        exchange, acc, side="BUY", type="LIMIT", quantity="8", price="10003", timeInForce="FOK"
    )
    assert fok.status == "EXPIRED" and fills == []


def test_resting_limit_fills_partially_as_the_real_path_crosses_it(make_exchange, catalog_and_data):
    """ETHUSDT replays ETH/BTC 5-minute candles × 10,000: find a dip and let the clock run into it."""
    ex = make_exchange("2025-01-27T00:00:00Z")
    path = catalog_and_data[1].path("spot", "ETHUSDT")
    now = ex.clock.now_ms()
    start = path.index(now)
    current = path.at_index(start)
    # The lowest point of the next 12 hours and the limit just above it.
    window = [(path.at_index(i), i) for i in range(start + 1, start + 577)]
    low, low_index = min(window)
    assert low < current
    limit = (low * D("1.002")).quantize(D("0.01"))
    acc = ex.create_account(spot={"USDT": D(1_000_000)})
    o, fills = order(
        ex,
        acc,
        symbol="ETHUSDT",
        side="BUY",
        type="LIMIT",
        quantity="100",
        price=str(limit),
        timeInForce="GTC",
    )
    assert fills == []
    ex.clock.set(path.time_of(low_index) + 1)
    ex.tick()
    assert o.executed_qty > 0
    assert o.status in ("PARTIALLY_FILLED", "FILLED")
    made = acc.fills[("spot", "ETHUSDT")]
    assert all(f.is_maker and f.price == limit for f in made)
    assert all(f.commission == (f.qty * D("0.001")).quantize(D("0.00000001")) for f in made)


def test_futures_position_open_add_reduce_flip_and_realised_pnl(exchange):
    acc = exchange.create_account(futures={"USDT": D(10000)})
    exchange.set_leverage(acc, "BTCUSDT", "10")
    exchange.set_price("futures", "BTCUSDT", D(10000))
    order(exchange, acc, "futures", side="BUY", quantity="0.5")
    pos = acc.positions["BTCUSDT"]
    first_entry = pos.entry_price
    exchange.set_price("futures", "BTCUSDT", D(11000))
    order(exchange, acc, "futures", side="BUY", quantity="0.5")
    assert pos.qty == D(1) and first_entry < pos.entry_price < D(11002)
    entry = pos.entry_price
    _, fills = order(exchange, acc, "futures", side="SELL", quantity="1.5")
    assert pos.qty == D("-0.5")
    # The closing fills realise (price − entry) on the part that closes the long, to 1e-8.
    left, expected = D(1), []
    for f in fills:
        closed = min(left, f.qty)
        expected.append((closed * (f.price - entry)).quantize(D("0.00000001")))
        left -= closed
    assert [f.realized_pnl for f in fills] == expected
    total_pnl = sum(f.realized_pnl for f in acc.fills[("futures", "BTCUSDT")])
    fees = sum(f.commission for f in acc.fills[("futures", "BTCUSDT")])
    assert acc.futures_wallet["USDT"] == D(10000) + total_pnl - fees
    assert pos.entry_price == fills[-1].price  # the flipped part opens at the fill price


def test_futures_margin_reduce_only_and_min_notional(exchange):
    acc = exchange.create_account(futures={"USDT": D(1000)})
    exchange.set_price("futures", "BTCUSDT", D(10000))
    exchange.set_leverage(acc, "BTCUSDT", "2")
    with pytest.raises(BinanceError) as caught:
        order(exchange, acc, "futures", side="BUY", quantity="0.3")  # 3,000 / 2 > 1,000
    assert caught.value.code == -2019
    with pytest.raises(BinanceError) as caught:
        order(exchange, acc, "futures", side="SELL", quantity="0.1", reduceOnly="true")
    assert caught.value.code == -2022
    with pytest.raises(BinanceError) as caught:
        order(exchange, acc, "futures", side="BUY", quantity="0.0001")
    assert caught.value.code == -1111  # off the 0.001 step
    exchange.set_price("futures", "BTCUSDT", D(1000))
    with pytest.raises(BinanceError) as caught:
        order(exchange, acc, "futures", side="BUY", quantity="0.001")  # 1 USDT < 5
    assert caught.value.code == -4164
    assert acc.futures_wallet["USDT"] == D(1000) and acc.orders == {}


def test_funding_from_the_funding_file_is_paid_by_longs(make_exchange):
    ex = make_exchange("2021-11-17T23:00:00Z")  # XRPUSDT funding at 2021-11-18T00:00 (rate 0.0001)
    ex.tick()
    acc = ex.create_account(futures={"USDT": D(10000)})
    order(ex, acc, "futures", symbol="XRPUSDT", side="BUY", quantity="1000")
    wallet = acc.futures_wallet["USDT"]
    ex.clock.set(parse_time_ms("2021-11-18T00:00:01Z"))
    mark = ex.mark_price("XRPUSDT")
    ex.tick()
    funding = [entry for entry in acc.journal if entry[2] == "funding"]
    assert len(funding) == 1
    assert funding[0][3] == (-D(1000) * mark * D("0.0001")).quantize(D("0.00000001"))
    assert acc.futures_wallet["USDT"] == wallet + funding[0][3]


def test_mark_price_comes_from_the_mark_file(make_exchange):
    ex = make_exchange("2021-11-15T06:00:00Z")
    assert ex.mark_price("XRPUSDT") == D("1.20932")  # the mark file's open at 06:00
    assert ex.price("futures", "XRPUSDT") != ex.mark_price("XRPUSDT")


def test_my_trades_from_id_and_lookup_by_client_id(exchange):
    acc = exchange.create_account(spot={"USDT": D(10000)})
    exchange.set_price("spot", "BTCUSDT", D(10000))
    ids = []
    for i in range(4):
        _, fills = order(exchange, acc, side="BUY", quantity="0.001", newClientOrderId=f"m{i}")
        ids.append(fills[0].trade_id)
    got = exchange.my_trades(acc, "spot", {"symbol": "BTCUSDT", "fromId": str(ids[2])})
    assert [f.trade_id for f in got] == ids[2:]
    found = exchange.find_order(
        acc, "spot", {"symbol": "BTCUSDT", "origClientOrderId": "m1"}, (-2013, "x")
    )
    assert found.client_order_id == "m1" and found.status == "FILLED"
