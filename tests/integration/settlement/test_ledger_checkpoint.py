"""The ``ledger_integrity`` checkpoint and the payout gate (R-LED-1…7, R-FEE-4, R-X-4).

For every rule: build a valid, settled ledger, corrupt it in a way that breaks exactly that rule,
and check that the checkpoint fails on that rule's expectation (and no other rule's), and that
the next settlement is blocked with nothing paid. On SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

from copytrade.ledger import Ledger, Leg
from copytrade.ledger.accounts import account_policy
from copytrade.ledger.chain import chain_hash, transfer_digest
from copytrade.settlement import SettlementBlocked
from copytrade.validation import validate_ledger
from models import AuditEntry, FollowerFill, LeadPortfolio, LedgerTransfer, SettlementCycle
from tests.support.settlement import EPOCH

DAY = timedelta(days=1)
MON1, MON2 = EPOCH + timedelta(days=7), EPOCH + timedelta(days=14)


@dataclass(frozen=True)
class World:
    spot_copy: int
    futures_copy: int
    spot_leader: int
    futures_leader: int


def make_world(s) -> World:
    spot, futures = s.portfolio(mode="spot", ratio="0.1"), s.portfolio(mode="futures", ratio="0.1")
    a, b = s.copy(spot, allocation="2000"), s.copy(futures)
    s.fill(a, "BTCUSDT", "buy", "0.01", "60000", fee="0.6", at=EPOCH + DAY)
    s.fill(a, "BTCUSDT", "sell", "0.01", "65000", fee="0.65", at=EPOCH + 2 * DAY)
    s.fill(b, "ETHUSDT", "buy", "1", "3000", fee="3", at=EPOCH + DAY)
    s.fill(b, "ETHUSDT", "sell", "1", "3300", fee="3.3", at=EPOCH + 2 * DAY)
    leaders = [s.session.get(LeadPortfolio, pid).leader_person_id for pid in (spot, futures)]
    return World(a, b, *leaders)


def next_week(world: World):
    def case(s):
        s.fill(world.spot_copy, "BTCUSDT", "buy", "0.01", "60000", fee="0.6", at=MON1 + DAY)
        s.fill(world.spot_copy, "BTCUSDT", "sell", "0.01", "66000", fee="0.66", at=MON1 + DAY)
        s.fill(world.futures_copy, "ETHUSDT", "buy", "1", "3300", fee="3.3", at=MON1 + DAY)
        s.fill(world.futures_copy, "ETHUSDT", "sell", "1", "3400", fee="3.4", at=MON1 + DAY)

    return case


# -- ways to corrupt a ledger ------------------------------------------------------------------


def lift_immutability(engine: Engine) -> None:
    """Act as someone with DDL rights: remove the append-only guard of ledger history."""
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            for table in ("ledger_transfers", "ledger_postings"):
                for op in ("update", "delete"):
                    conn.exec_driver_sql(f"drop trigger if exists trg_{table}__no_{op}")
        else:
            for table in ("ledger_transfers", "ledger_postings"):
                conn.exec_driver_sql(f"alter table {table} disable trigger user")


def forge_transfer(engine: Engine, key: str, code: str, legs: list[tuple[str, str, int]]) -> None:
    """Append a transfer the way a writer bypassing the ledger service would: correctly chained
    and with balances kept, but without the service's checks."""
    at = datetime.now(UTC)
    with Session(engine) as session, session.begin():
        head = session.execute(
            text("select last_seq, last_hash from ledger_chain_heads where stream = 0")
        ).one()
        seq, digest = head.last_seq + 1, transfer_digest(key, code, legs)
        new_hash = chain_hash(head.last_hash, seq, at, digest)
        session.execute(
            LedgerTransfer.__table__.insert().values(
                seq=seq,
                idempotency_key=key,
                code=code,
                memo="",
                refs=None,
                created_at=at,
                digest=digest,
                prev_hash=head.last_hash,
                hash=new_hash,
            )
        )
        transfer_id = session.scalar(select(LedgerTransfer.id).where(LedgerTransfer.seq == seq))
        for address, asset, units in legs:
            account = session.execute(
                text("select id from ledger_accounts where address = :a and asset = :s"),
                {"a": address, "s": asset},
            ).scalar()
            if account is None:
                session.execute(
                    text(
                        "insert into ledger_accounts (address, asset, allow_negative, balance, created_at) "
                        "values (:a, :s, :n, 0, :t)"
                    ),
                    {
                        "a": address,
                        "s": asset,
                        "n": account_policy(address).allow_negative,
                        "t": at,
                    },
                )
                account = session.execute(
                    text("select id from ledger_accounts where address = :a and asset = :s"),
                    {"a": address, "s": asset},
                ).scalar()
            session.execute(
                text(
                    "insert into ledger_postings (transfer_id, account_id, asset, amount) "
                    "values (:t, :a, :s, :u)"
                ),
                {"t": transfer_id, "a": account, "s": asset, "u": units},
            )
            session.execute(
                text("update ledger_accounts set balance = balance + :u where id = :a"),
                {"u": units, "a": account},
            )
        session.execute(
            text("update ledger_chain_heads set last_seq = :s, last_hash = :h where stream = 0"),
            {"s": seq, "h": new_hash},
        )


def sql(engine: Engine, *statements: str) -> None:
    with engine.begin() as conn:
        for statement in statements:
            conn.exec_driver_sql(statement)


def through_ledger(
    engine: Engine, key: str, code: str, legs: list[tuple[str, str, str]], refs=None
):
    with Session(engine) as session, session.begin():
        Ledger(session).transfer(key, code, [Leg(a, s, D(v)) for a, s, v in legs], refs=refs)


def first_fill(engine: Engine, copy_id: int) -> int:
    with Session(engine) as session:
        return session.scalar(
            select(FollowerFill.id).where(FollowerFill.copy_id == copy_id).order_by(FollowerFill.id)
        )


@dataclass(frozen=True)
class Corruption:
    rule: str
    check: str
    apply: Callable[[Engine, World], None]


def _unbalanced(engine, w):
    forge_transfer(
        engine,
        "forged-unbalanced",
        "deposit",
        [("external:deposits", "USDT", -900_000_000), ("person:999:spot", "USDT", 1_000_000_000)],
    )


def _one_posting(engine, w):
    forge_transfer(engine, "forged-lonely", "deposit", [("person:999:spot", "USDT", 0)])


def _balance_edit(engine, w):
    sql(
        engine,
        f"update ledger_accounts set balance = balance + 1 where address = 'person:{w.spot_leader}:spot'",
    )


def _negative(engine, w):
    address = f"follower:{w.futures_copy}:cash"
    with Session(engine) as session:
        units = session.execute(
            text("select balance from ledger_accounts where address = :a and asset = 'USDT'"),
            {"a": address},
        ).scalar()
    forge_transfer(
        engine,
        "forged-overdraft",
        "copy_withdrawal",
        [(address, "USDT", -(units + 1)), ("external:withdrawals", "USDT", units + 1)],
    )


def _policy(engine, w):
    sql(
        engine,
        f"update ledger_accounts set allow_negative = true where address = 'person:{w.spot_leader}:spot'",
    )


def _duplicate_fill(engine, w):
    fill = first_fill(engine, w.futures_copy)
    sql(
        engine,
        "insert into follower_fills (order_id, copy_id, leader_fill_id, exchange_account_id, "
        "exchange_trade_id, symbol, side, price, quantity, fee, fee_asset, realised_pnl, traded_at, "
        "leader_price, slippage_bps, rebate, copy_delay_ms) select order_id, copy_id, leader_fill_id, "
        "NULL, exchange_trade_id, symbol, side, price, 0, 0, fee_asset, 0, traded_at, leader_price, "
        f"slippage_bps, 0, copy_delay_ms from follower_fills where id = {fill}",
    )


def _orphan_intent(engine, w):
    sql(
        engine,
        "insert into follower_order_intents (leader_fill_id, copy_id, leg, kind, client_order_id, "
        "symbol, side, quantity, computed_quantity, reduce_only, status, created_at) values "
        f"(NULL, {w.spot_copy}, 0, 'copy', 'ct-orphan', 'BTCUSDT', 'buy', 0, 0, false, 'pending', "
        "'2025-01-08 00:00:00')",
    )


def _order_client_id(engine, w):
    sql(
        engine,
        "update follower_orders set client_order_id = 'tampered-1' where id = (select min(id) from follower_orders)",
    )


def _overpaid_share(engine, w):
    through_ledger(
        engine,
        "extra-share",
        "profit_share",
        [
            (f"follower:{w.futures_copy}:cash", "USDT", "-50"),
            (f"person:{w.futures_leader}:spot", "USDT", "50"),
        ],
        refs={"copy_id": w.futures_copy},
    )


def _refund(engine, w):
    through_ledger(
        engine,
        "refund-share",
        "profit_share",
        [
            (f"person:{w.futures_leader}:spot", "USDT", "-5"),
            (f"follower:{w.futures_copy}:cash", "USDT", "5"),
        ],
        refs={"copy_id": w.futures_copy},
    )


def _fee_without_rebate(engine, w):
    through_ledger(
        engine,
        "trading_fee:orphan-1",
        "trading_fee",
        [(f"follower:{w.spot_copy}:cash", "USDT", "-1"), ("platform:fees", "USDT", "1")],
        refs={"copy_id": w.spot_copy},
    )


def _ledger_rebate_not_ten_percent(engine, w):
    # The rebate goes straight to the leader's wallet, so the rebates account (R-FEE-4) holds.
    through_ledger(
        engine,
        "trading_fee:odd-1",
        "trading_fee",
        [(f"follower:{w.spot_copy}:cash", "USDT", "-1"), ("platform:fees", "USDT", "1")],
    )
    through_ledger(
        engine,
        "fee_rebate:odd-1",
        "fee_rebate",
        [("platform:fees", "USDT", "-0.2"), (f"person:{w.spot_leader}:spot", "USDT", "0.2")],
    )


def _ledger_rebate_without_fee(engine, w):
    through_ledger(
        engine,
        "fee_rebate:orphan-2",
        "fee_rebate",
        [("platform:fees", "USDT", "-0.1"), (f"person:{w.spot_leader}:spot", "USDT", "0.1")],
    )


def _ledger_rebate_in_another_asset(engine, w):
    # 10 % of the fee's amount, but in BNB while the fee was paid in USDT.
    through_ledger(
        engine,
        "deposit:platform-bnb",
        "deposit",
        [("external:deposits", "BNB", "-1"), ("platform:fees", "BNB", "1")],
    )
    through_ledger(
        engine,
        "trading_fee:bnb-1",
        "trading_fee",
        [(f"follower:{w.spot_copy}:cash", "USDT", "-1"), ("platform:fees", "USDT", "1")],
    )
    through_ledger(
        engine,
        "fee_rebate:bnb-1",
        "fee_rebate",
        [("platform:fees", "BNB", "-0.1"), (f"person:{w.spot_leader}:spot", "BNB", "0.1")],
    )


def _fill_fee_without_rebate(engine, w):
    sql(
        engine,
        f"update follower_fills set fee = fee + 100 where id = {first_fill(engine, w.spot_copy)}",
    )


def _rebate_not_in_ledger(engine, w):
    fill = first_fill(engine, w.spot_copy)
    sql(engine, f"update follower_fills set fee = fee + 10, rebate = rebate + 1 where id = {fill}")


def _edited_posting(engine, w):
    lift_immutability(engine)
    key = f"deposit:copy:{w.spot_copy}"
    sql(
        engine,
        "update ledger_postings set amount = amount + (case when amount > 0 then 1 else -1 end) "
        f"where transfer_id = (select id from ledger_transfers where idempotency_key = '{key}')",
        "update ledger_accounts set balance = balance + (select sum(case when p.amount > 0 then 1 "
        "else -1 end) from ledger_postings p join ledger_transfers t on t.id = p.transfer_id where "
        f"t.idempotency_key = '{key}' and p.account_id = ledger_accounts.id) where id in (select "
        f"p.account_id from ledger_postings p join ledger_transfers t on t.id = p.transfer_id where "
        f"t.idempotency_key = '{key}')",
    )


def _relinked(engine, w):
    lift_immutability(engine)
    sql(
        engine,
        "update ledger_transfers set prev_hash = (select hash from ledger_transfers where seq = 1) where seq = 3",
    )


def _head(engine, w):
    sql(engine, "update ledger_chain_heads set last_hash = '" + "f" * 64 + "'")


CORRUPTIONS = {
    "unbalanced_transfer": Corruption(
        "R-LED-1", "postings_sum_to_zero_per_transfer_and_asset", _unbalanced
    ),
    "single_posting": Corruption("R-LED-1", "every_transfer_has_two_postings", _one_posting),
    "balance_edited": Corruption("R-LED-2", "balances_equal_sum_of_postings", _balance_edit),
    "guarded_account_negative": Corruption("R-LED-2", "no_forbidden_negative_balance", _negative),
    "negative_policy_flipped": Corruption("R-LED-2", "negative_policy_follows_address", _policy),
    "fill_recorded_twice": Corruption(
        "R-LED-3", "follower_trade_ids_unique_per_copy", _duplicate_fill
    ),
    "order_without_leader_fill": Corruption(
        "R-LED-4", "copied_orders_reference_leader_fill_and_copy", _orphan_intent
    ),
    "order_client_id_changed": Corruption("R-LED-4", "orders_match_their_intent", _order_client_id),
    "share_above_ratio_of_peak": Corruption(
        "R-LED-5", "shares_within_ratio_of_peak_profit", _overpaid_share
    ),
    "share_refunded": Corruption("R-LED-5", "payout_transfers_flow_to_the_leader", _refund),
    "ledger_fee_without_rebate": Corruption(
        "R-LED-6", "ledger_rebate_is_ten_percent_of_ledger_fee", _fee_without_rebate
    ),
    "ledger_rebate_not_ten_percent": Corruption(
        "R-LED-6", "ledger_rebate_is_ten_percent_of_ledger_fee", _ledger_rebate_not_ten_percent
    ),
    "ledger_rebate_without_fee": Corruption(
        "R-LED-6", "ledger_rebate_is_ten_percent_of_ledger_fee", _ledger_rebate_without_fee
    ),
    "ledger_rebate_in_another_asset": Corruption(
        "R-LED-6", "ledger_rebate_is_ten_percent_of_ledger_fee", _ledger_rebate_in_another_asset
    ),
    "fill_rebate_not_ten_percent": Corruption(
        "R-LED-6", "fill_rebate_is_ten_percent_of_fee", _fill_fee_without_rebate
    ),
    "rebate_missing_from_ledger": Corruption(
        "R-FEE-4", "rebates_account_backs_unpaid_rebates", _rebate_not_in_ledger
    ),
    "posting_edited_in_history": Corruption(
        "R-X-4", "chain_recomputed_without_break", _edited_posting
    ),
    "transfer_relinked": Corruption(
        "R-X-4", "chain_links_every_transfer_to_the_previous", _relinked
    ),
    "chain_head_rewritten": Corruption("R-X-4", "chain_head_is_the_last_transfer", _head),
}


@pytest.mark.parametrize("name", sorted(CORRUPTIONS), ids=lambda n: f"{n}-{CORRUPTIONS[n].rule}")
def test_corruption_fails_its_rule_only_and_blocks_every_payout_R_LED_7(
    name, build, service, view, engine, db_url, session_maker
):
    corruption = CORRUPTIONS[name]
    world = build(make_world)
    service().settle_weekly(MON1)  # gated: a valid ledger, now with payouts
    build(next_week(world))  # and something due next week

    corruption.apply(engine, world)
    transfers, rows = view.transfers(), len(view.payouts())
    with pytest.raises(SettlementBlocked) as blocked:
        service().settle_weekly(MON2)
    report = blocked.value.report.validation
    assert report.failed_rules() == {corruption.rule}, report.rows()
    assert corruption.check in report.failed_checks()
    assert corruption.check in str(blocked.value) and blocked.value.report.blocked
    assert (view.transfers(), len(view.payouts())) == (transfers, rows)  # nothing half-paid
    with session_maker() as session:
        cycle = session.scalar(
            select(SettlementCycle).where(SettlementCycle.cycle_key == "weekly:2025-W04")
        )
        audit = session.scalar(select(AuditEntry).where(AuditEntry.action == "settlement_blocked"))
    assert (cycle.status, cycle.validation_passed) == ("blocked", False)
    assert corruption.check in cycle.blocked_reason and audit.rule == "R-LED-7"


def test_a_blocked_cycle_pays_once_the_ledger_is_repaired_R_LED_7_R_SET_9(
    build, service, view, engine
):
    world = build(make_world)
    sql(engine, "update ledger_accounts set balance = balance + 1 where address = 'platform:fees'")
    with pytest.raises(SettlementBlocked):
        service().settle_weekly(MON1)
    assert view.payouts() == []
    sql(engine, "update ledger_accounts set balance = balance - 1 where address = 'platform:fees'")
    report = service().settle_weekly(MON1)
    assert report.status == "completed" and report.shares_paid > 0
    assert {p.status for p in view.shares(world.spot_copy)} == {"paid"}


def test_checkpoint_passes_on_a_clean_ledger_and_writes_data_docs(build, service, db_url, tmp_path):
    world = build(make_world)
    service().settle_weekly(MON1)
    build(next_week(world))
    report = validate_ledger(db_url, data_docs=True, docs_dir=tmp_path / "docs")
    assert report.passed and report.chain_checked > 0
    rules = {o.rule for o in report.outcomes}
    assert {"R-LED-1", "R-LED-2", "R-LED-3", "R-LED-4", "R-LED-5", "R-LED-6", "R-X-4"} <= rules
    index = tmp_path / "docs" / "index.html"
    assert index.is_file() and "ledger_integrity" in index.read_text()
