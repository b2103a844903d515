"""Copies: start (R-COPY-2 with R-ACC-2/3, R-LEAD-7/8/9), stop (R-COPY-5) and list.

Starting a copy moves the allocation person:<id>:spot → follower:<copy_id>:cash. Stopping only
marks the copy stopped; settlement (R-SET-5) settles it and returns the remaining cash.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from copytrade import clock
from copytrade.domain.advice import copy_advice
from copytrade.domain.copies import (
    CopySettings,
    JoinRequest,
    changed_settings,
    check_join,
    edit_copy_settings,
    validate_copy_settings,
)
from copytrade.domain.errors import RuleViolation
from copytrade.domain.leaders import check_leverage
from copytrade.domain.triggers import Trigger, stop_reason
from copytrade.engine.stop_events import add_stop_event
from copytrade.ledger import Ledger, Leg
from copytrade.ledger.accounts import follower_cash, person_spot
from copytrade.platform.accounts import check_credentials, link_account
from copytrade.platform.leaders import get_portfolio, portfolio_aum
from copytrade.platform.people import check_handle, record, require_person
from copytrade.platform.wallets import ASSET
from models import Copy, LeaderFill, LeadPortfolio, Person

STOPPED_BY_FOLLOWER = stop_reason(Trigger.STOP_COPY)


def start(
    session: Session,
    handle: str,
    portfolio_id: object,
    allocation: object,
    *,
    invitation_code: str | None = None,
    exchange_key: tuple[str, str] | None = None,
    **settings,
) -> Copy:
    """Start copying a portfolio with ``allocation`` USDT from the follower's spot wallet.

    ``settings`` are the keyword arguments of ``validate_copy_settings`` (sizing mode, fixed
    amount, below-minimum policy, stop-loss …). ``exchange_key`` = (API key id, credentials
    reference) of the follower's exchange account the engine trades the copy on (a copy without
    one is not traded until linked). Everything is checked before anything is written.
    """
    check_handle(handle)
    if exchange_key is not None:
        check_credentials(*exchange_key)
    portfolio = get_portfolio(session, portfolio_id, lock=True)
    person = require_person(session, handle, lock=True)
    active_followers = session.scalar(
        select(func.count()).where(Copy.portfolio_id == portfolio.id, Copy.status == "active")
    )
    mine = (
        session.execute(
            select(Copy.portfolio_id).where(
                Copy.follower_person_id == person.id, Copy.status == "active"
            )
        )
        .scalars()
        .all()
    )
    ledger = Ledger(session)
    balance = ledger.balance(person_spot(person.id), ASSET)
    request = JoinRequest(
        follower_person_id=person.id,
        leader_person_id=portfolio.leader_person_id,
        portfolio_status=portfolio.status,
        portfolio_listed=portfolio.is_listed,
        mode=portfolio.mode,
        visibility=portfolio.visibility,
        invitation_code=portfolio.invitation_code,
        given_code=invitation_code,
        active_followers=active_followers or 0,
        follower_cap=portfolio.follower_cap,
        allocation=allocation,
        spot_balance=balance,
        follower_active_copies=len(mine),
        already_copying=portfolio.id in mine,
    )
    amount = check_join(request)
    valid: CopySettings = validate_copy_settings(portfolio.mode, amount, **settings)
    if portfolio.mode == "futures":
        check_leverage(portfolio_aum(session, portfolio) + amount, valid.leverage)

    copy = Copy(
        portfolio_id=portfolio.id,
        follower_person_id=person.id,
        status="active",
        allocation=amount,
        **valid.as_columns(),
    )
    session.add(copy)
    session.flush()
    if exchange_key is not None:
        copy.exchange_account_id = link_account(
            session, person.id, portfolio.mode, *exchange_key
        ).id
    ledger.transfer(
        f"copy-allocation:{copy.id}",
        "copy_allocation",
        [Leg(person_spot(person.id), ASSET, -amount), Leg(follower_cash(copy.id), ASSET, amount)],
        refs={"copy_id": copy.id, "portfolio_id": portfolio.id},
    )
    return copy


def get_copy(session: Session, copy_id: object, *, lock: bool = False) -> Copy:
    """Return the copy ``copy_id``; refuse an unknown id (R-IN-2)."""
    try:
        cid = int(str(copy_id))
    except ValueError:
        raise RuleViolation("copy_id", copy_id, "R-IN-2", "a copy id is a whole number") from None
    query = select(Copy).where(Copy.id == cid)
    if lock:
        query = query.with_for_update()
    copy = session.scalars(query).one_or_none()
    if copy is None:
        raise RuleViolation("copy_id", copy_id, "R-IN-2", f"no copy with id {copy_id}")
    return copy


def get_own_copy(session: Session, copy_id: object, handle: str, rule: str) -> tuple[Copy, Person]:
    """Return the copy ``copy_id`` (locked) and its follower; refuse anyone else naming ``rule``."""
    copy = get_copy(session, copy_id, lock=True)
    person = require_person(session, handle)
    if person.id != copy.follower_person_id:
        raise RuleViolation(
            "handle", handle, rule, f"{handle!r} is not the follower of copy {copy.id}"
        )
    return copy, person


def stop(session: Session, copy_id: object, handle: str, reason: str = STOPPED_BY_FOLLOWER) -> Copy:
    """Stop a copy at its follower's request (R-COPY-5); settlement (R-SET-5) takes it from here."""
    copy, person = get_own_copy(session, copy_id, handle, "R-COPY-5")
    if copy.status != "active":
        raise RuleViolation(
            "copy_id",
            copy.id,
            "R-COPY-5",
            f"copy {copy.id} is already stopped ({copy.stop_reason})",
        )
    copy.status = "stopped"
    copy.stop_reason = reason
    copy.stopped_at = clock.now()
    add_stop_event(session, copy.id, reason, at=copy.stopped_at)
    record(
        session,
        actor=person.handle,
        action="copy_stopped",
        subject_type="copy",
        subject_id=copy.id,
        rule="R-COPY-5",
        reason=reason,
        details={"portfolio_id": copy.portfolio_id},
    )
    return copy


def settings_of(copy: Copy) -> CopySettings:
    """Return a copy's stored settings as the domain's ``CopySettings``."""
    return CopySettings(
        sizing_mode=copy.sizing_mode,
        fixed_amount=copy.fixed_amount,
        below_min_policy=copy.below_min_policy,
        stop_loss_pct=copy.stop_loss_pct,
        take_profit_pct=copy.take_profit_pct,
        max_cost_per_order=copy.max_cost_per_order,
        slippage_limit_pct=copy.slippage_limit_pct,
        position_take_profit_pct=copy.position_take_profit_pct,
        position_stop_loss_pct=copy.position_stop_loss_pct,
        leverage=copy.leverage,
        symbols=tuple(copy.symbols) if copy.symbols else None,
        daily_loss_limit=copy.daily_loss_limit,
        close_only=copy.close_only,
    )


def edit(session: Session, copy_id: object, handle: str, **changes) -> dict[str, list]:
    """Change a running copy's settings (R-COPY-3/6/12, leverage within R-LEAD-8); return the changes.

    Everything is checked before the copy is touched; each edit is one audit entry listing every
    changed field with its old and new value.
    """
    copy, person = get_own_copy(session, copy_id, handle, "R-COPY-12")
    if copy.status != "active":
        raise RuleViolation(
            "copy_id", copy_id, "R-COPY-12", f"copy {copy.id} is {copy.status}; it cannot be edited"
        )
    portfolio = get_portfolio(session, copy.portfolio_id)
    before = settings_of(copy)
    after = edit_copy_settings(portfolio.mode, copy.allocation, before, changes)
    if portfolio.mode == "futures" and after.leverage > before.leverage:
        check_leverage(portfolio_aum(session, portfolio), after.leverage)
    changed = changed_settings(before, after)
    for column, value in after.as_columns().items():
        setattr(copy, column, value)
    record(
        session,
        actor=person.handle,
        action="copy_edited",
        subject_type="copy",
        subject_id=copy.id,
        rule="R-COPY-12",
        reason=", ".join(f"{f} {old} → {new}" for f, (old, new) in changed.items()),
        details=changed,
    )
    return changed


def start_advice(session: Session, copy: Copy) -> list[str]:
    """Return the R-COPY-9 advice that applies to ``copy``, just started (shown, not enforced)."""
    portfolio = session.get(LeadPortfolio, copy.portfolio_id)
    first_fill = session.scalar(
        select(func.min(LeaderFill.traded_at)).where(LeaderFill.portfolio_id == portfolio.id)
    )
    since = min(first_fill, portfolio.created_at) if first_fill else portfolio.created_at
    active = session.execute(
        select(Copy.portfolio_id, Copy.allocation).where(
            Copy.follower_person_id == copy.follower_person_id, Copy.status == "active"
        )
    ).all()
    spot = Ledger(session).balance(person_spot(copy.follower_person_id), ASSET)
    return copy_advice(
        history_days=max((clock.now() - since).days, 0),
        allocation=copy.allocation,
        total_capital=spot + sum((a for _, a in active), Decimal(0)),
        leaders_followed=len({pid for pid, _ in active}),
    )


@dataclass(frozen=True, slots=True)
class CopyRow:
    id: int
    follower: str
    portfolio_id: int
    nickname: str
    status: str
    allocation: Decimal
    cash: Decimal
    sizing_mode: str
    leverage: int
    stop_reason: str | None


def list_copies(
    session: Session,
    handle: str | None = None,
    portfolio_id: int | None = None,
    include_stopped: bool = False,
) -> list[CopyRow]:
    """Return copies (active only unless ``include_stopped``) with their cash balances."""
    query = (
        select(Copy, Person.handle, LeadPortfolio.nickname)
        .join(Person, Person.id == Copy.follower_person_id)
        .join(LeadPortfolio, LeadPortfolio.id == Copy.portfolio_id)
        .order_by(Copy.id)
    )
    if handle is not None:
        query = query.where(Person.handle == check_handle(handle))
    if portfolio_id is not None:
        query = query.where(Copy.portfolio_id == portfolio_id)
    if not include_stopped:
        query = query.where(Copy.status == "active")
    ledger = Ledger(session)
    rows: Iterable = session.execute(query)
    return [
        CopyRow(
            id=c.id,
            follower=h,
            portfolio_id=c.portfolio_id,
            nickname=nick,
            status=c.status,
            allocation=c.allocation,
            cash=ledger.balance(follower_cash(c.id), ASSET),
            sizing_mode=c.sizing_mode,
            leverage=c.leverage,
            stop_reason=c.stop_reason,
        )
        for c, h, nick in rows
    ]
