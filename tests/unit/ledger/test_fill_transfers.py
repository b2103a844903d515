"""The one builder of a follower fill's ledger transfers (engine and fixtures alike), posted on
SQLite and PostgreSQL: amounts computed there round down to 1e-8 (R-SET-10)."""

from __future__ import annotations

from decimal import Decimal as D

from copytrade.ledger import Ledger, Leg, TransferSpec
from copytrade.ledger.fill_transfers import fill_transfers, spot_cost


def _fill(**overrides) -> list[TransferSpec]:
    args = dict(
        key="7:XRPUSDT:1",
        copy_id=7,
        portfolio_id=3,
        venue="paper",
        kind="spot",
        base="XRP",
        quote="USDT",
        side="buy",
        quantity=D("3"),
        price=D("0.333333333"),
        fee=D("0.00099999"),
        fee_asset="USDT",
        realised_pnl=D(0),
        refs={"copy_id": 7},
    )
    args.update(overrides)
    return fill_transfers(**args)


def _fund(ledger: Ledger, asset: str, amount: str) -> None:
    ledger.post(
        TransferSpec(
            f"fund:{asset}",
            "deposit",
            (Leg("external:deposits", asset, -D(amount)), Leg("follower:7:cash", asset, D(amount))),
        )
    )


def test_spot_cost_and_rebate_round_down_to_1e_8_R_SET_10_R_FEE_2(session):
    """3 × 0.333333333 = 0.999999999 USDT → 0.99999999 (down, never up to 1.00000000); the
    rebate is 10 % of the fee rounded down (0.000099999 → 0.00009999)."""
    assert spot_cost(D("3"), D("0.333333333")) == D("0.99999999")
    specs = _fill()
    assert [s.key for s in specs] == [
        "copy_fill:7:XRPUSDT:1",
        "trading_fee:7:XRPUSDT:1",
        "fee_rebate:7:XRPUSDT:1",
    ]
    with session.begin():
        ledger = Ledger(session)
        _fund(ledger, "USDT", "10")
        ledger.post_many(specs)
    assert ledger.balance("follower:7:cash", "USDT") == D("10") - D("0.99999999") - D("0.00099999")
    assert ledger.balance("follower:7:cash", "XRP") == D("3")
    assert ledger.balance("exchange:paper", "XRP") == D("-3")
    assert ledger.balance("leader:3:rebates", "USDT") == D("0.00009999")
    assert ledger.balance("platform:fees", "USDT") == D("0.00099999") - D("0.00009999")


def test_spot_sell_is_the_mirror_image_of_a_buy(session):
    buy, sell = _fill()[0], _fill(key="7:XRPUSDT:2", side="sell")[0]
    assert {(leg.address, leg.asset, -leg.amount) for leg in buy.legs} == {
        (leg.address, leg.asset, leg.amount) for leg in sell.legs
    }


def test_futures_fill_moves_only_realised_pnl_fee_and_rebate_R_FEE_1(session):
    opening = _fill(kind="futures", base="BTC", quantity=D("0.01"), price=D("60000"), fee=D(0))
    assert opening == []  # nothing changes hands on a futures opening without a fee
    closing = _fill(kind="futures", base="BTC", side="sell", realised_pnl=D("-12.5"), fee=D("0.24"))
    assert [s.code for s in closing] == ["realised_pnl", "trading_fee", "fee_rebate"]
    with session.begin():
        ledger = Ledger(session)
        _fund(ledger, "USDT", "100")
        ledger.post_many(closing)
    assert ledger.balance("follower:7:cash", "USDT") == D("100") - D("12.5") - D("0.24")
    assert ledger.balance("leader:3:rebates", "USDT") == D("0.024")


def test_a_fee_too_small_for_a_rebate_posts_no_rebate_R_LED_6():
    specs = _fill(fee=D("0.00000009"))
    assert [s.code for s in specs] == ["copy_fill", "trading_fee"]
