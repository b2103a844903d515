"""HTTP framing on keep-alive connections: a body the app answered without reading never leaks
into the next request (issue 15: the 404/405 answers used to leave it to be parsed as one)."""

from __future__ import annotations

import socket
import time

import ccxt
import pytest

from tests.support.paper_exchange import sync_ccxt_client


def _connect(base_url: str) -> socket.socket:
    host, port = base_url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _read_response(sock: socket.socket, buffer: bytearray) -> tuple[int, bytes]:
    """Read one response (status, body) from ``sock``; what follows stays in ``buffer``."""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection"
        buffer += chunk
    head, _, _ = bytes(buffer).partition(b"\r\n\r\n")
    del buffer[: len(head) + 4]
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    length = next(
        int(line.split(":", 1)[1]) for line in lines if line.lower().startswith("content-length")
    )
    while len(buffer) < length:
        buffer += sock.recv(65536)
    body = bytes(buffer[:length])
    del buffer[:length]
    return status, body


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("POST", "/no/such/path", 404), ("PUT", "/api/v3/ping", 405)],
    ids=["404-fallback", "405-router"],
)
def test_unread_body_sent_in_a_separate_write_is_not_read_as_the_next_request(
    paper, method, path, status
):
    # The body is itself a well-formed request: if it leaked, the server would answer it.
    smuggled = b"GET /api/v3/exchangeInfo HTTP/1.1\r\nHost: paper\r\n\r\n"
    sock = _connect(paper.base_url)
    buffer = bytearray()
    with sock:
        sock.sendall(
            f"{method} {path} HTTP/1.1\r\nHost: paper\r\nContent-Type: application/x-www-form-"
            f"urlencoded\r\nContent-Length: {len(smuggled)}\r\n\r\n".encode()
        )
        time.sleep(0.05)  # headers and body in separate writes, as sync ccxt (requests) sends
        sock.sendall(smuggled)
        assert _read_response(sock, buffer)[0] == status
        sock.sendall(b"GET /api/v3/time HTTP/1.1\r\nHost: paper\r\n\r\n")
        answered, body = _read_response(sock, buffer)
        assert answered == 200
        assert body.startswith(b'{"serverTime":')
        sock.settimeout(0.3)
        with pytest.raises(TimeoutError):  # nothing else was answered on this connection
            sock.recv(1)


def test_sync_ccxt_after_a_404_looks_up_and_cancels_its_order(paper, account):
    client = sync_ccxt_client("spot", paper.base_url, account.api_key, account.api_secret)
    client.load_markets()
    price = client.fetch_ticker("ETH/USDT")["last"]
    order = client.create_order("ETH/USDT", "limit", "buy", 0.05, round(price * 0.97, 2))
    with pytest.raises(ccxt.BaseError):  # a margin order: not served, answered 404 with a body
        client.sapiPostMarginOrder(
            {"symbol": "ETHUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.05"}
        )
    assert client.fetch_order(order["id"], "ETH/USDT")["status"] == "open"
    assert client.cancel_order(order["id"], "ETH/USDT")["status"] == "canceled"
