"""A follower's money actions on a running copy: add funds, withdraw profit (R-COPY-2, R-SET-5).

Adding funds moves USDT person:<id>:spot → follower:<copy>:cash and raises the copy's principal
(``copies.allocation``). Withdrawing profit settles the copy first — an event settlement with
trigger ``withdraw_profit`` (R-SET-5), so the leader's share is paid on the profit before it
leaves — then moves what is withdrawable (``copytrade.domain.copy_funds``) back to the follower's
spot wallet, transfer ``profit_withdrawal``. The request is checked against what would be
withdrawable after that settlement *before* anything is settled, so a refused request changes
nothing (R-IN-2). The withdrawal's reference names both the settlement cycle and the transfer:
repeating it pays nothing twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from copytrade import clock
from copytrade.domain.copy_funds import check_add_funds, check_withdrawal
from copytrade.domain.errors import RuleViolation
from copytrade.domain.leaders import check_leverage
from copytrade.domain.triggers import Trigger
from copytrade.ledger import Ledger, Leg
from copytrade.ledger.accounts import follower_cash, person_spot
from copytrade.platform.copies import get_own_copy
from copytrade.platform.copy_statement import copy_statements
from copytrade.platform.leaders import get_portfolio, portfolio_aum
from copytrade.platform.people import record
from copytrade.platform.wallets import ASSET
from copytrade.settlement.cycles import event_cycle
from copytrade.settlement.marks import MarkPrices
from copytrade.settlement.report import RunReport
from models import Copy, LedgerPosting, LedgerTransfer

WITHDRAWAL_CODE = "profit_withdrawal"
# Settles one copy for an event: (copy id, trigger, reference) → the run's report.
Settle = Callable[[int, str, str], RunReport]


def add_funds(
    session: Session, copy_id: object, handle: str, amount: object, key: str | None = None
) -> Copy:
    """Move ``amount`` USDT from the follower's spot wallet into an active copy (R-COPY-2)."""
    copy, _ = get_own_copy(session, copy_id, handle, "R-COPY-2")
    if key is not None and not (1 <= len(key.strip()) <= 80):
        raise RuleViolation(
            "key", key, "R-IN-2", "an idempotency key of 1 to 80 characters is required"
        )
    ledger = Ledger(session)
    balance = ledger.balance(person_spot(copy.follower_person_id), ASSET)
    value = check_add_funds(amount, balance, copy.status)
    portfolio = get_portfolio(session, copy.portfolio_id)
    if portfolio.mode == "futures":  # more equity can carry the portfolio past 100,000 USD AUM
        check_leverage(portfolio_aum(session, portfolio) + value, copy.leverage)
    result = ledger.transfer(
        f"copy-allocation:{copy.id}:{(key or uuid.uuid4().hex).strip()}",
        "copy_allocation",
        [
            Leg(person_spot(copy.follower_person_id), ASSET, -value),
            Leg(follower_cash(copy.id), ASSET, value),
        ],
        refs={"copy_id": copy.id, "portfolio_id": copy.portfolio_id},
    )
    if result.created:
        copy.allocation = copy.allocation + value
        record(
            session,
            actor=handle.strip().lower(),
            action="copy_funds_added",
            subject_type="copy",
            subject_id=copy.id,
            rule="R-COPY-2",
            reason=f"added {value} {ASSET}",
            details={"amount": str(value), "principal": str(copy.allocation)},
        )
    return copy


@dataclass(frozen=True, slots=True)
class Withdrawal:
    copy_id: int
    ref: str
    amount: Decimal
    share_settled: Decimal  # profit share paid by the settlement that came first
    spot_balance: Decimal
    repeated: bool = False  # the reference had been used: nothing changed


def withdrawal_key(copy_id: int, ref: str) -> str:
    return f"{WITHDRAWAL_CODE}:{copy_id}:{ref}"


def withdraw_profit(
    sessions: sessionmaker[Session],
    copy_id: object,
    handle: str,
    amount: object | None,
    *,
    settle: Settle,
    marks: MarkPrices,
    ref: str | None = None,
    at: datetime | None = None,
) -> Withdrawal:
    """Settle the copy (R-SET-5, trigger withdraw_profit), then hand withdrawable profit to the follower."""
    at = at or clock.now()
    ref = (ref or f"w{at.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}").strip()
    with sessions() as session, session.begin():
        copy, _ = get_own_copy(session, copy_id, handle, "R-SET-5")
        cid, person_id = copy.id, copy.follower_person_id
        event_cycle(cid, Trigger.WITHDRAW_PROFIT, at, ref)  # checks the reference
        done = session.scalars(
            select(LedgerTransfer).where(LedgerTransfer.idempotency_key == withdrawal_key(cid, ref))
        ).one_or_none()
        if done is not None:  # the same withdrawal again: it happened once, nothing more
            moved = max(
                session.scalars(
                    select(LedgerPosting.amount).where(LedgerPosting.transfer_id == done.id)
                )
            )
            balance = Ledger(session).balance(person_spot(person_id), ASSET)
            return Withdrawal(cid, ref, moved, Decimal(0), balance, repeated=True)
        if copy.status != "active":
            raise RuleViolation(
                "copy_id",
                copy_id,
                "R-SET-5",
                f"copy {cid} is {copy.status}; its cash goes back with its final settlement",
            )
        before = copy_statements(session, [cid], at, marks)[cid]
        expected = before.withdrawable_after_settlement()
        if expected is None:
            raise RuleViolation(
                "mark",
                ", ".join(before.missing_marks),
                "R-SET-3",
                "no mark price for the copy's open positions; the withdrawable profit is unknown",
            )
        check_withdrawal(amount, expected)
    report = settle(cid, Trigger.WITHDRAW_PROFIT.value, ref)
    with sessions() as session, session.begin():
        # read again after the settlement, the copy locked: what is there now is what may leave
        statement = copy_statements(session, [cid], clock.now(), marks, lock=True)[cid]
        available = statement.withdrawable()
        value = check_withdrawal(amount, available if available is not None else Decimal(0))
        Ledger(session).transfer(
            withdrawal_key(cid, ref),
            WITHDRAWAL_CODE,
            [Leg(follower_cash(cid), ASSET, -value), Leg(person_spot(person_id), ASSET, value)],
            refs={"copy_id": cid, "ref": ref},
        )
        record(
            session,
            actor=handle.strip().lower(),
            action="profit_withdrawn",
            subject_type="copy",
            subject_id=cid,
            rule="R-SET-5",
            reason=f"withdrew {value} {ASSET} of profit (ref {ref})",
            details={"amount": str(value), "ref": ref, "withdrawable": str(available)},
        )
        balance = Ledger(session).balance(person_spot(person_id), ASSET)
    return Withdrawal(cid, ref, value, report.shares_paid, balance)
