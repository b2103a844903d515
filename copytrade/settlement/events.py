"""The `copytrade.copy.stopped` event: what a stop announces so an automation settles the copy.

When a copy stops (the follower, its stop-loss or take-profit, a portfolio close), the stopper
emits this event through Prefect (``prefect.events.emit_event(**copy_stopped_event(...))``); the
``settle-event`` deployment's trigger in prefect.yaml turns it into a ``settle`` flow run for that
copy (R-SET-5). The run settles idempotently (``SettlementService.settle_event``), so an event
delivered twice, or a stop also picked up by the weekly run, pays nothing twice. This module only
builds the event; it imports no Prefect (the platform's services never do).
"""

from __future__ import annotations

from copytrade.domain.triggers import trigger_of

COPY_STOPPED = "copytrade.copy.stopped"
RESOURCE_PREFIX = "copytrade.copy."


def copy_stopped_event(copy_id: int, stop_reason: str | None) -> dict:
    """Return the keyword arguments of ``emit_event`` for a stopped copy."""
    trigger = trigger_of(stop_reason).value
    return {
        "event": COPY_STOPPED,
        "resource": {
            "prefect.resource.id": f"{RESOURCE_PREFIX}{copy_id}",
            "prefect.resource.name": f"copy {copy_id}",
        },
        "payload": {"copy_id": copy_id, "trigger": trigger, "stop_reason": stop_reason or ""},
    }
