"""A minimal HTTP/1.1 keep-alive client for the order hot path (one small pool per account).

aiohttp's request machinery costs more client CPU per request than the whole signed order
needs. This client is an ``asyncio.Protocol``: a request is one ``transport.write`` and its
answer a future that ``data_received`` resolves when the status line, headers and the
Content-Length or chunked body are in. ``Pool.begin`` does the write synchronously on an idle
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
    """One keep-alive connection; at most one request in flight."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future | None = None
        self.keep = True
        self.closed = False

    def connection_made(self, transport) -> None:
        self.transport = transport

    def connection_lost(self, exc) -> None:
        self.closed = True
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionError(f"connection lost: {exc!r}"))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        try:
            response = _parse(self.buffer)
        except HttpError as exc:
            waiter.set_exception(exc)
            self.close()
            return
        if response is not None:
            response, self.keep = response
            waiter.set_result(response)

    def send(self, data: bytes) -> asyncio.Future:
        self.buffer.clear()
        self.waiter = waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return waiter

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


def _parse(buffer: bytearray) -> tuple[Response, bool] | None:
    """Return (response, keep-alive) once ``buffer`` holds a whole answer, else None."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    lines = buffer[:end].decode("latin-1").split("\r\n")
    try:
        version, status, *reason = lines[0].split(" ", 2)
        code = int(status)
    except ValueError:
        raise HttpError(f"bad status line {lines[0]!r}") from None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    start = end + 4
    if headers.get("transfer-encoding", "").lower() == "chunked":
        chunks, pos = [], start
        while True:
            eol = buffer.find(b"\r\n", pos)
            if eol < 0:
                return None
            try:
                size = int(bytes(buffer[pos:eol]).split(b";")[0], 16)
            except ValueError:
                raise HttpError("bad chunk size") from None
            if size == 0:
                if len(buffer) < eol + 4:
                    return None
                break
            if len(buffer) < eol + 2 + size + 2:
                return None
            chunks.append(bytes(buffer[eol + 2 : eol + 2 + size]))
            pos = eol + 2 + size + 2
        body = b"".join(chunks)
    else:
        length = int(headers.get("content-length", "0"))
        if len(buffer) < start + length:
            return None
        body = bytes(buffer[start : start + length])
    keep = headers.get("connection", "").lower() != "close" and version == "HTTP/1.1"
    return Response(code, reason[0] if reason else "", headers, body, time.time()), keep


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
