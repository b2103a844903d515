"""The hot path's minimal HTTP/1.1 client: keep-alive, Content-Length and chunked bodies."""

from __future__ import annotations

import asyncio

import pytest

from copytrade.exchange.http1 import HttpError, Pool


async def _requests(reader):
    """Yield (request line, body) of each request a test server reads on one connection."""
    while True:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        yield head.split(b"\r\n")[0], await reader.readexactly(length)


async def test_keep_alive_content_length_and_chunked_bodies():
    seen = []

    async def handle(reader, writer):
        async for request in _requests(reader):
            seen.append(request)
            if len(seen) == 1:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            else:
                writer.write(
                    b"HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
                )
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    pool = Pool(f"http://127.0.0.1:{port}/fapi/v1/order")
    first = await pool.post("/fapi/v1/order", b"a=1", b"X-Test: 1\r\n", 5)
    second = await pool.post("/fapi/v1/order", b"b=22", b"", 5)
    assert (first.status, first.body) == (200, b"ok")
    assert (second.status, second.reason, second.body) == (400, "Bad Request", b"abcde")
    assert [b for _, b in seen] == [b"a=1", b"b=22"]
    assert len(pool.idle) == 1  # one connection, kept alive across both requests
    pool.close()
    server.close()
    await server.wait_closed()


async def test_timeout_raises_and_drops_the_connection():
    async def silent(reader, writer):
        await asyncio.sleep(5)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    pool = Pool(f"http://127.0.0.1:{port}")
    with pytest.raises(TimeoutError):
        await pool.post("/x", b"", b"", 0.1)
    assert pool.idle == []
    server.close()


async def test_begin_writes_only_on_an_idle_connection_and_finish_reads_the_answer():
    """The fan-out's synchronous write: no idle connection → None (the caller opens one); a
    kept-alive connection → written now, the answer read by ``finish``; an answer not in by
    then is a timeout and the connection is dropped, never reused (R-COPY-11: unknown outcome)."""
    answers = [b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"] * 2

    async def handle(reader, writer):
        async for _ in _requests(reader):
            if answers:
                writer.write(answers.pop())
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    pool = Pool(f"http://127.0.0.1:{port}")
    data = pool.request("/o", b"x=1", b"")
    assert pool.begin(data) is None
    await pool.post("/o", b"x=1", b"", 5)
    conn, waiter = pool.begin(data)
    assert pool.idle == []
    await asyncio.wait([waiter], timeout=5)
    response = pool.finish(conn, waiter)
    assert (response.status, response.body) == (200, b"ok") and response.received > 0
    assert pool.idle == [conn]
    conn, waiter = pool.begin(data)  # the server stays silent this time
    await asyncio.wait([waiter], timeout=0.1)
    with pytest.raises(TimeoutError):
        pool.finish(conn, waiter)
    assert conn.closed and pool.idle == []
    pool.close()
    server.close()
    await server.wait_closed()


async def test_an_answer_that_is_not_http_is_a_connection_error_and_the_connection_is_dropped():
    """httptools' parser refuses the answer; the caller sees a ConnectionError (an unknown
    outcome for an order, R-COPY-11) and the connection is never reused."""

    async def garbage(reader, writer):
        async for _ in _requests(reader):
            writer.write(b"NOT HTTP AT ALL\r\n\r\n")
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(garbage, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    pool = Pool(f"http://127.0.0.1:{port}")
    with pytest.raises(HttpError):
        await pool.post("/o", b"x=1", b"", 5)
    assert pool.idle == []
    server.close()
    await server.wait_closed()


async def test_connection_close_answer_is_read_and_the_connection_not_kept():
    async def once(reader, writer):
        async for _ in _requests(reader):
            writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 3\r\n\r\nbye")
            await writer.drain()
            writer.close()
            return

    server = await asyncio.start_server(once, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    pool = Pool(f"http://127.0.0.1:{port}")
    response = await pool.post("/o", b"x=1", b"", 5)
    assert (response.status, response.reason, response.body) == (200, "OK", b"bye")
    assert response.headers["connection"] == "close" and pool.idle == []
    server.close()
    await server.wait_closed()
