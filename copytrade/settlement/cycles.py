"""Settlement cycles: what triggers one, its stable key, and the moment it settles (R-SET-4/5/9).

The weekly cycle is named by the ISO week of its Monday 00:00 UTC (``weekly:2025-W03``), so every
run in that week — a retry, a resumed crash — is the same cycle and pays nothing twice. An event
cycle is named by its trigger and copy (``event:stop_loss:copy:42``); a profit withdrawal also
carries the withdrawal's reference, since a copy may withdraw profit many times.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from copytrade.domain.errors import RuleViolation
from copytrade.domain.triggers import FINAL_TRIGGERS as DOMAIN_FINAL
from copytrade.domain.triggers import Trigger, parse_trigger, trigger_of

WEEKLY = "weekly"
# Event triggers (R-SET-5, R-LEAD-10, R-COPY-3/5): one vocabulary with the stop reasons
# (``copytrade.domain.triggers``). The final ones end the copy; a profit withdrawal settles a copy
# that keeps running.
FINAL_TRIGGERS = tuple(t.value for t in Trigger if t in DOMAIN_FINAL)
EVENT_TRIGGERS = tuple(t.value for t in Trigger)
TRIGGERS = (WEEKLY, *EVENT_TRIGGERS)
_REF = re.compile(r"^[A-Za-z0-9._:-]{1,40}$")


@dataclass(frozen=True, slots=True)
class CycleSpec:
    """One cycle to settle: its key, kind, trigger, the instant it settles at, and its copy (events)."""

    key: str
    kind: str  # weekly | event
    trigger: str
    as_of: datetime
    copy_id: int | None = None

    @property
    def is_final(self) -> bool:
        return self.trigger in FINAL_TRIGGERS


def week_start(at: datetime) -> datetime:
    """Return Monday 00:00 UTC of the ISO week containing ``at``."""
    at = _utc(at, "at")
    monday = at - timedelta(days=at.weekday())
    return monday.replace(hour=0, minute=0, second=0, microsecond=0)


def weekly_cycle(at: datetime) -> CycleSpec:
    """Return the weekly cycle that settles at the Monday 00:00 UTC on or before ``at`` (R-SET-4)."""
    start = week_start(at)
    year, week, _ = start.isocalendar()
    return CycleSpec(key=f"weekly:{year}-W{week:02d}", kind="weekly", trigger=WEEKLY, as_of=start)


def parse_week(value: str) -> datetime:
    """Return the Monday 00:00 UTC of an ISO week written ``2025-W03``."""
    match = re.fullmatch(r"(\d{4})-W(\d{2})", value.strip())
    if not match:
        raise RuleViolation("week", value, "R-SET-4", "an ISO week looks like 2025-W03")
    try:
        return datetime.fromisocalendar(int(match[1]), int(match[2]), 1).replace(tzinfo=UTC)
    except ValueError as exc:
        raise RuleViolation("week", value, "R-SET-4", str(exc)) from None


def event_cycle(copy_id: int, trigger: str, at: datetime, ref: str | None = None) -> CycleSpec:
    """Return the event cycle settling ``copy_id`` for ``trigger`` at ``at`` (R-SET-5)."""
    trigger = parse_trigger(trigger).value
    if not isinstance(copy_id, int) or isinstance(copy_id, bool) or copy_id <= 0:
        raise RuleViolation("copy", copy_id, "R-SET-1", "a copy id is a positive integer")
    at = _utc(at, "at")
    key = f"event:{trigger}:copy:{copy_id}"
    if trigger == "withdraw_profit":
        ref = ref or at.strftime("%Y%m%dT%H%M%S.%fZ")
        if not _REF.match(ref):
            raise RuleViolation(
                "ref", ref, "R-SET-9", "a withdrawal reference is 1-40 of A-Z a-z 0-9 . _ : -"
            )
        key = f"{key}:{ref}"
    elif ref is not None:
        raise RuleViolation(
            "ref", ref, "R-SET-9", f"only withdraw_profit takes a reference, not {trigger}"
        )
    return CycleSpec(key=key, kind="event", trigger=trigger, as_of=at, copy_id=copy_id)


def trigger_for_stop_reason(stop_reason: str | None) -> str:
    """Return the event trigger that settles a copy stopped for ``stop_reason`` (``<trigger>: …``)."""
    return trigger_of(stop_reason).value


def _utc(at: datetime, field: str) -> datetime:
    if not isinstance(at, datetime) or at.tzinfo is None:
        raise RuleViolation(field, at, "R-SET-4", "a settlement time must carry a time zone")
    return at.astimezone(UTC)
