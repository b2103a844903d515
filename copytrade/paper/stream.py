"""The user-data stream: listenKeys, websocket subscribers and event fan-out (with stream faults)."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from dataclasses import dataclass, field

import orjson
from starlette.websockets import WebSocket

from copytrade.paper.faults import Faults

HOLD_SECONDS = 1.0  # a reordered event is released at the latest after this long


@dataclass(eq=False)
class Subscriber:
    """One websocket listening to one account's events of one kind (spot or futures)."""

    websocket: WebSocket
    account_id: str
    kind: str
    subscription_id: int | None = None  # set for the spot WebSocket-API subscription
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)

    def frame(self, payload: bytes) -> str:
        if self.subscription_id is None:
            return payload.decode()
        return f'{{"subscriptionId":{self.subscription_id},"event":{payload.decode()}}}'


class StreamHub:
    """Routes exchange events to the websockets of their account."""

    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self.listen_keys: dict[str, tuple[str, str]] = {}
        self._keys_by_account: dict[tuple[str, str], str] = {}
        self.subscribers: dict[tuple[str, str], set[Subscriber]] = {}
        self._held: dict[tuple[str, str], tuple[float, bytes]] = {}
        self.sent = 0
        self._closing: set[asyncio.Task] = set()

    # -- listenKeys ----------------------------------------------------------------------------

    def listen_key(self, account_id: str, kind: str) -> str:
        """Return the account's listenKey for ``kind``, creating it (Binance reuses an active one)."""
        key = self._keys_by_account.get((account_id, kind))
        if key is None:
            key = secrets.token_urlsafe(48)[:60]
            self._keys_by_account[(account_id, kind)] = key
            self.listen_keys[key] = (account_id, kind)
        return key

    def close_listen_key(self, key: str) -> None:
        owner = self.listen_keys.pop(key, None)
        if owner:
            self._keys_by_account.pop(owner, None)

    # -- subscribers ---------------------------------------------------------------------------

    def has_subscribers(self, account_id: str, kind: str) -> bool:
        return bool(self.subscribers.get((account_id, kind)))

    def add(self, sub: Subscriber) -> None:
        self.subscribers.setdefault((sub.account_id, sub.kind), set()).add(sub)

    def remove(self, sub: Subscriber) -> None:
        subs = self.subscribers.get((sub.account_id, sub.kind))
        if subs:
            subs.discard(sub)

    async def pump(self, sub: Subscriber) -> None:
        """Send queued events to the websocket until it closes."""
        while True:
            payload = await sub.queue.get()
            if payload is None:
                return
            await sub.websocket.send_text(sub.frame(payload))

    def publish(self, account_id: str, kind: str, event: dict) -> None:
        """Queue ``event`` for every subscriber of the account (an exchange event sink)."""
        key = (account_id, kind)
        subs = self.subscribers.get(key)
        if not subs:
            return
        payload = orjson.dumps(event)
        frames = [payload]
        if self.faults:
            if self.faults.take(frozenset({"duplicate_events"}), account_id, kind, "STREAM"):
                frames = [payload, payload]
            held = self._held.pop(key, None)
            if held is not None:
                frames = frames + [held[1]]
            elif self.faults.take(frozenset({"reorder_events"}), account_id, kind, "STREAM"):
                self._held[key] = (time.monotonic(), payload)
                frames = frames[1:]
        for sub in subs:
            for frame in frames:
                sub.queue.put_nowait(frame)
                self.sent += 1

    def flush_held(self) -> None:
        """Release reordered events held for too long (no later event came)."""
        now = time.monotonic()
        for key, (since, payload) in list(self._held.items()):
            if now - since >= HOLD_SECONDS:
                del self._held[key]
                for sub in self.subscribers.get(key, ()):
                    sub.queue.put_nowait(payload)

    async def drop(self, account_id: str | None = None) -> int:
        """Close the websockets of one account (or all); return how many.

        The close handshakes run in the background: an admin caller blocked on this answer
        (a synchronous client on the websocket client's own event loop) must not deadlock it.
        """
        dropped = 0
        for (acc, _), subs in list(self.subscribers.items()):
            if account_id is not None and acc != account_id:
                continue
            for sub in list(subs):
                sub.queue.put_nowait(None)
                subs.discard(sub)
                task = asyncio.get_running_loop().create_task(self._close(sub))
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)
                dropped += 1
        return dropped

    @staticmethod
    async def _close(sub: Subscriber) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(sub.websocket.close(code=1001), 5)
