"""Run a paper exchange for tests and benchmarks: in a background thread or a subprocess.

    with run_paper_exchange() as paper:
        account = paper.admin.create_account(spot={"USDT": "10000"})
        exchange = ccxt_client("spot", paper.base_url, account.api_key, account.api_secret)

The server listens on a free loopback port chosen by the OS (never a fixed one).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from copytrade.paper.client import AdminClient
from copytrade.paper.server import PaperHandle, bound_socket, serve_in_thread

TEST_ADMIN_TOKEN = "paper-test-admin"

__all__ = [
    "TEST_ADMIN_TOKEN",
    "PaperHandle",
    "ccxt_client",
    "point_at_paper",
    "process_cpu_seconds",
    "run_paper_exchange",
    "sync_ccxt_client",
]


@contextmanager
def run_paper_exchange(
    *,
    mode: str = "thread",
    data_dir: Path | None = None,
    admin_token: str = TEST_ADMIN_TOKEN,
    start: str | None = None,
    speed: float = 1.0,
    host: str = "127.0.0.1",
    startup_timeout: float = 30.0,
    python_args: tuple[str, ...] = (),
) -> Iterator[PaperHandle]:
    """Start a paper exchange and yield its handle; stop it on exit.

    ``mode="thread"`` runs uvicorn on its own event loop in a daemon thread (the handle's
    ``server`` gives direct read access to the state); ``mode="process"`` runs
    ``python -m copytrade paper serve`` in a subprocess (its own core: use it for benchmarks);
    ``python_args`` go before ``-m`` there (e.g. ``-m cProfile -o FILE`` to profile it).
    """
    from copytrade.config import get_settings

    data_dir = data_dir or get_settings().data_dir
    if mode == "thread":
        with serve_in_thread(
            data_dir,
            admin_token,
            start=start,
            speed=speed,
            host=host,
            startup_timeout=startup_timeout,
        ) as handle:
            yield handle
    elif mode == "process":
        with _run_in_process(
            data_dir, admin_token, start, speed, host, startup_timeout, python_args
        ) as handle:
            yield handle
    else:
        raise ValueError(f"mode: {mode!r} is not 'thread' or 'process'")


@contextmanager
def _run_in_process(
    data_dir, admin_token, start, speed, host, startup_timeout, python_args=()
) -> Iterator[PaperHandle]:
    sock = bound_socket(host)
    port = sock.getsockname()[1]
    sock.close()  # the child binds the same port (SO_REUSEADDR); a tiny race, loopback only
    env = dict(
        os.environ, COPYTRADE_PAPER_ADMIN_TOKEN=admin_token, COPYTRADE_DATA_DIR=str(data_dir)
    )
    cmd = [
        sys.executable,
        *python_args,
        "-m",
        "copytrade",
        "paper",
        "serve",
        "--host",
        host,
        "--port",
        str(port),
        "--speed",
        str(speed),
    ]
    if start:
        cmd += ["--start", start]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base_url = f"http://{host}:{port}"
    admin = AdminClient(base_url, admin_token)
    deadline = time.monotonic() + startup_timeout
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"paper exchange exited: {proc.stderr.read().decode()[-2000:]}")
            try:
                admin.health()
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise RuntimeError("paper exchange did not start") from None
                time.sleep(0.1)
        yield PaperHandle(base_url, admin_token, admin, None, proc.pid)
    finally:
        admin.close()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def point_at_paper(exchange, base_url: str):
    """Send an unmodified ccxt client to the paper exchange: only ``urls['api']`` changes."""
    from copytrade.exchange.urls import paper_urls

    exchange.urls["api"] = {**exchange.urls["api"], **paper_urls(base_url)}
    return exchange


def ccxt_client(kind: str, base_url: str, api_key: str, api_secret: str, **config: object):
    """Return a plain ccxt async client (binance for spot, binanceusdm for futures) on the paper exchange.

    Spot clients only load spot markets (``options.fetchMarkets``), futures clients only USDⓈ-M.
    """
    import ccxt.async_support as ccxt

    return _configured(ccxt, kind, base_url, api_key, api_secret, config)


def sync_ccxt_client(kind: str, base_url: str, api_key: str, api_secret: str, **config: object):
    """Return a plain synchronous ccxt client on the paper exchange (requests, not aiohttp)."""
    import ccxt

    return _configured(ccxt, kind, base_url, api_key, api_secret, config)


def _configured(module, kind, base_url, api_key, api_secret, config):
    cls = module.binance if kind == "spot" else module.binanceusdm
    client = cls({"apiKey": api_key, "secret": api_secret, **config})
    if kind == "spot":
        client.options["fetchMarkets"] = {"types": ["spot"]}
    return point_at_paper(client, base_url)


def process_cpu_seconds(pid: int) -> float:
    """Return the user + system CPU seconds a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks
