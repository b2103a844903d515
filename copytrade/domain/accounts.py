"""Account rules (R-ACC-1..3): one leader identity per person, at most 10 copies, no self-copying."""

from __future__ import annotations

from collections.abc import Iterable

from copytrade.domain.errors import RuleViolation

MAX_ACTIVE_COPIES = 10  # R-ACC-2


def check_leader_identity(
    mode: str, nickname: str, active_portfolios: Iterable[tuple[str, str]]
) -> None:
    """Refuse a new lead portfolio that would give a person a second leader identity (R-ACC-1).

    ``active_portfolios`` are the person's active (mode, nickname) pairs. Product decision: a
    person is one leader, so they run at most one active lead portfolio per mode (spot and
    futures), and a second portfolio carries the same nickname as the first: one identity.
    """
    for existing_mode, existing_nickname in active_portfolios:
        if existing_mode == mode:
            raise RuleViolation(
                "mode",
                mode,
                "R-ACC-1",
                f"this person already runs an active {mode} lead portfolio "
                f"({existing_nickname!r}); one leader account, one active portfolio per mode",
            )
        if existing_nickname != nickname:
            raise RuleViolation(
                "nickname",
                nickname,
                "R-ACC-1",
                f"this person already leads as {existing_nickname!r}; a person holds one leader "
                "identity, so every portfolio of theirs carries that nickname",
            )


def check_copy_slots(active_copies: int, limit: int = MAX_ACTIVE_COPIES) -> None:
    """Refuse an eleventh active copy (R-ACC-2)."""
    if active_copies >= limit:
        raise RuleViolation(
            "follower",
            f"{active_copies} active copies",
            "R-ACC-2",
            f"a person may hold at most {limit} active copies; stop one before starting another",
        )


def check_not_own_portfolio(follower_person_id: int, leader_person_id: int) -> None:
    """Refuse copying one's own lead portfolio (R-ACC-3)."""
    if follower_person_id == leader_person_id:
        raise RuleViolation(
            "portfolio",
            "own portfolio",
            "R-ACC-3",
            "a follower cannot copy their own lead portfolio",
        )
