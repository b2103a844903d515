"""Sizing of follower orders (R-COPY-1/4/6/7/12, R-LEAD-8, R-X-3) on real Binance filters.

Hand-computed cases pin the rules; a property test checks the vectorised sizing against the
one-copy Decimal reference on random books.
"""

from __future__ import annotations

import json
from decimal import Decimal as D

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from copytrade.config import get_settings
from copytrade.domain.markets import Market
from copytrade.domain.sizing import (
    REASON_CODES,
    SEND,
    CopyBook,
    CopySettings,
    FillSpec,
    size_fill,
    size_reference,
)


def _markets() -> dict[str, Market]:
    path = get_settings().data_dir / "exchange" / "binance-markets.json"
    if not path.exists():
        pytest.skip(f"reference data {path} is absent")
    raw = json.loads(path.read_text())
    return {
        "BTCUSDT": Market.from_exchange_info(raw["BTC/USDT"]["info"], "spot"),
        "BTCUSDT:F": Market.from_exchange_info(raw["BTC/USDT:USDT"]["info"], "futures"),
        "XRPUSDT:F": Market.from_exchange_info(raw["XRP/USDT:USDT"]["info"], "futures"),
        "DOGEUSDT": Market.from_exchange_info(raw["DOGE/USDT"]["info"], "spot"),
    }


@pytest.fixture(scope="module")
def markets() -> dict[str, Market]:
    return _markets()


def fill(market: Market, **kw) -> FillSpec:
    base = dict(
        symbol=market.symbol,
        side="buy",
        opening=True,
        quantity=D("1"),
        price=D("50000"),
        leader_position_before=D("0"),
        leader_equity=D("100000"),
        reference_price=D("50000"),
        market=market,
    )
    base.update(kw)
    return FillSpec(**base)


def decide(settings_: list[CopySettings], spec: FillSpec, positions=None):
    book = CopyBook.build(settings_)
    if positions:
        book.position(spec.symbol)[:] = [int(p * 100_000_000) for p in positions]
    result = size_fill(book, spec)
    out = []
    for i in range(len(book)):
        code = int(result.codes[i])
        out.append(
            (
                D(int(result.quantity_units[i])).scaleb(-8).normalize(),
                None if code == SEND else REASON_CODES[code],
            )
        )
    return out


def test_fixed_ratio_scales_by_equity_and_rounds_down_R_COPY_1_R_COPY_6(markets):
    btc = markets["BTCUSDT:F"]  # step 0.001, min notional 5
    # 1.234 BTC × 3,333 / 100,000 = 0.0411292… → 0.041
    got = decide(
        [CopySettings(1, equity=D("3333"), cash=D("10000"), leverage=2)],
        fill(btc, quantity=D("1.234")),
    )
    assert got == [(D("0.041"), None)]


def test_fixed_amount_uses_notional_at_leader_price_once_per_order_R_COPY_1(markets):
    xrp = markets["XRPUSDT:F"]  # step 0.1, min notional 5
    s = CopySettings(1, equity=D("1000"), cash=D("1000"), ratio_mode=False, fixed_amount=D("100"))
    spec = fill(xrp, price=D("0.6123"), reference_price=D("0.6123"), quantity=D("500"))
    assert decide([s], spec) == [(D("163.3"), None)]  # 100 / 0.6123 = 163.318… → 163.3
    later = fill(
        xrp,
        price=D("0.6123"),
        reference_price=D("0.6123"),
        quantity=D("500"),
        first_fill_of_order=False,
    )
    assert decide([s], later) == [(D("0"), "fixed_amount_order_copied")]


def test_reduction_is_pro_rata_to_own_position_R_COPY_4(markets):
    btc = markets["BTCUSDT:F"]
    spec = fill(btc, side="sell", opening=False, quantity=D("0.3"), leader_position_before=D("1"))
    got = decide(
        [
            CopySettings(1, D("1000"), D("0")),
            CopySettings(2, D("1000"), D("0")),
            CopySettings(3, D("1000"), D("0")),
        ],
        spec,
        positions=[D("0.05"), D("0.5"), D("0")],
    )
    # 0.05 × 0.3 = 0.015; 0.5 × 0.3 = 0.15; nothing held → no_position
    assert got == [(D("0.015"), None), (D("0.15"), None), (D("0"), "no_position")]


def test_full_close_closes_whole_follower_position_R_COPY_4(markets):
    btc = markets["BTCUSDT:F"]
    spec = fill(btc, side="sell", opening=False, quantity=D("1"), leader_position_before=D("1"))
    assert decide([CopySettings(1, D("1000"), D("0"))], spec, positions=[D("0.037")]) == [
        (D("0.037"), None)
    ]


def test_below_minimum_policies_R_COPY_6(markets):
    btc = markets["BTCUSDT:F"]  # min notional 5 USDT at 50,000 → min 0.001 (step)
    spec = fill(btc, quantity=D("0.01"))  # × 50 / 100,000 → 0.000005 BTC: below 0.001
    base = dict(equity=D("50"), cash=D("1000"))
    got = decide(
        [
            CopySettings(1, policy="skip", **base),
            CopySettings(2, policy="round_up", **base),
            CopySettings(3, policy="accumulate", **base),
            CopySettings(4, policy="round_up", equity=D("50"), cash=D("10")),  # 0.001 BTC costs 50
        ],
        spec,
    )
    assert got == [
        (D("0"), "below_minimum"),
        (D("0.001"), None),
        (D("0"), "accumulating"),
        (D("0"), "below_minimum"),
    ]


def test_accumulate_sends_once_the_sum_passes_the_filters_R_COPY_6(markets):
    xrp = markets["XRPUSDT:F"]  # step 0.1, min notional 5 at 0.5 → 10 XRP
    book = CopyBook.build([CopySettings(1, equity=D("100"), cash=D("1000"), policy="accumulate")])
    spec = fill(
        xrp, quantity=D("3000"), price=D("0.5"), reference_price=D("0.5"), leader_equity=D("100000")
    )
    sent = []
    for _ in range(4):  # each fill computes 3 XRP
        r = size_fill(book, spec)
        sent.append((int(r.quantity_units[0]), REASON_CODES.get(int(r.codes[0]))))
    assert sent == [
        (0, "accumulating"),
        (0, "accumulating"),
        (0, "accumulating"),
        (12 * 10**8, None),
    ]
    assert int(book.accumulator("XRPUSDT")[0]) == 0


def test_short_balance_reduces_to_what_it_covers_else_skips_R_COPY_7(markets):
    btc = markets["BTCUSDT"]  # spot, step 0.00001, min notional 5
    spec = fill(
        btc, quantity=D("1"), leader_equity=D("100000")
    )  # ratio 1000/100000 → 0.01 BTC = 500 USDT
    got = decide(
        [
            CopySettings(1, equity=D("1000"), cash=D("1000")),
            CopySettings(
                2, equity=D("1000"), cash=D("101.5")
            ),  # 101.5 / (0.5 × (1 + 0.1 % fee + 0.3 % spot BTC slippage)) = 202.19 → 202 steps
            CopySettings(3, equity=D("1000"), cash=D("4")),
        ],
        spec,
    )
    assert got == [(D("0.01"), None), (D("0.00202"), None), (D("0"), "insufficient_balance")]


def test_max_cost_slippage_symbols_close_only_pause_R_COPY_12_R_X_3(markets):
    btc = markets["BTCUSDT"]
    moved = fill(btc, quantity=D("1"), price=D("50000"), reference_price=D("50300"))  # +0.6 %
    common = dict(equity=D("1000"), cash=D("10000"))
    got = decide(
        [
            CopySettings(1, max_cost=D("100"), **common),  # 100 / 0.503 per step → 198 steps
            CopySettings(2, **common),  # BTC default limit 0.5 % < 0.6 % moved
            CopySettings(3, slippage_limit=D("0.01"), **common),
            CopySettings(4, symbols=frozenset({"ETHUSDT"}), **common),
            CopySettings(5, close_only=True, **common),
            CopySettings(6, paused=True, **common),
            CopySettings(7, max_cost=D("1"), slippage_limit=D("0.01"), **common),
        ],
        moved,
    )
    assert got == [
        (D("0"), "slippage_limit"),
        (D("0"), "slippage_limit"),
        (D("0.01"), None),
        (D("0"), "symbol_not_allowed"),
        (D("0"), "close_only"),
        (D("0"), "daily_loss_limit"),
        (D("0"), "max_cost"),
    ]
    calm = fill(btc, quantity=D("1"))
    assert decide([CopySettings(1, max_cost=D("100"), **common)], calm) == [(D("0.002"), None)]


def test_close_only_and_paused_copies_still_follow_reductions_R_X_3(markets):
    btc = markets["BTCUSDT:F"]
    spec = fill(btc, side="sell", opening=False, quantity=D("0.5"), leader_position_before=D("1"))
    got = decide(
        [
            CopySettings(1, D("1000"), D("0"), close_only=True),
            CopySettings(2, D("1000"), D("0"), paused=True),
        ],
        spec,
        positions=[D("0.01"), D("0.01")],
    )
    assert got == [(D("0.005"), None), (D("0.005"), None)]


def test_leverage_above_5x_refused_once_aum_capped_R_LEAD_8(markets):
    btc = markets["BTCUSDT:F"]
    copies = [
        CopySettings(1, D("1000"), D("1000"), leverage=5),
        CopySettings(2, D("1000"), D("1000"), leverage=6),
    ]
    assert decide(copies, fill(btc, aum_capped=True)) == [
        (D("0.01"), None),
        (D("0"), "leverage_cap"),
    ]
    assert decide(copies, fill(btc, aum_capped=False)) == [(D("0.01"), None), (D("0.01"), None)]


def test_huge_values_take_the_exact_big_integer_path(markets):
    btc = markets["BTCUSDT"]
    s = CopySettings(1, equity=D("9000000000"), cash=D("90000000000"))
    spec = fill(
        btc,
        quantity=D("9000"),
        leader_equity=D("90000000000"),
        price=D("1"),
        reference_price=D("1"),
    )
    assert decide([s], spec)[0] == size_reference(s, spec)[:2]


def _settings_strategy(copy_id: int):
    return st.builds(
        CopySettings,
        copy_id=st.just(copy_id),
        equity=st.decimals(D("1"), D("1000000"), places=2),
        cash=st.decimals(D("0"), D("100000"), places=2),
        ratio_mode=st.booleans(),
        fixed_amount=st.decimals(D("1"), D("5000"), places=2),
        max_cost=st.one_of(st.none(), st.decimals(D("1"), D("10000"), places=2)),
        slippage_limit=st.one_of(st.none(), st.decimals(D("0"), D("0.05"), places=4)),
        leverage=st.integers(1, 10),
        policy=st.sampled_from(["skip", "round_up", "accumulate"]),
        close_only=st.booleans(),
        paused=st.booleans(),
        symbols=st.one_of(
            st.none(), st.just(frozenset({"XRPUSDT"})), st.just(frozenset({"BTCUSDT"}))
        ),
    )


@settings(max_examples=150, deadline=None)
@given(
    data=st.data(),
    key=st.sampled_from(["BTCUSDT", "BTCUSDT:F", "XRPUSDT:F", "DOGEUSDT"]),
    opening=st.booleans(),
    side=st.sampled_from(["buy", "sell"]),
    qty=st.decimals(D("0.001"), D("50000"), places=3),
    price=st.decimals(D("0.01"), D("90000"), places=2),
    move=st.decimals(D("-0.03"), D("0.03"), places=4),
    first=st.booleans(),
    capped=st.booleans(),
)
def test_vectorised_sizing_matches_the_decimal_reference(
    data, key, opening, side, qty, price, move, first, capped
):
    market = _markets()[key]
    copies = [data.draw(_settings_strategy(i)) for i in range(1, 6)]
    positions = [data.draw(st.decimals(D("-5"), D("5"), places=3)) for _ in copies]
    if market.kind == "spot":
        positions = [abs(p) for p in positions]
    accumulated = [data.draw(st.decimals(D("0"), D("0.5"), places=8)) for _ in copies]
    before = data.draw(st.decimals(D("0.001"), D("100000"), places=3))
    spec = FillSpec(
        symbol=market.symbol,
        side=side,
        opening=opening,
        quantity=qty,
        price=price,
        leader_position_before=before,
        leader_equity=D("250000"),
        reference_price=(price * (1 + move)).quantize(D("0.01")),
        market=market,
        aum_capped=capped,
        first_fill_of_order=first,
    )
    book = CopyBook.build(copies)
    book.position(market.symbol)[:] = [int(p * 10**8) for p in positions]
    book.accumulator(market.symbol)[:] = [int(a * 10**8) for a in accumulated]
    result = size_fill(book, spec)
    for i, s in enumerate(copies):
        qty_ref, reason, acc = size_reference(s, spec, positions[i], accumulated[i])
        code = int(result.codes[i])
        assert (
            D(int(result.quantity_units[i])).scaleb(-8),
            None if code == SEND else REASON_CODES[code],
        ) == (
            qty_ref,
            reason,
        ), f"copy {i}: {s}"
        if opening:
            assert D(int(book.accumulator(market.symbol)[i])).scaleb(-8) == acc


def test_sizing_returns_int64_columns(markets):
    book = CopyBook.build([CopySettings(i, D("1000"), D("1000")) for i in range(1, 4)])
    r = size_fill(book, fill(markets["BTCUSDT:F"]))
    assert r.quantity_units.dtype == np.int64 and r.codes.dtype == np.int8
