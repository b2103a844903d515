"""A minimal HTTP/1.1 keep-alive client for the order hot path (one small pool per account).

aiohttp's request machinery costs more client CPU per request than the whole signed order
needs; this client writes one request per connection at a time (no pipelining), reads the status
line, headers and a Content-Length or chunked body, and keeps the connection for the next
request unless the server says ``Connection: close``. http and https (TLS via the ssl module)
are both supported. Errors surface as ``ConnectionError``/``TimeoutError`` for the caller to
treat as an unknown outcome.
"""

from __future__ import annotations

import asyncio
import ssl
from urllib.parse import urlsplit


class HttpError(ConnectionError):
    """The answer could not be read as HTTP/1.1."""


class Response:
    __slots__ = ("status", "reason", "headers", "body")

    def __init__(self, status: int, reason: str, headers: dict[str, str], body: bytes) -> None:
        self.status, self.reason, self.headers, self.body = status, reason, headers, body


class Pool:
    """Keep-alive connections to one origin."""

    def __init__(self, url: str, ssl_context: ssl.SSLContext | None = None) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.tls = parts.scheme == "https"
        self.port = parts.port or (443 if self.tls else 80)
        self.host_header = parts.netloc
        self.ssl = (ssl_context or ssl.create_default_context()) if self.tls else None
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    def _idle(self):
        while self.idle:
            reader, writer = self.idle.pop()
            if not writer.is_closing() and not reader.at_eof():
                return reader, writer
            writer.close()
        return None

    async def post(self, path: str, body: bytes, headers: bytes, timeout: float) -> Response:
        """POST ``body`` to ``path``; ``headers`` are pre-encoded ``Name: value\\r\\n`` lines."""
        # An idle connection is taken without a task or a timer (the common case in the hot path).
        conn = self._idle() or await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port, ssl=self.ssl), timeout
        )
        reader, writer = conn
        try:
            writer.write(
                b"POST %s HTTP/1.1\r\nHost: %s\r\n%sContent-Length: %d\r\n\r\n%s"
                % (path.encode(), self.host_header.encode(), headers, len(body), body)
            )
            async with asyncio.timeout(timeout):
                response, keep = await _read(reader)
        except BaseException:
            writer.close()
            raise
        if keep:
            self.idle.append((reader, writer))
        else:
            writer.close()
        return response

    def close(self) -> None:
        for _, writer in self.idle:
            writer.close()
        self.idle.clear()


async def _read(reader: asyncio.StreamReader) -> tuple[Response, bool]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
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
    if headers.get("transfer-encoding", "").lower() == "chunked":
        chunks = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            chunks.append(await reader.readexactly(size))
            await reader.readexactly(2)
        body = b"".join(chunks)
    else:
        body = await reader.readexactly(int(headers.get("content-length", "0")))
    keep = headers.get("connection", "").lower() != "close" and version == "HTTP/1.1"
    return Response(code, reason[0] if reason else "", headers, body), keep
