"""Follower user-data streams: a resting order's fills recorded as they happen, not at a sweep.

Market orders are recorded from the order's answer; an order that rests (``acked``: a limit
order, a partial fill) used to wait for the next sweep. The runner follows the user-data stream
of every follower account that has such an order: any execution event on it wakes the sweep at
once, and the sweep records the order's fills through the one path that records them
(``reconcile.resolve_open_intents``, by client order id, deduplicated by exchange trade id), so a
fill seen by both the stream and the sweep is recorded once. The sweep's timer stays as the
fallback (a dropped stream, an account whose stream cannot be opened).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sqlalchemy import select

from models import Copy, FollowerOrderIntent

log = logging.getLogger(__name__)


def resting_accounts(engine) -> set[int]:
    """Follower exchange accounts with an order the exchange acknowledged but has not finished."""
    with engine.sf() as session:
        return set(
            session.scalars(
                select(Copy.exchange_account_id)
                .join(FollowerOrderIntent, FollowerOrderIntent.copy_id == Copy.id)
                .where(FollowerOrderIntent.status == "acked", Copy.exchange_account_id.is_not(None))
                .distinct()
            )
        )


class FollowerStreams:
    """One stream task per follower account with a resting order; events wake the sweep."""

    def __init__(self, engine, wake: asyncio.Event) -> None:
        self.engine = engine
        self.wake = wake
        self.tasks: dict[int, asyncio.Task] = {}
        self.events = 0

    def follow_resting(self) -> None:
        """Start following the accounts that have resting orders (called by every sweep)."""
        for account_id in resting_accounts(self.engine) - set(self.tasks):
            self.tasks[account_id] = asyncio.create_task(
                self._follow(account_id), name=f"follower-stream-{account_id}"
            )

    async def _follow(self, account_id: int) -> None:
        try:
            gateway = self.engine.gateway_for(account_id)
            async for _event in gateway.fills():
                self.events += 1
                self.wake.set()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the sweep's timer is the fallback; try again next sweep
            log.warning("user-data stream of follower account %s: %r", account_id, exc)
        finally:
            self.tasks.pop(account_id, None)

    async def close(self) -> None:
        for task in list(self.tasks.values()):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
