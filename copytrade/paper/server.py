"""Serve a paper exchange with uvicorn: one place for the server options, in the foreground
(``copytrade paper serve``) or in a background thread (the demo, tests, benchmarks).

HTTP is parsed by uvicorn's own httptools protocol (llhttp, in C): it keeps request framing on
keep-alive connections right, including a body the app answered without reading, which is
consumed by the parser as that request's body and never read as the start of the next request.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from copytrade.paper.app import DEFAULT_START, PaperServer
from copytrade.paper.client import AdminClient

# Enough for 1,000 concurrent clients opening connections at once (uvicorn's 2048 default
# dropped some), and keep-alive long enough that a pool of idle ccxt clients keeps its sockets.
BACKLOG = 4096
KEEP_ALIVE_SECONDS = 120


def uvicorn_config(app, *, log_level: str = "warning", **options: object) -> uvicorn.Config:
    """Return the uvicorn configuration every paper exchange runs with."""
    return uvicorn.Config(
        app,
        http="httptools",
        ws="websockets-sansio",
        loop="uvloop" if _has("uvloop") else "asyncio",
        log_level=log_level,
        access_log=False,
        proxy_headers=False,
        lifespan="on",
        backlog=BACKLOG,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        **options,
    )


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


@dataclass
class PaperHandle:
    """A running paper exchange: its URL, an admin client and (thread mode) the server object."""

    base_url: str
    admin_token: str
    admin: AdminClient
    server: PaperServer | None = None  # thread mode: direct read access to the state
    pid: int | None = None  # process mode: the server's process id

    @property
    def ws_url(self) -> str:
        return "ws" + self.base_url[len("http") :]


def bound_socket(host: str) -> socket.socket:
    """Return a listening socket on a free port chosen by the OS (never a fixed one)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    sock.listen(BACKLOG)
    sock.set_inheritable(True)
    return sock


@contextmanager
def serve_in_thread(
    data_dir: Path,
    admin_token: str,
    *,
    start: str | None = None,
    speed: float = 1.0,
    host: str = "127.0.0.1",
    startup_timeout: float = 30.0,
) -> Iterator[PaperHandle]:
    """Run a paper exchange on its own event loop in a daemon thread; stop it on exit."""
    paper = PaperServer(data_dir, admin_token, start=start or DEFAULT_START, speed=speed)
    sock = bound_socket(host)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn_config(paper.app()))
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="paper-exchange"
    )
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("paper exchange did not start")
        time.sleep(0.01)
    base_url = f"http://{host}:{port}"
    admin = AdminClient(base_url, admin_token)
    try:
        yield PaperHandle(base_url, admin_token, admin, paper)
    finally:
        admin.close()
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
