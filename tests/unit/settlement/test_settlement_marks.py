"""Unrealised PnL from fills at a mark: exact, cost-method independent, floored (R-SET-3, R-SET-10)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal as D
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from copytrade.domain.money import to_units
from copytrade.settlement.marks import StaticMarks, books_from_rows, mark_books
from tests.support.settlement import Position

AT = datetime(2025, 1, 13, tzinfo=UTC)


def rows(fills):
    return [(s, side, to_units(q), to_units(p), to_units(r)) for s, side, q, p, r in fills]


def test_open_long_is_marked_and_closed_symbols_need_no_mark_R_SET_3():
    fills = [
        ("BTCUSDT", "buy", D(1), D(60000), D(0)),
        ("BTCUSDT", "sell", D("0.5"), D(62000), D(1000)),
        ("ETHUSDT", "buy", D(2), D(3000), D(0)),
        ("ETHUSDT", "sell", D(2), D(2900), D(-200)),
    ]
    marked = mark_books(books_from_rows(rows(fills)), StaticMarks({"BTCUSDT": D(61000)}), AT)
    assert (marked.unrealised, marked.missing) == (D(500), ())
    assert mark_books(books_from_rows(rows(fills)), StaticMarks({}), AT).missing == ("BTCUSDT",)


def test_short_position_gains_when_the_mark_falls_R_SET_3():
    fills = [("XRPUSDT", "sell", D(1000), D("0.5"), D(0))]
    assert mark_books(
        books_from_rows(rows(fills)), StaticMarks({"XRPUSDT": D("0.45")}), AT
    ).unrealised == D(50)


def test_unrealised_rounds_towards_minus_infinity_R_SET_10():
    fills = [("XRPUSDT", "buy", D("0.00000001"), D("0.5"), D(0))]
    # 1e-8 × (0.33333333 − 0.5) = −0.0000000016666667 → −0.00000001 (a loss is never understated)
    marked = mark_books(books_from_rows(rows(fills)), StaticMarks({"XRPUSDT": D("0.33333333")}), AT)
    assert marked.unrealised == D("-0.00000001")


quantities = st.decimals(min_value=D("0.001"), max_value=D(50), places=3)
prices = st.decimals(min_value=D(1), max_value=D(100000), places=2)


@settings(max_examples=200, deadline=None)
@given(
    trades=st.lists(
        st.tuples(st.sampled_from(["buy", "sell"]), quantities, prices), min_size=1, max_size=25
    ),
    mark=prices,
)
def test_realised_plus_unrealised_is_the_exact_total_pnl_R_SET_3(trades, mark):
    """Property: whatever the realised PnL booked (average cost, rounded), realised + unrealised at
    the mark is the position's exact total PnL, floored to 1e-8."""
    position, fills = Position(), []
    for side, q, p in trades:
        fills.append(("BTCUSDT", side, q, p, position.apply(side, q, p)))
    marked = mark_books(books_from_rows(rows(fills)), StaticMarks({"BTCUSDT": mark}), AT)
    net = sum((q if s == "buy" else -q) for _, s, q, _, _ in fills)
    total = Fraction(net) * Fraction(mark) - sum(
        Fraction(q) * Fraction(p) * (1 if s == "buy" else -1) for _, s, q, p, _ in fills
    )
    realised = sum(Fraction(r) for *_, r in fills)
    got = realised + Fraction(marked.unrealised)
    assert got <= total < got + Fraction(1, 10**8)


def test_a_mark_snapshot_answers_only_near_when_it_was_taken_R_SET_3(tmp_path):
    import json
    from datetime import timedelta

    import pytest

    from copytrade.domain.errors import RuleViolation
    from copytrade.settlement.marks import SnapshotMarks

    path = tmp_path / "marks.json"
    path.write_text(
        json.dumps({"taken_at": "2025-01-13T00:00:02+00:00", "prices": {"BTCUSDT": "61000.5"}})
    )
    marks = SnapshotMarks.load(path)
    assert marks.mark_price("BTCUSDT", AT) == D("61000.5")
    assert marks.mark_price("ETHUSDT", AT) is None
    assert marks.mark_price("BTCUSDT", AT + timedelta(hours=1)) is None  # stale: no price
    for bad in (
        {"prices": {}},
        {"taken_at": "2025-01-13T00:00:00", "prices": {}},
        {"taken_at": "2025-01-13T00:00:00+00:00", "prices": {"X": "-1"}},
    ):
        path.write_text(json.dumps(bad))
        with pytest.raises(RuleViolation) as err:
            SnapshotMarks.load(path)
        assert err.value.field == "marks_file"
