"""Ledger streams on SQLite and PostgreSQL: one hash chain per stream, anchored into a root chain
(R-X-4); writers on different streams never wait for each other; shared accounts striped.

Tampering goes through ``copytrade ledger verify-chain`` (what an operator runs) and through the
validation checkpoint (what gates payouts, R-LED-7).
"""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session
from typer.testing import CliRunner

import models
from copytrade.cli import app
from copytrade.config import get_settings
from copytrade.db import make_engine
from copytrade.ledger import Ledger, Leg, NegativeBalance, TransferSpec
from copytrade.ledger.chain import parse_heads, stream_genesis
from copytrade.validation import validate_ledger


def deposit(key: str, address: str, amount: str = "100") -> TransferSpec:
    return TransferSpec(
        key,
        "deposit",
        (Leg("external:deposits", "USDT", -D(amount)), Leg(address, "USDT", D(amount))),
    )


def fill(key: str, copy_id: int, fee: str = "0.1") -> list[TransferSpec]:
    """What the engine posts for a follower's spot buy: the swap, the fee and the rebate (here
    copy N follows lead portfolio N, so the stream that owns the copy owns its leader too)."""
    cash = f"follower:{copy_id}:cash"
    return [
        TransferSpec(
            f"copy_fill:{key}",
            "copy_fill",
            (
                Leg(cash, "USDT", D("-10")),
                Leg("exchange:binance", "USDT", D("10")),
                Leg("exchange:binance", "BTC", D("-0.0001")),
                Leg(cash, "BTC", D("0.0001")),
            ),
        ),
        TransferSpec(
            f"trading_fee:{key}",
            "trading_fee",
            (Leg(cash, "USDT", -D(fee)), Leg("platform:fees", "USDT", D(fee))),
        ),
        TransferSpec(
            f"fee_rebate:{key}",
            "fee_rebate",
            (
                Leg("platform:fees", "USDT", -D(fee) / 10),
                Leg(f"leader:{copy_id}:rebates", "USDT", D(fee) / 10),
            ),
        ),
    ]


def build(engine, streams=(0, 1, 2), fills: int = 4) -> None:
    """Fund one copy per stream in stream 0, then post fills round-robin in each copy's stream."""
    with Session(engine) as session, session.begin():
        Ledger(session).post_many([deposit(f"fund-{s}", f"follower:{s}:cash") for s in streams])
    for i in range(fills):
        for stream in streams:
            with Session(engine) as session, session.begin():
                Ledger(session).post_many(fill(f"{stream}-{i}", stream), stream=stream)


@pytest.fixture
def verify_chain(monkeypatch, db_url, tmp_path):
    """Run ``copytrade ledger verify-chain`` on the test's ledger; return (exit code, output)."""
    monkeypatch.setenv("COPYTRADE_DATABASE_URL", db_url)
    monkeypatch.setenv("COPYTRADE_HOME", str(tmp_path / "home"))
    get_settings.cache_clear()
    runner = CliRunner()

    def run():
        result = runner.invoke(app, ["ledger", "verify-chain"])
        return result.exit_code, result.output

    yield run
    get_settings.cache_clear()


def sql(engine, *statements: str) -> None:
    with engine.begin() as conn:
        for statement in statements:
            conn.exec_driver_sql(statement)


def lift_guards(engine) -> None:
    """Act as someone with DDL rights: lift the append-only triggers of ledger history."""
    tables = ("ledger_transfers", "ledger_postings", "ledger_anchors")
    if engine.dialect.name == "sqlite":
        sql(
            engine,
            *(
                f"drop trigger if exists trg_{t}__no_{op}"
                for t in tables
                for op in ("update", "delete")
            ),
        )
    else:
        sql(engine, *(f"alter table {t} disable trigger user" for t in tables))


def delete_transfer(engine, stream: int, seq: int, *, move_head: bool) -> None:
    """Delete one transfer with its postings, undo its balance moves and, if asked, move the
    stream's head back to the transfer before it — a deletion that leaves no SQL trace."""
    where = (
        f"transfer_id = (select id from ledger_transfers where stream = {stream} and seq = {seq})"
    )
    statements = [  # a shared account's move in another stream than 0 was on its stripe
        "update ledger_accounts set balance = balance - (select sum(p.amount) from ledger_postings p "
        f"where p.account_id = ledger_accounts.id and p.{where}) "
        f"where id in (select account_id from ledger_postings where {where}) and id not in "
        f"(select account_id from ledger_balance_stripes where stream = {stream} and {stream} > 0)",
        "update ledger_balance_stripes set balance = balance - (select sum(p.amount) "
        f"from ledger_postings p where p.account_id = ledger_balance_stripes.account_id and p.{where}) "
        f"where stream = {stream} and account_id in (select account_id from ledger_postings where {where})",
        f"delete from ledger_postings where {where}",
        f"delete from ledger_transfers where stream = {stream} and seq = {seq}",
    ]
    if move_head:
        statements.append(
            f"update ledger_chain_heads set last_seq = {seq - 1}, last_hash = (select hash from "
            f"ledger_transfers where stream = {stream} and seq = {seq - 1}) where stream = {stream}"
        )
    sql(engine, *statements)


def test_each_stream_chains_from_its_own_genesis_and_verifies_R_X_4(engine, verify_chain):
    build(engine)
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "select stream, seq, prev_hash from ledger_transfers order by id"
        ).all()
        heads = dict(
            conn.exec_driver_sql(
                "select stream, last_seq from ledger_chain_heads where stream >= 0"
            ).all()
        )
    assert heads == {0: 3 + 12, 1: 12, 2: 12}  # stream 0: three fundings, then its fills
    for stream in (1, 2):
        mine = [(seq, prev) for s, seq, prev in rows if s == stream]
        assert [seq for seq, _ in mine] == list(range(1, 13))
        assert mine[0][1] == stream_genesis(stream) != stream_genesis(0)
    code, output = verify_chain()
    assert code == 0, output
    assert "39 transfers checked in 3 streams" in output


def test_shared_accounts_are_striped_per_stream_and_sum_to_their_postings_R_LED_2(engine):
    build(engine, fills=2)
    with Session(engine) as session:
        ledger = Ledger(session)
        for address, asset in (("platform:fees", "USDT"), ("exchange:binance", "BTC")):
            assert ledger.balance(address, asset) == ledger.sum_of_postings(address, asset)
        assert ledger.balance("platform:fees", "USDT") == D("0.54")  # 6 fills × 0.09
        stripes = session.execute(
            text(
                "select s.stream, s.balance from ledger_balance_stripes s join ledger_accounts a "
                "on a.id = s.account_id where a.address = 'platform:fees' order by s.stream"
            )
        ).all()
        assert stripes == [(1, 18_000_000), (2, 18_000_000)]  # stream 0's part is the row
        assert {b.address for b in ledger.balances("platform:")} == {"platform:fees"}


def spend_fees(amount: str) -> TransferSpec:
    return TransferSpec(
        "fees-out",
        "fee_payout",
        (Leg("platform:fees", "USDT", -D(amount)), Leg("external:exchange", "USDT", D(amount))),
    )


def test_a_stream_spends_only_its_own_part_of_a_guarded_shared_account_R_LED_2(engine):
    build(engine, streams=(0, 1), fills=1)  # each stream collected 0.09 of fees
    with Session(engine) as session:
        with pytest.raises(NegativeBalance, match="R-LED-2"), session.begin():
            Ledger(session).post(spend_fees("0.1"), stream=1)
        with pytest.raises(NegativeBalance, match="R-LED-2"), session.begin():
            Ledger(session).post(spend_fees("0.09"), stream=2)  # stream 2 collected nothing
        with session.begin():
            Ledger(session).post(spend_fees("0.09"), stream=1)
        assert Ledger(session).balance("platform:fees", "USDT") == D("0.09")


def test_a_stream_is_a_non_negative_integer(engine):
    with Session(engine) as session, pytest.raises(ValueError, match="stream"):
        Ledger(session).post_many([deposit("d", "person:1:spot")], stream=-1)


@pytest.mark.parametrize(
    "tampering",
    [
        "edit_amount",
        "delete_transfer",
        "swap_two",
        "delete_last_anchored",
        "delete_last_unanchored",
        "delete_last_anchor",
    ],
)
def test_verify_chain_detects_every_kind_of_tampering_R_X_4(engine, verify_chain, tampering):
    build(engine)
    with Session(engine) as session, session.begin():
        Ledger(session).anchor()  # what every validation does once the chains verified
    assert verify_chain()[0] == 0
    lift_guards(engine)
    if tampering == "edit_amount":
        sql(
            engine,
            "update ledger_postings set amount = amount + 1 where amount > 0 and transfer_id = "
            "(select id from ledger_transfers where stream = 2 and seq = 5)",
        )
        expected = "stream 2 seq 5: content (postings, key or code) was edited"
    elif tampering == "delete_transfer":
        delete_transfer(engine, 1, 7, move_head=False)
        expected = "stream 1: sequence gap: expected 7, found 8"
    elif tampering == "swap_two":
        sql(
            engine,
            "update ledger_transfers set seq = -seq where stream = 1 and seq in (4, 5)",
            "update ledger_transfers set seq = 9 + seq where stream = 1 and seq in (-4, -5)",
        )
        expected = "stream 1: sequence gap: expected 4, found 5"
    elif tampering == "delete_last_anchored":
        # the last transfer of stream 2 and its head moved back: only the anchor remembers it
        delete_transfer(engine, 2, 12, move_head=True)
        expected = "stream 2: ends at seq 11, but anchor 1 records seq 12 (transfers were removed)"
    elif tampering == "delete_last_anchor":
        # the anchor goes too: the root chain's head row still names it
        delete_transfer(engine, 2, 12, move_head=True)
        sql(engine, "delete from ledger_anchors where seq = 1")
        expected = "root chain: ends at anchor 0, but its head records anchor 1"
    else:
        # after the anchor: the stream's head still names the deleted transfer
        with Session(engine) as session, session.begin():
            Ledger(session).post_many(fill("late", 2), stream=2)
        delete_transfer(engine, 2, 15, move_head=False)
        expected = "stream 2: ends at seq 14, but its head records seq 15 (transfers were removed)"
    code, output = verify_chain()
    assert code == 1, output
    assert expected in " ".join(output.split())


def test_the_checkpoint_anchors_and_then_catches_a_stream_cut_short_R_X_4_R_LED_7(engine, db_url):
    build(engine, fills=2)
    with Session(engine) as session, session.begin():  # stream 1's last transfer: a deposit
        Ledger(session).post(deposit("extra", "follower:1:cash"), stream=1)
    first = validate_ledger(db_url)
    assert first.passed, [r["detail"] for r in first.rows() if r["result"] != "pass"]
    with engine.connect() as conn:
        (anchored,) = conn.exec_driver_sql("select heads from ledger_anchors").scalars().all()
    assert {s: seq for s, (seq, _) in parse_heads(anchored).items()} == {0: 9, 1: 7, 2: 6}
    lift_guards(engine)
    delete_transfer(engine, 1, 7, move_head=True)  # every SQL check still passes
    second = validate_ledger(db_url)
    assert second.failed_checks() == {"chain_recomputed_without_break"}, second.rows()
    assert "anchor 1 records seq 7" in second.chain_problem


def test_a_writer_anchors_every_stream_head_every_K_transfers_R_X_4(engine, monkeypatch):
    monkeypatch.setattr("copytrade.ledger.service.ANCHOR_EVERY", 5)
    build(engine, streams=(0, 1), fills=3)  # stream 0 passes 5 and 10, stream 1 passes 5
    with engine.connect() as conn:
        anchors = conn.exec_driver_sql("select seq, heads from ledger_anchors order by seq").all()
    assert [seq for seq, _ in anchors] == [1, 2, 3]
    assert [{s: q for s, (q, _) in parse_heads(heads).items()} for _, heads in anchors] == [
        {0: 5},
        {0: 8, 1: 6},
        {0: 11, 1: 6},
    ]
    with Session(engine) as session:
        report = Ledger(session).verify_chain()
    assert report.ok and report.anchors == 3


# -- PostgreSQL: writers on different streams do not block each other -------------------------


def _no_waiting(session: Session) -> None:
    # Fail at once instead of waiting for a lock: a writer that would block raises.
    session.execute(text("set local lock_timeout = '1s'"))


def test_two_writers_on_different_streams_do_not_block_each_other_on_postgresql(pg_url):
    """Session A posts a fill in stream 1 and keeps its transaction open; session B posts a fill
    in stream 2 — through the same exchange and platform accounts, opening none — and commits."""
    engine = make_engine(pg_url)
    models.Base.metadata.create_all(engine)
    build(engine, streams=(1, 2), fills=1)  # every account exists
    with Session(engine) as a, Session(engine) as b:
        a.begin()
        Ledger(a).post_many(fill("a", 1), stream=1)  # holds stream 1's head and its stripes
        b.begin()
        _no_waiting(b)
        Ledger(b).post_many(fill("b", 2), stream=2)
        b.commit()  # while A still holds its transaction open
        # the control: a second writer on A's stream waits for A (and here gives up)
        with Session(engine) as c, pytest.raises(Exception, match="lock timeout"), c.begin():
            _no_waiting(c)
            Ledger(c).post_many(fill("c", 1), stream=1)
        a.commit()
    with Session(engine) as session:
        report = Ledger(session).verify_chain()
        assert report.ok and report.heads[1][0] == 6 and report.heads[2][0] == 6
    engine.dispose()


def test_a_writer_does_not_wait_for_someone_else_anchoring_on_postgresql(pg_url, monkeypatch):
    monkeypatch.setattr("copytrade.ledger.service.ANCHOR_EVERY", 3)
    engine = make_engine(pg_url)
    models.Base.metadata.create_all(engine)
    build(engine, streams=(1, 2), fills=1)
    with Session(engine) as a, Session(engine) as b:
        a.begin()
        Ledger(a).anchor()  # holds the root chain's lock
        b.begin()
        _no_waiting(b)
        Ledger(b).post_many(fill("b", 2), stream=2)  # passes seq 6: tries to anchor, skips
        b.commit()
        a.commit()
    with Session(engine) as session:
        report = Ledger(session).verify_chain()
    assert report.ok and report.heads[2][0] == 6
    engine.dispose()
