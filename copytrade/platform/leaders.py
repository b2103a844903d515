"""Lead portfolios: apply, edit, close, capacity requests, the impersonation scan and listings.

R-ACC-1, R-LEAD-1..10. Each service checks everything first and writes afterwards, inside the
caller's transaction; a refusal raises ``RuleViolation`` before anything is written.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from copytrade import clock
from copytrade.config import get_settings
from copytrade.domain import leaders as rules
from copytrade.domain.accounts import check_leader_identity
from copytrade.domain.errors import RuleViolation
from copytrade.domain.triggers import Trigger, stop_reason
from copytrade.engine.stop_events import add_stop_event
from copytrade.ledger import Ledger, Leg
from copytrade.ledger.accounts import follower_cash, leader_capital, person_spot
from copytrade.platform.people import check_handle, find_person, get_or_create_person, record
from copytrade.platform.wallets import ASSET
from models import CapacityRequest, Copy, LeaderLeverageViolation, LeadPortfolio

STOPPED_BY_CLOSE = stop_reason(Trigger.PORTFOLIO_CLOSED)


def capital_bounds() -> rules.CapitalBounds:
    """Return the R-LEAD-1/2 bounds from the settings (SPEC defaults unless configured)."""
    s = get_settings()
    return rules.CapitalBounds(
        Decimal(s.spot_capital_min),
        Decimal(s.spot_capital_max),
        Decimal(s.futures_capital_min),
        Decimal(s.futures_capital_max),
    )


def get_portfolio(session: Session, portfolio_id: object, *, lock: bool = False) -> LeadPortfolio:
    """Return the lead portfolio ``portfolio_id``; refuse an unknown id (R-IN-2)."""
    try:
        pid = int(str(portfolio_id))
    except ValueError:
        raise RuleViolation(
            "portfolio_id", portfolio_id, "R-IN-2", "a portfolio id is a whole number"
        ) from None
    query = select(LeadPortfolio).where(LeadPortfolio.id == pid)
    if lock:
        query = query.with_for_update()
    portfolio = session.scalars(query).one_or_none()
    if portfolio is None:
        raise RuleViolation(
            "portfolio_id", portfolio_id, "R-IN-2", f"no lead portfolio with id {portfolio_id}"
        )
    return portfolio


def _require_leader(session: Session, portfolio: LeadPortfolio, handle: str, rule: str) -> None:
    person = find_person(session, handle)
    if person is None or person.id != portfolio.leader_person_id:
        raise RuleViolation(
            "handle", handle, rule, f"{handle!r} is not the leader of portfolio {portfolio.id}"
        )


def active_follower_counts(
    session: Session, portfolio_ids: list[int] | None = None
) -> dict[int, int]:
    """Return the number of active copies per portfolio."""
    query = (
        select(Copy.portfolio_id, func.count())
        .where(Copy.status == "active")
        .group_by(Copy.portfolio_id)
    )
    if portfolio_ids is not None:
        query = query.where(Copy.portfolio_id.in_(portfolio_ids))
    return {pid: n for pid, n in session.execute(query)}


def _advanced_nicknames(session: Session, exclude_person: int | None) -> list[LeadPortfolio]:
    counts = active_follower_counts(session)
    advanced = [pid for pid, n in counts.items() if rules.is_advanced(n)]
    if not advanced:
        return []
    query = select(LeadPortfolio).where(
        LeadPortfolio.id.in_(advanced), LeadPortfolio.status == "active"
    )
    return [p for p in session.scalars(query) if p.leader_person_id != exclude_person]


def _check_not_imitating(session: Session, nickname: str, person_id: int | None) -> None:
    for advanced in _advanced_nicknames(session, person_id):
        if rules.imitates(nickname, advanced.nickname):
            raise RuleViolation(
                "nickname",
                nickname,
                "R-LEAD-9",
                f"nickname {nickname!r} imitates the advanced leader {advanced.nickname!r}",
            )


def _new_code(session: Session) -> str:
    while True:
        code = rules.new_invitation_code()
        taken = session.scalar(select(func.count()).where(LeadPortfolio.invitation_code == code))
        if not taken:
            return code


def apply(
    session: Session,
    handle: str,
    application: rules.LeaderApplication,
    bounds: rules.CapitalBounds | None = None,
) -> LeadPortfolio:
    """Open a lead portfolio for ``handle`` and move its capital person:<id>:spot → leader:<pid>:capital.

    The person is created if new (and then has no balance, so the capital check refuses). R-ACC-1,
    R-LEAD-1..6 and R-LEAD-9 (no imitation of an advanced leader) are checked first.
    """
    check_handle(handle)
    probe = rules.validate_application(application, bounds or capital_bounds())
    code = _new_code(session) if probe.visibility == rules.PRIVATE else None
    valid = rules.validate_application(application, bounds or capital_bounds(), code)
    person = find_person(session, handle, lock=True)
    if person is not None:
        existing = session.execute(
            select(LeadPortfolio.mode, LeadPortfolio.nickname).where(
                LeadPortfolio.leader_person_id == person.id, LeadPortfolio.status == "active"
            )
        ).all()
        check_leader_identity(valid.mode, valid.nickname, [tuple(row) for row in existing])
    _check_not_imitating(session, valid.nickname, person.id if person else None)
    ledger = Ledger(session)
    balance = ledger.balance(person_spot(person.id), ASSET) if person else Decimal(0)
    if balance < valid.capital:
        _, _, rule = (bounds or capital_bounds()).for_mode(valid.mode)
        raise RuleViolation(
            "capital",
            valid.capital,
            rule,
            f"capital {valid.capital} USDT is more than the spot balance of {balance} USDT; "
            "deposit first",
        )

    person = person or get_or_create_person(session, handle)
    portfolio = LeadPortfolio(
        leader_person_id=person.id,
        mode=valid.mode,
        visibility=valid.visibility,
        nickname=valid.nickname,
        description=valid.description,
        invitation_code=code,
        profit_share_ratio=valid.profit_share_ratio,
        capital=valid.capital,
        capital_asset=ASSET,
        status="active",
        follower_cap=valid.follower_cap,
        is_listed=True,
        agreement_accepted_at=clock.now(),
    )
    session.add(portfolio)
    session.flush()
    ledger.transfer(
        f"lead-capital:{portfolio.id}",
        "lead_capital",
        [
            Leg(person_spot(person.id), ASSET, -valid.capital),
            Leg(leader_capital(portfolio.id), ASSET, valid.capital),
        ],
        refs={"portfolio_id": portfolio.id},
    )
    record(
        session,
        actor=check_handle(handle),
        action="portfolio_opened",
        subject_type="lead_portfolio",
        subject_id=portfolio.id,
        rule="R-LEAD-3",
        reason="application accepted",
        details={"mode": valid.mode, "visibility": valid.visibility, "capital": str(valid.capital)},
    )
    return portfolio


def edit_listing(
    session: Session,
    portfolio_id: object,
    handle: str,
    *,
    nickname: str | None = None,
    description: str | None = None,
    profit_share_ratio: object | None = None,
) -> LeadPortfolio:
    """Change a portfolio's nickname and/or description (R-LEAD-6, R-LEAD-9, R-ACC-1).

    A nickname change applies to every active portfolio of the leader (one identity, R-ACC-1).
    The profit-share ratio can never be changed (R-LEAD-5).
    """
    portfolio = get_portfolio(session, portfolio_id, lock=True)
    _require_leader(session, portfolio, handle, "R-LEAD-6")
    if profit_share_ratio is not None:
        rules.check_ratio_unchanged(portfolio.profit_share_ratio, profit_share_ratio)
    if portfolio.status != "active":
        raise RuleViolation(
            "portfolio", portfolio.status, "R-LEAD-10", "a closed portfolio cannot be edited"
        )
    new_nickname = rules.check_nickname(nickname) if nickname is not None else portfolio.nickname
    new_description = (
        rules.check_description(description) if description is not None else portfolio.description
    )
    siblings = list(
        session.scalars(
            select(LeadPortfolio).where(
                LeadPortfolio.leader_person_id == portfolio.leader_person_id,
                LeadPortfolio.status == "active",
            )
        )
    )
    for p in siblings if nickname is not None else [portfolio]:
        if p.visibility == rules.PRIVATE:
            rules.check_no_invitation_code("nickname", new_nickname, p.invitation_code)
    if portfolio.visibility == rules.PRIVATE:
        rules.check_no_invitation_code("description", new_description, portfolio.invitation_code)
    if nickname is not None:
        _check_not_imitating(session, new_nickname, portfolio.leader_person_id)
        for p in siblings:
            p.nickname = new_nickname
    portfolio.description = new_description
    return portfolio


@dataclass(frozen=True, slots=True)
class ClosedPortfolio:
    portfolio_id: int
    stopped_copy_ids: list[int]


def close(session: Session, portfolio_id: object, handle: str, reason: str = "") -> ClosedPortfolio:
    """Close a portfolio (R-LEAD-10): stop every active copy with reason ``portfolio_closed``.

    Settlement (R-SET-5) picks up the stopped copies; their positions are the copy engine's to
    close. The leader's capital stays in leader:<pid>:capital until settlement releases it.
    """
    portfolio = get_portfolio(session, portfolio_id, lock=True)
    _require_leader(session, portfolio, handle, "R-LEAD-10")
    rules.check_can_close(portfolio.status)
    now = clock.now()
    copies = list(
        session.scalars(
            select(Copy)
            .where(Copy.portfolio_id == portfolio.id, Copy.status == "active")
            .order_by(Copy.id)
            .with_for_update()
        )
    )
    for copy in copies:
        copy.status = "stopped"
        copy.stop_reason = STOPPED_BY_CLOSE
        copy.stopped_at = now
        add_stop_event(session, copy.id, STOPPED_BY_CLOSE, at=now)
    portfolio.status = "closed"
    portfolio.closed_at = now
    portfolio.is_listed = False
    portfolio.offline_reason = "closed by its leader (R-LEAD-10)"
    record(
        session,
        actor=check_handle(handle),
        action="portfolio_closed",
        subject_type="lead_portfolio",
        subject_id=portfolio.id,
        rule="R-LEAD-10",
        reason=reason or "closed by its leader",
        details={"stopped_copy_ids": [c.id for c in copies]},
    )
    return ClosedPortfolio(portfolio.id, [c.id for c in copies])


# -- capacity (R-LEAD-7) ----------------------------------------------------------------------


def request_capacity(
    session: Session, portfolio_id: object, handle: str, requested_cap: object
) -> CapacityRequest:
    """Record a leader's request to raise the follower cap (one pending request at a time)."""
    portfolio = get_portfolio(session, portfolio_id, lock=True)
    _require_leader(session, portfolio, handle, "R-LEAD-7")
    if portfolio.status != "active":
        raise RuleViolation("portfolio", portfolio.status, "R-LEAD-7", "the portfolio is closed")
    cap = rules.check_capacity_request(portfolio.follower_cap, requested_cap)
    pending = session.scalar(
        select(CapacityRequest.id).where(
            CapacityRequest.portfolio_id == portfolio.id, CapacityRequest.status == "pending"
        )
    )
    if pending is not None:
        raise RuleViolation(
            "portfolio_id",
            portfolio.id,
            "R-LEAD-7",
            f"capacity request {pending} of this portfolio is still pending",
        )
    request = CapacityRequest(
        portfolio_id=portfolio.id,
        current_cap=portfolio.follower_cap,
        requested_cap=cap,
        status="pending",
    )
    session.add(request)
    session.flush()
    record(
        session,
        actor=check_handle(handle),
        action="capacity_requested",
        subject_type="capacity_request",
        subject_id=request.id,
        rule="R-LEAD-7",
        reason=f"raise follower cap of portfolio {portfolio.id} from {portfolio.follower_cap} to {cap}",
        details={
            "portfolio_id": portfolio.id,
            "current_cap": portfolio.follower_cap,
            "requested_cap": cap,
        },
    )
    return request


def decide_capacity(
    session: Session, request_id: object, *, approve: bool, operator: str, reason: str = ""
) -> CapacityRequest:
    """Approve or reject a pending capacity request; approval raises the portfolio's cap."""
    operator = (operator or "").strip()
    if not operator:
        raise RuleViolation("operator", operator, "R-LEAD-7", "the deciding operator must be named")
    try:
        rid = int(str(request_id))
    except ValueError:
        raise RuleViolation(
            "request_id", request_id, "R-IN-2", "a request id is a whole number"
        ) from None
    request = session.scalars(
        select(CapacityRequest).where(CapacityRequest.id == rid).with_for_update()
    ).one_or_none()
    if request is None:
        raise RuleViolation(
            "request_id", request_id, "R-IN-2", f"no capacity request with id {request_id}"
        )
    rules.check_capacity_decision(request.status)
    portfolio = get_portfolio(session, request.portfolio_id, lock=True)
    if approve and portfolio.status != "active":
        raise RuleViolation("portfolio", portfolio.status, "R-LEAD-7", "the portfolio is closed")
    request.status = "approved" if approve else "rejected"
    request.decided_by = operator
    request.decision_reason = reason
    request.decided_at = clock.now()
    if approve:
        portfolio.follower_cap = max(portfolio.follower_cap, request.requested_cap)
    record(
        session,
        actor=operator,
        action=f"capacity_{request.status}",
        subject_type="capacity_request",
        subject_id=request.id,
        rule="R-LEAD-7",
        reason=reason or request.status,
        details={
            "portfolio_id": portfolio.id,
            "requested_cap": request.requested_cap,
            "follower_cap": portfolio.follower_cap,
        },
    )
    return request


# -- impersonation (R-LEAD-9) -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Takedown:
    portfolio_id: int
    nickname: str
    imitated_portfolio_id: int
    imitated_nickname: str


def scan_impersonation(session: Session, actor: str = "system") -> list[Takedown]:
    """Take offline every listing whose nickname imitates an advanced leader's (R-LEAD-9).

    Advanced: more than 200 active followers. The leader's own portfolios are never taken down;
    each takedown is recorded in the audit log with its reason.
    """
    active = list(
        session.scalars(
            select(LeadPortfolio).where(LeadPortfolio.status == "active").order_by(LeadPortfolio.id)
        )
    )
    counts = active_follower_counts(session)
    by_skeleton: dict[str, list[LeadPortfolio]] = defaultdict(list)
    for p in active:
        by_skeleton[rules.skeleton(p.nickname)].append(p)
    takedowns: list[Takedown] = []
    for p in active:
        if not rules.is_advanced(counts.get(p.id, 0)):
            continue
        for other in by_skeleton.get(rules.skeleton(p.nickname), []):
            if (
                other.leader_person_id == p.leader_person_id
                or not other.is_listed
                or rules.is_advanced(counts.get(other.id, 0))
                or not rules.imitates(other.nickname, p.nickname)
            ):
                continue
            reason = (
                f"nickname {other.nickname!r} imitates advanced leader {p.nickname!r} "
                f"(portfolio {p.id}, {counts[p.id]} followers) (R-LEAD-9)"
            )
            other.is_listed = False
            other.offline_reason = reason
            record(
                session,
                actor=actor,
                action="listing_taken_offline",
                subject_type="lead_portfolio",
                subject_id=other.id,
                rule="R-LEAD-9",
                reason=reason,
                details={"imitated_portfolio_id": p.id, "imitated_nickname": p.nickname},
            )
            takedowns.append(Takedown(other.id, other.nickname, p.id, p.nickname))
    return takedowns


# -- leader leverage (R-LEAD-8) -----------------------------------------------------------------


def portfolio_aum(session: Session, portfolio: LeadPortfolio) -> Decimal:
    """Return a portfolio's AUM for R-LEAD-8: leader capital plus every active copy's cash.

    First version: equity is the ledger cash of the accounts; open positions are valued by the
    copy engine, which applies the same check per order with marked equity.
    """
    ledger = Ledger(session)
    total = ledger.balance(leader_capital(portfolio.id), ASSET)
    copy_ids = session.scalars(
        select(Copy.id).where(Copy.portfolio_id == portfolio.id, Copy.status == "active")
    ).all()
    for copy_id in copy_ids:
        total += ledger.balance(follower_cash(copy_id), ASSET)
    return total


def record_leader_leverage(
    session: Session,
    portfolio_id: object,
    *,
    symbol: str,
    leverage: int,
    exchange_ref: str,
    opened_at: datetime,
    aum: Decimal | None = None,
) -> LeaderLeverageViolation | None:
    """Record a leader position opened above 5× at 100,000 USD AUM or more (R-LEAD-8); else None.

    The copy engine calls this for every position the leader opens. The platform cannot refuse
    the leader's own order on an exchange it does not run, so the breach is recorded once per
    position (``exchange_ref``, the opening fill's trade id), written to the audit log and shown
    by ``copytrade leaders show``; copies of the portfolio never use more than 5× there.
    ``aum`` defaults to the ledger's view (``portfolio_aum``).
    """
    portfolio = get_portfolio(session, portfolio_id)
    if portfolio.mode != rules.FUTURES:
        return None  # spot positions carry no leverage
    value = portfolio_aum(session, portfolio) if aum is None else aum
    if rules.leverage_allowed(value, leverage):
        return None
    existing = session.scalars(
        select(LeaderLeverageViolation).where(
            LeaderLeverageViolation.portfolio_id == portfolio.id,
            LeaderLeverageViolation.symbol == symbol,
            LeaderLeverageViolation.exchange_ref == exchange_ref,
        )
    ).one_or_none()
    if existing is not None:
        return existing
    violation = LeaderLeverageViolation(
        portfolio_id=portfolio.id,
        symbol=symbol,
        leverage=leverage,
        aum=value,
        exchange_ref=exchange_ref,
        opened_at=opened_at,
    )
    session.add(violation)
    record(
        session,
        actor="system",
        action="leader_leverage_violation",
        subject_type="lead_portfolio",
        subject_id=portfolio.id,
        rule="R-LEAD-8",
        reason=(
            f"leader opened {symbol} at {leverage}x with AUM {value} USD "
            f"(at most {rules.LEVERAGE_CAP_AT_THRESHOLD}x from {rules.LEVERAGE_AUM_THRESHOLD} USD)"
        ),
        details={"symbol": symbol, "leverage": leverage, "exchange_ref": exchange_ref},
    )
    session.flush()
    return violation


def leverage_recorder(sessions):
    """Return the copy engine's ``on_leader_opened`` hook: ``record_leader_leverage`` in its own
    transaction for each position a futures leader opens, at the engine's AUM (R-LEAD-8)."""

    def on_leader_opened(
        portfolio_id: int,
        symbol: str,
        leverage: int,
        trade_id: str,
        opened_at: datetime,
        aum: Decimal | None = None,
    ) -> None:
        with sessions() as session, session.begin():
            record_leader_leverage(
                session,
                portfolio_id,
                symbol=symbol,
                leverage=leverage,
                exchange_ref=trade_id,
                opened_at=opened_at,
                aum=aum,
            )

    return on_leader_opened


def leverage_violations(session: Session, portfolio_id: int) -> list[LeaderLeverageViolation]:
    """Return a portfolio's recorded leader leverage violations, oldest first."""
    return list(
        session.scalars(
            select(LeaderLeverageViolation)
            .where(LeaderLeverageViolation.portfolio_id == portfolio_id)
            .order_by(LeaderLeverageViolation.opened_at, LeaderLeverageViolation.id)
        )
    )


# -- listings ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PortfolioRow:
    id: int
    leader: str
    mode: str
    visibility: str
    nickname: str
    ratio: Decimal
    capital: Decimal
    followers: int
    follower_cap: int
    status: str
    is_listed: bool
    offline_reason: str | None

    @property
    def is_full(self) -> bool:
        return not rules.has_free_place(self.followers, self.follower_cap)


def list_portfolios(session: Session, include_closed: bool = False) -> list[PortfolioRow]:
    """Return the lead portfolios with their follower counts, oldest first."""
    from models import Person

    query = (
        select(LeadPortfolio, Person.handle)
        .join(Person, Person.id == LeadPortfolio.leader_person_id)
        .order_by(LeadPortfolio.id)
    )
    if not include_closed:
        query = query.where(LeadPortfolio.status == "active")
    counts = active_follower_counts(session)
    return [
        PortfolioRow(
            id=p.id,
            leader=handle,
            mode=p.mode,
            visibility=p.visibility,
            nickname=p.nickname,
            ratio=p.profit_share_ratio,
            capital=p.capital,
            followers=counts.get(p.id, 0),
            follower_cap=p.follower_cap,
            status=p.status,
            is_listed=p.is_listed,
            offline_reason=p.offline_reason,
        )
        for p, handle in session.execute(query)
    ]
