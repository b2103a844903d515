"""The gateway's own user-data stream reader: every fill, once, across reconnects.

Spot subscribes through Binance's WebSocket API (``userDataStream.subscribe.signature``), USDⓈ-M
through a listenKey stream. After a dropped connection the reader reconnects with back-off and
backfills the gap from REST (``myTrades``/``userTrades`` by ``fromId``) for every symbol it has
seen or traded, so a drop loses nothing. Duplicates (by symbol and trade id) are dropped here;
events may still arrive out of order, as Binance's may.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol

import aiohttp
import orjson

from copytrade import clock
from copytrade.exchange.protocol import GatewayError, Trade

log = logging.getLogger("copytrade.exchange.stream")
KEEPALIVE_SECONDS = 30 * 60
SEEN_LIMIT = 200_000


def trade_from_event(event: dict) -> Trade | None:
    """Return the fill in a user-data event (executionReport / ORDER_TRADE_UPDATE), if any."""
    kind = event.get("e")
    if kind == "executionReport":
        if event.get("x") != "TRADE":
            return None
        o, pnl = event, None
    elif kind == "ORDER_TRADE_UPDATE":
        o = event.get("o") or {}
        if o.get("x") != "TRADE":
            return None
        pnl = Decimal(str(o.get("rp", "0")))
    else:
        return None
    return Trade(
        trade_id=str(o["t"]),
        order_id=str(o["i"]),
        client_order_id=o.get("c") or None,
        symbol=o["s"],
        side=str(o["S"]).lower(),
        price=Decimal(str(o["L"])),
        quantity=Decimal(str(o["l"])),
        fee=Decimal(str(o.get("n") or "0")),
        fee_asset=o.get("N") or "",
        realised_pnl=pnl,
        is_maker=bool(o.get("m")),
        traded_at=datetime.fromtimestamp(int(o["T"]) / 1000, tz=UTC),
    )


class StreamAccount(Protocol):
    """What the stream needs of its gateway (``CcxtGateway``), so neither module imports the other."""

    exchange: Any  # the account's ccxt client: its aiohttp session, key, secret, listenKey calls
    kind: str
    label: str
    stream_url: str

    def _call(self, coro: Awaitable, *, changes_state: bool = False) -> Awaitable: ...

    async def my_trades(
        self, symbol: str, from_id: str | None = None, limit: int = 1000
    ) -> list[Trade]: ...


class UserDataStream:
    """Reads one account's user-data stream and yields its fills."""

    def __init__(self, gateway: StreamAccount) -> None:
        self.gateway = gateway
        self._queue: asyncio.Queue[Trade] = asyncio.Queue()
        self._seen: set[tuple[str, str]] = set()
        self._seen_order: deque[tuple[str, str]] = deque()
        self._last_id: dict[str, int] = {}
        self._symbols: set[str] = set()
        self._task: asyncio.Task | None = None
        self._connected = asyncio.Event()
        self._started_ms = int(clock.now().timestamp() * 1000)
        self.reconnects = 0
        self._closing = False

    def watch_symbol(self, symbol: str) -> None:
        """Backfill this symbol after a reconnect even if no fill of it was seen yet."""
        self._symbols.add(symbol)

    async def start(self, timeout: float = 10.0) -> None:
        """Connect and subscribe; return once the first subscription is live."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"user-data:{self.gateway.label}")
        await asyncio.wait_for(self._connected.wait(), timeout)

    async def fills(self) -> AsyncIterator[Trade]:
        await self.start()
        while True:
            yield await self._queue.get()

    async def close(self) -> None:
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    # -- internals ---------------------------------------------------------------------------------

    def _offer(self, trade: Trade) -> None:
        key = (trade.symbol, trade.trade_id)
        if key in self._seen:
            return
        self._seen.add(key)
        self._seen_order.append(key)
        if len(self._seen_order) > SEEN_LIMIT:
            self._seen.discard(self._seen_order.popleft())
        self._symbols.add(trade.symbol)
        try:
            number = int(trade.trade_id)
            if number > self._last_id.get(trade.symbol, -1):
                self._last_id[trade.symbol] = number
        except ValueError:
            pass
        self._queue.put_nowait(trade)

    async def _run(self) -> None:
        delay = 0.2
        first = True
        while not self._closing:
            try:
                async with self._connect() as ws:
                    await self._subscribe(ws)
                    if not first:
                        await self._backfill()
                    first = False
                    self._connected.set()
                    delay = 0.2
                    await self._read(ws)
            except asyncio.CancelledError:
                raise
            except (
                aiohttp.ClientError,
                OSError,
                TimeoutError,
                GatewayError,
                ConnectionError,
            ) as exc:
                log.warning(
                    "user-data stream of %s lost: %s", self.gateway.label, type(exc).__name__
                )
            if self._closing:
                return
            self.reconnects += 1
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    @contextlib.asynccontextmanager
    async def _connect(self):
        session = self.gateway.exchange.session
        if session is None:
            self.gateway.exchange.open()
            session = self.gateway.exchange.session
        url = self.gateway.stream_url
        keepalive: asyncio.Task | None = None
        if self.gateway.kind == "futures":
            response = await self.gateway._call(self.gateway.exchange.fapiPrivatePostListenKey())
            url = f"{url}/{response['listenKey']}"
            keepalive = asyncio.create_task(self._keepalive())
        try:
            async with session.ws_connect(url, heartbeat=30, max_msg_size=0) as ws:
                yield ws
        finally:
            if keepalive is not None:
                keepalive.cancel()

    async def _keepalive(self) -> None:
        while True:
            await asyncio.sleep(KEEPALIVE_SECONDS)
            with contextlib.suppress(GatewayError):
                await self.gateway._call(self.gateway.exchange.fapiPrivatePutListenKey())

    async def _subscribe(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        if self.gateway.kind != "spot":
            return
        exchange = self.gateway.exchange
        params = {"apiKey": exchange.apiKey, "timestamp": int(time.time() * 1000)}
        payload = "&".join(f"{k}={params[k]}" for k in sorted(params))
        params["signature"] = hmac.new(
            exchange.secret.encode(), payload.encode(), hashlib.sha256
        ).hexdigest()
        await ws.send_str(
            orjson.dumps(
                {"id": "sub", "method": "userDataStream.subscribe.signature", "params": params}
            ).decode()
        )
        while True:
            message = await ws.receive(timeout=10)
            if message.type != aiohttp.WSMsgType.TEXT:
                raise ConnectionError(f"subscription answer was {message.type!r}")
            body = orjson.loads(message.data)
            if body.get("id") == "sub":
                if body.get("status") != 200:
                    error = body.get("error") or {}
                    raise GatewayError(
                        f"user-data subscription refused: {error.get('code')} {error.get('msg')}"
                    )
                return

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for message in ws:
            if message.type == aiohttp.WSMsgType.TEXT:
                body = orjson.loads(message.data)
                event = body.get("event", body) if isinstance(body, dict) else None
                if isinstance(event, dict):
                    trade = trade_from_event(event)
                    if trade is not None:
                        self._offer(trade)
            elif message.type in (
                aiohttp.WSMsgType.CLOSED,
                aiohttp.WSMsgType.CLOSING,
                aiohttp.WSMsgType.ERROR,
            ):
                break

    async def _backfill(self) -> None:
        """Fetch the fills a dropped connection may have missed, by trade id per symbol."""
        for symbol in sorted(self._symbols):
            last = self._last_id.get(symbol)
            trades = await self.gateway.my_trades(
                symbol, from_id=str(last + 1) if last is not None else None
            )
            for trade in trades:
                if last is None and int(trade.traded_at.timestamp() * 1000) < self._started_ms:
                    continue
                self._offer(trade)
