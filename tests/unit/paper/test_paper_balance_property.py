"""Property: after any sequence of orders, every account's balances equal deposits + fills − fees.

The expected balances are recomputed from the exchange's own trade records (price, quantity,
quote quantity, commission, realised PnL), not from its journal, and must match to the unit.
"""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal as D

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from copytrade.paper.errors import BinanceError

DEPOSITS = {"spot": {"USDT": D(20000), "BTC": D("0.5"), "ETH": D(3)}, "futures": {"USDT": D(5000)}}
SPOT_SYMBOLS = {
    "BTCUSDT": ("BTC", "USDT", "0.00001", "0.01"),
    "ETHUSDT": ("ETH", "USDT", "0.0001", "0.01"),
}
FUTURES_SYMBOLS = {"BTCUSDT": ("0.001", "0.1"), "1000PEPEUSDT": ("1", "0.0000001")}

action = st.one_of(
    st.tuples(
        st.just("spot"),
        st.integers(0, 2),  # account
        st.sampled_from(sorted(SPOT_SYMBOLS)),
        st.sampled_from(["BUY", "SELL"]),
        st.sampled_from(["MARKET", "LIMIT"]),
        st.integers(1, 3000),  # quantity in steps × 10
        st.integers(-30, 30),  # limit price offset in basis points
    ),
    st.tuples(
        st.just("futures"),
        st.integers(0, 2),
        st.sampled_from(sorted(FUTURES_SYMBOLS)),
        st.sampled_from(["BUY", "SELL"]),
        st.sampled_from(["MARKET", "LIMIT"]),
        st.integers(1, 3000),
        st.integers(-30, 30),
    ),
    st.tuples(
        st.just("move"),
        st.sampled_from(["BTCUSDT", "ETHUSDT", "1000PEPEUSDT"]),
        st.integers(-300, 300),
    ),
    st.tuples(st.just("cancel"), st.integers(0, 2)),
)


def _price(ex, kind, symbol, offset_bps, tick):
    price = ex.price(kind, symbol) * (1 + D(offset_bps) / 10000)
    return (price // D(tick)) * D(tick)


def _expected(account) -> tuple[dict, D]:
    spot: dict[str, D] = defaultdict(D)
    for asset, amount in DEPOSITS["spot"].items():
        spot[asset] += amount
    futures = DEPOSITS["futures"]["USDT"]
    for (kind, symbol), fills in account.fills.items():
        for f in fills:
            if kind == "spot":
                base, quote = SPOT_SYMBOLS[symbol][:2]
                sign = 1 if f.side == "BUY" else -1
                spot[base] += sign * f.qty
                spot[quote] -= sign * f.quote_qty
                spot[f.commission_asset] -= f.commission
            else:
                futures += f.realized_pnl - f.commission
    return spot, futures


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(actions=st.lists(action, min_size=1, max_size=40))
def test_balances_equal_deposits_plus_fills_minus_fees(make_exchange, actions):
    ex = make_exchange()
    ex.set_price("spot", "BTCUSDT", D(10000))
    ex.set_price("futures", "BTCUSDT", D(10000))
    accounts = [
        ex.create_account(spot=DEPOSITS["spot"], futures=DEPOSITS["futures"]) for _ in range(3)
    ]
    refused = 0
    for act in actions:
        try:
            if act[0] == "move":
                _, symbol, bps = act
                for kind in ("spot", "futures"):
                    if ex.catalog.get(kind, symbol) is not None:
                        tick = ex.catalog.get(kind, symbol).market.tick_size
                        ex.set_price(kind, symbol, max(tick, _price(ex, kind, symbol, bps, tick)))
            elif act[0] == "cancel":
                account = accounts[act[1]]
                for o in list(account.open_orders.values())[:1]:
                    ex.cancel_order(
                        account, o.kind, {"symbol": o.symbol, "orderId": str(o.order_id)}
                    )
            else:
                kind, who, symbol, side, otype, steps, bps = act
                step, tick = SPOT_SYMBOLS[symbol][2:] if kind == "spot" else FUTURES_SYMBOLS[symbol]
                params = {
                    "symbol": symbol,
                    "side": side,
                    "type": otype,
                    "quantity": str(D(step) * steps * 10),
                }
                if otype == "LIMIT":
                    params.update(price=str(_price(ex, kind, symbol, bps, tick)), timeInForce="GTC")
                ex.place_order(accounts[who], kind, params)
        except BinanceError:
            refused += 1  # a refusal must leave balances untouched; checked below like the rest
    for account in accounts:
        spot, futures = _expected(account)
        for asset in set(spot) | set(account.spot_free) | set(account.spot_locked):
            total = account.spot_free[asset] + account.spot_locked[asset]
            assert total == spot[asset], (asset, total, spot[asset])
            assert account.spot_free[asset] >= 0 and account.spot_locked[asset] >= 0
        assert account.futures_wallet["USDT"] == futures
        locked = defaultdict(D)
        for o in account.open_orders.values():
            if o.kind == "spot":
                base, quote = SPOT_SYMBOLS[o.symbol][:2]
                locked[quote if o.side == "BUY" else base] += o.locked
        for asset, amount in account.spot_locked.items():
            assert amount == locked[asset]
        for symbol, position in account.positions.items():
            signed = sum(
                (f.qty if f.side == "BUY" else -f.qty) for f in account.fills[("futures", symbol)]
            )
            assert position.qty == signed
