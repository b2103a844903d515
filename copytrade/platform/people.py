"""People by handle, and the audit log of decisions (R-LEAD-7, R-LEAD-9, R-LEAD-10)."""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.orm import Session

from copytrade.domain.errors import RuleViolation
from models import AuditEntry, Person

_HANDLE = re.compile(r"^[a-z0-9][a-z0-9_.-]{1,31}$")


def check_handle(handle: object) -> str:
    """Return the handle in lower case; refuse one that is not 2-32 of a-z, 0-9, '_', '.', '-'."""
    text = handle.strip().lower() if isinstance(handle, str) else ""
    if not _HANDLE.match(text):
        raise RuleViolation(
            "handle",
            handle,
            "R-IN-2",
            "a handle is 2 to 32 characters of a-z, 0-9, '_', '.' or '-', starting with a letter or digit",
        )
    return text


def find_person(session: Session, handle: str, *, lock: bool = False) -> Person | None:
    """Return the person with ``handle`` (lower-cased), or None."""
    query = select(Person).where(Person.handle == check_handle(handle))
    if lock:
        query = query.with_for_update()
    return session.scalars(query).one_or_none()


def require_person(session: Session, handle: str, *, lock: bool = False) -> Person:
    """Return the person with ``handle``; refuse an unknown handle (R-IN-2)."""
    person = find_person(session, handle, lock=lock)
    if person is None:
        raise RuleViolation("handle", handle, "R-IN-2", f"no person with handle {handle!r}")
    return person


def get_or_create_person(session: Session, handle: str) -> Person:
    """Return the person with ``handle``, creating them if new."""
    person = find_person(session, handle, lock=True)
    if person is None:
        person = Person(handle=check_handle(handle), display_name=handle.strip())
        session.add(person)
        session.flush()
    return person


def record(
    session: Session,
    *,
    actor: str,
    action: str,
    subject_type: str,
    subject_id: object,
    rule: str | None,
    reason: str,
    details: dict | None = None,
) -> AuditEntry:
    """Append one decision to the audit log (kept forever)."""
    entry = AuditEntry(
        actor=actor,
        action=action,
        subject_type=subject_type,
        subject_id=str(subject_id),
        rule=rule,
        reason=reason,
        details=details,
    )
    session.add(entry)
    return entry
