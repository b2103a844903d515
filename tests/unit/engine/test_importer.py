"""Leader history import through ingest validation and quarantine (R-IN-1)."""

from __future__ import annotations

from decimal import Decimal as D

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
