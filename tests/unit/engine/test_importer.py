"""Leader history import through ingest validation and quarantine (R-IN-1)."""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from sqlalchemy import func, select

from copytrade.engine.importer import import_fills, read_fills
from models import LeaderFill, QuarantinedEvent
from tests.support.engine_world import make_world

REAL = "leaders/binance-lead-trader-fills-2025-01-27_2025-03-21.csv"


def test_real_leader_file_drops_263_duplicates_keeps_1465_fills_R_IN_1(shared_data):
    kept, report, rejected = read_fills(shared_data / REAL)
    assert report.rows == 1728
    assert report.duplicates == 263 and report.rejected == {"duplicate": 263}
    assert report.kept == 1465 and (report.opening, report.closing) == (1058, 407)
    # times normalised from UTC+3 to UTC, symbols mapped, time order
    first = kept[0].trade
    assert first.symbol in {"XRPUSDT", "SUIUSDT", "1000PEPEUSDT", "ONDOUSDT", "FETUSDT"}
    assert all(a.trade.traded_at <= b.trade.traded_at for a, b in zip(kept, kept[1:], strict=False))
    newest = max(kept, key=lambda r: r.trade.traded_at).trade
    assert (
        newest.traded_at.isoformat() == "2025-03-21T17:43:25+00:00" and newest.symbol == "SUIUSDT"
    )
    assert abs(sum(r.published_pnl for r in kept) - D("1954.79")) < D("0.01")
    # the platform's recomputed PnL is compared on every closing fill that has a basis
    assert report.pnl_compared + report.pnl_no_basis == report.closing
    assert report.pnl_match_cent > 0


def test_import_stores_once_and_quarantines_rejected_rows(session, shared_data):
    with session.begin():
        world = make_world(session)
    with session.begin():
        report = import_fills(session, world.portfolio_id, shared_data / REAL)
    assert report.stored == 1465
    with session.begin():
        again = import_fills(session, world.portfolio_id, shared_data / REAL)
    assert again.stored == 0 and again.already_stored == 1465
    assert session.scalar(select(func.count()).select_from(LeaderFill)) == 1465
    assert (
        session.scalar(
            select(func.count())
            .select_from(QuarantinedEvent)
            .where(QuarantinedEvent.reason_code == "duplicate")
        )
        == 263 * 2
    )


def test_plain_csv_refuses_bad_rows_with_reasons_R_IN_1(tmp_path):
    path = tmp_path / "fills.csv"
    path.write_text(
        "time,symbol,side,price,quantity,realised_pnl\n"
        "2025-03-01T10:00:00Z,BTCUSDT,buy,50000,0.1,\n"
        "2025-03-01T10:00:00Z,BTCUSDT,buy,50000,0.1,\n"  # duplicate
        "2025-03-01T11:00:00,BTCUSDT,buy,50000,0.1,\n"  # no offset
        "2025-03-01T12:00:00+03:00,BTCUSDT,hold,50000,0.1,\n"  # bad side
        "2025-03-01T13:00:00Z,BTCUSDT,buy,-1,0.1,\n"  # negative price
        "2025-03-01T14:00:00Z,btc-usdt,buy,1,0.1,\n"  # unknown symbol
        "2025-03-01T15:00:00Z,BTCUSDT,sell,51000,0.1,100\n"
    )
    kept, report, rejected = read_fills(path)
    assert report.kept == 2 and report.duplicates == 1
    assert report.rejected == {"duplicate": 1, "malformed": 3, "unknown_symbol": 1}
    assert kept[1].recomputed_pnl == D("100") and report.pnl_match_cent == 1
    assert kept[0].trade.traded_at.isoformat() == "2025-03-01T10:00:00+00:00"


HEADER = "time,symbol,side,price,quantity,realised_pnl,position_side\n"
GOOD = "2025-03-01T10:00:00Z,BTCUSDT,buy,50000,0.1,,long\n"


@pytest.mark.parametrize(
    "line,field,rule",
    [
        ("x" * 10_000_000, "line", "at most 4,096"),
        ("2025-03-01T10:00:00Z,BTCUSDT,buy,1e999,0.1,,long", "price", "must fit the ledger"),
        ("2025-03-01T10:00:00Z,BTCUSDT,buy,NaN,0.1,,long", "price", "must be a finite number"),
        ("2025-03-01T10:00:00Z,BTCUSDT,buy,Infinity,0.1,,long", "price", "finite"),
        ("2025-03-01T10:00:00Z,BTCUSDT,buy,50000,-0.1,,long", "quantity", "greater than zero"),
        ("2025-03-01T10:00:00Z,BTCUSDT,buy,50000,0,,long", "quantity", "greater than zero"),
        ("2025-03-01T10:00:00Z,BTCUSDT,buy,0.000000001,1,,long", "price", "at most 8 decimals"),
        ("2025-03-01T10:00:00Z,BTCUSDT,hold,50000,0.1,,long", "side", "buy or sell"),
        ("2025-03-01T10:00:00Z,BTCUSDT,buy,50000,0.1,,sideways", "position_side", "long, short"),
        ("2025-13-45T10:00:00Z,BTCUSDT,buy,50000,0.1,,long", "time", "ISO 8601"),
        ("2025-03-01T10:00:00,BTCUSDT,buy,50000,0.1,,long", "time", "no UTC offset"),
        ("2025-03-01T10:00:00Z,BTCUSDT,buy,50000,0.1,abc,long", "realised_pnl", "decimal"),
        ("2025-03-01T10:00:00Z,BTCUSDT,buy,50000", "row", "the header has 7 columns"),
        ("2025-03-01T10:00:00Z,BTC/USDT,buy,50000,0.1,,long", "symbol", "exchange id"),
    ],
)
def test_each_bad_row_is_quarantined_with_field_value_and_rule_R_IN_1(tmp_path, line, field, rule):
    path = tmp_path / "fills.csv"
    path.write_text(HEADER + GOOD + line + "\n" + GOOD.replace("10:00", "11:00"))
    kept, report, rejected = read_fills(path)
    assert report.kept == 2 and len(rejected) == 1  # the rest is kept
    _code, reason, payload = rejected[0]
    assert payload["line"] == 3 and payload["field"] == field
    assert rule in payload["rule"] and rule in reason and field in reason
    assert len(str(payload)) < 2_000  # a 10 MB line is not copied into the quarantine


def test_a_line_that_is_not_utf8_is_quarantined_alone(tmp_path):
    path = tmp_path / "fills.csv"
    path.write_bytes(
        (HEADER + GOOD).encode() + b"\xff\xfe bad bytes\n" + GOOD.replace("10:00", "11:00").encode()
    )
    kept, report, rejected = read_fills(path)
    assert report.kept == 2 and rejected[0][2]["field"] == "line"
    assert "not UTF-8" in rejected[0][1]


def test_hedge_mode_records_position_sides_and_prehistory_closes(tmp_path):
    path = tmp_path / "fills.csv"
    path.write_text(
        HEADER
        + "2025-03-01T09:00:00Z,BTCUSDT,sell,50000,0.2,10,long\n"  # closes a long opened before
        + "2025-03-01T10:00:00Z,BTCUSDT,buy,50000,0.1,,long\n"
        + "2025-03-01T10:30:00Z,BTCUSDT,sell,50500,0.1,,short\n"
        + "2025-03-01T11:00:00Z,BTCUSDT,sell,51000,0.1,100,long\n"
        + "2025-03-01T12:00:00Z,BTCUSDT,buy,50000,0.1,50,short\n"
        + "2025-03-01T13:00:00Z,ETHUSDT,buy,2000,1,,\n"  # net (one-way) by default
    )
    kept, report, _ = read_fills(path)
    sides = [(r.position_side, r.opening, r.position_before) for r in kept]
    assert sides == [
        ("long", False, D(0)),
        ("long", True, D(0)),
        ("short", True, D(0)),
        ("long", False, D("0.1")),
        ("short", False, D("-0.1")),
        ("net", True, D(0)),
    ]
    assert [r.recomputed_pnl for r in kept] == [None, None, None, D("100"), D("50"), None]
    assert report.pnl_no_basis == 1 and report.pnl_match_cent == 2


def test_capital_since_is_recorded_once_and_refused_after_the_first_fill(session, shared_data):
    from datetime import date

    from models import LeaderHistoryImport

    with session.begin():
        world = make_world(session)
    with (
        pytest.raises(
            ValueError, match="capital_since 2025-02-01 is after the first imported fill"
        ),
        session.begin(),
    ):
        import_fills(
            session, world.portfolio_id, shared_data / REAL, capital_since=date(2025, 2, 1)
        )
    with session.begin():
        assert session.scalar(select(func.count()).select_from(LeaderFill)) == 0
    with session.begin():
        report = import_fills(session, world.portfolio_id, shared_data / REAL)
        import_fills(session, world.portfolio_id, shared_data / REAL)
        early = import_fills(
            session, world.portfolio_id, shared_data / REAL, capital_since=date(2025, 1, 1)
        )
    assert report.capital_since == date(2025, 1, 26) and early.capital_since == date(2025, 1, 1)
    with session.begin():
        rows = session.scalars(select(LeaderHistoryImport).order_by(LeaderHistoryImport.id)).all()
        assert [(r.capital_since, r.fills) for r in rows] == [
            (date(2025, 1, 26), 1465),
            (date(2025, 1, 1), 1465),
        ]
        sides = set(session.scalars(select(LeaderFill.position_side)))
    assert sides == {"long"}
