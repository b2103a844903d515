"""A lean HTTP/1.1 protocol for uvicorn, for when ``httptools`` (uvicorn's C parser) is absent.

uvicorn's pure-Python fallback (h11) cost about as much CPU per request as the whole order
matching, so the paper exchange brings this small parser: HTTP/1.1 keep-alive, ``Content-Length``
request bodies, responses written in one ``write`` (head and body together), and websocket
upgrades handed to uvicorn's websocket protocol exactly as uvicorn's own protocols do. Pass the
class as ``uvicorn.Config(http=LeanHttpProtocol)``. Chunked request bodies are refused (411):
Binance clients (ccxt over aiohttp, httpx) send a length.
"""

from __future__ import annotations

import asyncio
import http
import logging
import urllib.parse
from typing import Any

from uvicorn.protocols.utils import get_local_addr, get_remote_addr, is_ssl

MAX_HEAD = 64 * 1024
MAX_BODY = 8 * 1024 * 1024
_REASONS = {s.value: s.phrase.encode() for s in http.HTTPStatus}
log = logging.getLogger("uvicorn.error")


def _status_line(status: int) -> bytes:
    return b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b""))


class _Cycle:
    """One request and its response."""

    __slots__ = (
        "protocol",
        "scope",
        "body",
        "complete_body",
        "event",
        "started",
        "complete",
        "keep_alive",
        "head",
        "chunked",
        "disconnected",
    )

    def __init__(self, protocol: LeanHttpProtocol, scope: dict, keep_alive: bool) -> None:
        self.protocol = protocol
        self.scope = scope
        self.body = b""
        self.complete_body = False
        self.event = asyncio.Event()
        self.started = False
        self.complete = False
        self.keep_alive = keep_alive
        self.head: list[bytes] = []
        self.chunked = False
        self.disconnected = False

    async def run(self, app) -> None:
        try:
            await app(self.scope, self.receive, self.send)
        except BaseException as exc:
            log.error("Exception in ASGI application\n", exc_info=exc)
            if not self.started:
                await self.send(
                    {
                        "type": "http.response.start",
                        "status": 500,
                        "headers": [(b"content-type", b"text/plain"), (b"connection", b"close")],
                    }
                )
                await self.send({"type": "http.response.body", "body": b"Internal Server Error"})
            else:
                self.protocol.transport.close()
        else:
            if not self.complete and not self.disconnected:
                self.protocol.transport.close()

    async def receive(self) -> dict:
        while not self.complete_body and not self.disconnected and not self.complete:
            self.event.clear()
            await self.event.wait()
        if self.disconnected or self.complete:
            return {"type": "http.disconnect"}
        body, self.body = self.body, b""
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(self, message: dict) -> None:
        if self.disconnected:
            return
        protocol = self.protocol
        if protocol.write_paused:
            await protocol.drain()
        kind = message["type"]
        if not self.started:
            if kind != "http.response.start":
                raise RuntimeError(f"Expected 'http.response.start', got {kind!r}")
            self.started = True
            status = message["status"]
            head = [_status_line(status)]
            has_length = False
            for name, value in protocol.default_headers:
                head += [name, b": ", value, b"\r\n"]
            for name, value in message.get("headers", ()):
                name = name.lower()
                if name == b"content-length":
                    has_length = True
                elif name == b"connection" and b"close" in value.lower():
                    self.keep_alive = False
                head += [name, b": ", value, b"\r\n"]
            if not self.keep_alive:
                head.append(b"connection: close\r\n")
            if not has_length and status not in (204, 304) and self.scope["method"] != "HEAD":
                self.chunked = True
                head.append(b"transfer-encoding: chunked\r\n")
            head.append(b"\r\n")
            self.head = head
            return
        if kind != "http.response.body" or self.complete:
            raise RuntimeError(f"Unexpected ASGI message {kind!r}")
        body = message.get("body", b"")
        more = message.get("more_body", False)
        out = self.head
        self.head = []
        if self.scope["method"] == "HEAD":
            pass
        elif self.chunked:
            if body:
                out += [b"%x\r\n" % len(body), body, b"\r\n"]
            if not more:
                out.append(b"0\r\n\r\n")
        else:
            out.append(body)
        if out:
            protocol.transport.write(b"".join(out))
        if not more:
            self.complete = True
            self.event.set()
            if not self.keep_alive:
                protocol.transport.close()
            protocol.response_done()


class LeanHttpProtocol(asyncio.Protocol):
    """uvicorn HTTP protocol: ``Config(http=LeanHttpProtocol)``."""

    def __init__(self, config, server_state, app_state: dict[str, Any], _loop=None) -> None:
        if not config.loaded:
            config.load()
        self.config = config
        self.app = config.loaded_app
        self.loop = _loop or asyncio.get_event_loop()
        self.server_state = server_state
        self.app_state = app_state
        self.connections = server_state.connections
        self.tasks = server_state.tasks
        self.ws_protocol_class = config.ws_protocol_class
        self.root_path = config.root_path
        self.timeout_keep_alive = config.timeout_keep_alive
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.buffer = bytearray()
        self.cycle: _Cycle | None = None
        self.body_needed = 0
        self.keep_alive_timer: asyncio.TimerHandle | None = None
        self.write_paused = False
        self._drain: asyncio.Event | None = None
        self.server = self.client = None
        self.scheme = "http"

    @property
    def default_headers(self) -> list[tuple[bytes, bytes]]:
        return self.server_state.default_headers

    # -- asyncio.Protocol --------------------------------------------------------------------------

    def connection_made(self, transport) -> None:  # type: ignore[override]
        self.connections.add(self)
        self.transport = transport
        self.server = get_local_addr(transport)
        self.client = get_remote_addr(transport)
        self.scheme = "https" if is_ssl(transport) else "http"

    def connection_lost(self, exc: Exception | None) -> None:
        self.connections.discard(self)
        self._cancel_timer()
        if self.cycle is not None and not self.cycle.complete:
            self.cycle.disconnected = True
            self.cycle.event.set()
        if self._drain is not None:
            self._drain.set()

    def eof_received(self) -> None:
        pass

    def pause_writing(self) -> None:
        self.write_paused = True
        self._drain = asyncio.Event()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self._drain is not None:
            self._drain.set()

    async def drain(self) -> None:
        if self._drain is not None:
            await self._drain.wait()

    def data_received(self, data: bytes) -> None:
        self._cancel_timer()
        self.buffer += data
        self._process()

    # -- parsing -----------------------------------------------------------------------------------

    def _process(self) -> None:
        while True:
            cycle = self.cycle
            if cycle is not None and not cycle.complete_body:
                if len(self.buffer) < self.body_needed:
                    return
                cycle.body = bytes(self.buffer[: self.body_needed])
                del self.buffer[: self.body_needed]
                cycle.complete_body = True
                cycle.event.set()
            if cycle is not None and not cycle.complete:
                return  # one request at a time; pipelined data waits in the buffer
            if not self.buffer:
                return
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > MAX_HEAD:
                    self._reject(431, b"Request header too large")
                return
            head = bytes(self.buffer[:end])
            del self.buffer[: end + 4]
            if not self._start(head):
                return

    def _start(self, head: bytes) -> bool:
        lines = head.split(b"\r\n")
        try:
            method, target, version = lines[0].split(b" ", 2)
        except ValueError:
            self._reject(400, b"Invalid HTTP request line")
            return False
        headers: list[tuple[bytes, bytes]] = []
        length = 0
        connection = b""
        upgrade = b""
        chunked = False
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep:
                self._reject(400, b"Invalid HTTP header")
                return False
            name = name.strip().lower()
            value = value.strip()
            headers.append((name, value))
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    self._reject(400, b"Invalid Content-Length")
                    return False
            elif name == b"connection":
                connection = value.lower()
            elif name == b"upgrade":
                upgrade = value.lower()
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        if upgrade == b"websocket" and b"upgrade" in connection and self.ws_protocol_class:
            self._upgrade(head)
            return False
        if chunked:
            self._reject(411, b"Length Required")
            return False
        if length > MAX_BODY:
            self._reject(413, b"Payload Too Large")
            return False
        raw_path, _, query = target.partition(b"?")
        path = raw_path.decode("ascii", "replace")
        if "%" in path:
            path = urllib.parse.unquote(path)
        http_version = (
            version[5:].decode("ascii", "replace") if version.startswith(b"HTTP/") else "1.1"
        )
        if http_version == "1.1":
            keep_alive = b"close" not in connection
        else:
            keep_alive = b"keep-alive" in connection
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": http_version,
            "server": self.server,
            "client": self.client,
            "scheme": self.scheme,
            "method": method.decode("ascii", "replace"),
            "root_path": self.root_path,
            "path": self.root_path + path,
            "raw_path": raw_path,
            "query_string": query,
            "headers": headers,
            "state": self.app_state.copy(),
        }
        cycle = _Cycle(self, scope, keep_alive)
        self.cycle = cycle
        self.body_needed = length
        if length == 0:
            cycle.complete_body = True
        task = self.loop.create_task(cycle.run(self.app))
        task.add_done_callback(self.tasks.discard)
        self.tasks.add(task)
        return True

    def _upgrade(self, head: bytes) -> None:
        """Hand the connection to uvicorn's websocket protocol with the request replayed."""
        self.connections.discard(self)
        protocol = self.ws_protocol_class(
            config=self.config, server_state=self.server_state, app_state=self.app_state
        )
        protocol.connection_made(self.transport)
        rest = bytes(self.buffer)
        self.buffer.clear()
        protocol.data_received(head + b"\r\n\r\n" + rest)
        self.transport.set_protocol(protocol)

    def _reject(self, status: int, message: bytes) -> None:
        self.transport.write(
            _status_line(status)
            + b"content-type: text/plain\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
            % len(message)
            + message
        )
        self.transport.close()

    # -- lifecycle ---------------------------------------------------------------------------------

    def response_done(self) -> None:
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self.cycle = None
        if self.buffer:
            self._process()
        if self.cycle is None:
            self.keep_alive_timer = self.loop.call_later(
                self.timeout_keep_alive, self._idle_timeout
            )

    def _cancel_timer(self) -> None:
        if self.keep_alive_timer is not None:
            self.keep_alive_timer.cancel()
            self.keep_alive_timer = None

    def _idle_timeout(self) -> None:
        if not self.transport.is_closing():
            self.transport.close()

    def shutdown(self) -> None:
        """Called by uvicorn on exit: close idle connections, finish the running request."""
        if self.cycle is None or self.cycle.complete:
            self.transport.close()
        else:
            self.cycle.keep_alive = False


def best_http_protocol() -> str | type[asyncio.Protocol]:
    """Return uvicorn's httptools protocol when installed, else this lean one (never h11)."""
    import importlib.util

    if importlib.util.find_spec("httptools") is not None:
        return "httptools"
    return LeanHttpProtocol
