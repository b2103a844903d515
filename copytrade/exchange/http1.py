"""A minimal HTTP/1.1 keep-alive client for the order hot path (one small pool per account).

aiohttp's request machinery costs more client CPU per request than the whole signed order
needs. This client is an ``asyncio.Protocol``: a request is one ``transport.write`` and its
answer a future resolved when httptools' parser reports the whole message (status line,
headers, Content-Length or chunked body). ``Pool.begin`` does the write synchronously on an idle
connection, so a fan-out writes every order without creating a task or a timer per order and
then waits for all answers at once. One request per connection at a time (no pipelining); the
connection is kept for the next request unless the server says ``Connection: close``. http and
https (TLS via the ssl module). Errors surface as ``ConnectionError``/``TimeoutError`` for the
caller to treat as an unknown outcome.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from urllib.parse import urlsplit

import httptools


class HttpError(ConnectionError):
    """The answer could not be read as HTTP/1.1."""


class Response:
    __slots__ = ("status", "reason", "headers", "body", "received")

    def __init__(
        self, status: int, reason: str, headers: dict[str, str], body: bytes, received: float
    ) -> None:
        self.status, self.reason, self.headers, self.body = status, reason, headers, body
        self.received = received  # time.time() when the answer was complete


class Connection(asyncio.Protocol):
    """One keep-alive connection; at most one request in flight.

    Answers are read by httptools' parser (llhttp, the parser of Node.js): status line, headers,
    Content-Length or chunked bodies, keep-alive. One parser per connection, fed every byte in
    order, so a kept-alive connection's answers follow one another as HTTP/1.1 says.
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future | None = None
        self.keep = True
        self.closed = False
        self._reason = b""
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []

    def connection_made(self, transport) -> None:
        self.transport = transport

    def connection_lost(self, exc) -> None:
        self.closed = True
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionError(f"connection lost: {exc!r}"))

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            waiter = self.waiter
            if waiter is not None and not waiter.done():
                waiter.set_exception(HttpError(f"unreadable HTTP answer: {exc}"))
            self.close()

    # -- httptools callbacks -----------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._reason, self._headers, self._body = b"", {}, []

    def on_status(self, reason: bytes) -> None:
        self._reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1").strip()

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        parser = self.parser
        self.keep = parser.should_keep_alive() and parser.get_http_version() == "1.1"
        waiter = self.waiter
        if waiter is None or waiter.done():
            return  # an answer nobody waits for (timed out): the connection is closed anyway
        waiter.set_result(
            Response(
                parser.get_status_code(),
                self._reason.decode("latin-1"),
                self._headers,
                b"".join(self._body),
                time.time(),
            )
        )

    # -- requests ----------------------------------------------------------------------------------

    def send(self, data: bytes) -> asyncio.Future:
        self.waiter = waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return waiter

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class Pool:
    """Keep-alive connections to one origin."""

    def __init__(self, url: str, ssl_context: ssl.SSLContext | None = None) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.tls = parts.scheme == "https"
        self.port = parts.port or (443 if self.tls else 80)
        self.host_header = parts.netloc.encode()
        self.ssl = (ssl_context or ssl.create_default_context()) if self.tls else None
        self.idle: list[Connection] = []

    def request(self, path: str, body: bytes, headers: bytes) -> bytes:
        """The bytes of a POST; ``headers`` are pre-encoded ``Name: value\\r\\n`` lines."""
        return b"POST %s HTTP/1.1\r\nHost: %s\r\n%sContent-Length: %d\r\n\r\n%s" % (
            path.encode(),
            self.host_header,
            headers,
            len(body),
            body,
        )

    def begin(self, data: bytes) -> tuple[Connection, asyncio.Future] | None:
        """Write ``data`` on an idle connection now; None when there is none to take."""
        while self.idle:
            conn = self.idle.pop()
            if not conn.closed and not conn.transport.is_closing():
                return conn, conn.send(data)
            conn.close()
        return None

    def finish(self, conn: Connection, waiter: asyncio.Future) -> Response:
        """The answer of a ``begin`` whose future is done; the connection goes back or closes.

        Raises the future's error, or ``TimeoutError`` if it is not done (the connection is
        dropped: a late answer must not be read as the next request's).
        """
        if not waiter.done():
            waiter.cancel()
            conn.close()
            raise TimeoutError("no answer in time")
        try:
            response = waiter.result()
        except BaseException:
            conn.close()
            raise
        if conn.keep and not conn.closed:
            self.idle.append(conn)
        else:
            conn.close()
        return response

    async def post(self, path: str, body: bytes, headers: bytes, timeout: float) -> Response:
        """POST ``body`` to ``path`` and wait for the answer (opening a connection if needed)."""
        data = self.request(path, body, headers)
        started = self.begin(data)
        if started is None:
            loop = asyncio.get_running_loop()
            _, conn = await asyncio.wait_for(
                loop.create_connection(Connection, self.host, self.port, ssl=self.ssl), timeout
            )
            started = conn, conn.send(data)
        conn, waiter = started
        try:
            await asyncio.wait((waiter,), timeout=timeout)
        except BaseException:  # cancelled: the answer will never be read
            waiter.cancel()
            conn.close()
            raise
        return self.finish(conn, waiter)

    def close(self) -> None:
        for conn in self.idle:
            conn.close()
        self.idle.clear()
