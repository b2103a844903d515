"""The demo's Prefect: the production flows run on a Prefect server whose database is the demo's.

``PREFECT_HOME`` is ``<home>/prefect`` — the folder `copytrade up` gives Prefect for the same home —
so the demo never touches ``~/.prefect`` and its runs show in the UI of `copytrade up`. When that
stack's server is running, the flows run on it; otherwise a temporary server (Prefect's
``SubprocessASGIServer``, no UI) is started on the same database and stopped at the end.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from copytrade.ops.stack import Stack

# A loaded 2-core machine can take well over Prefect's default 30 s to start the server.
STARTUP_TIMEOUT = 180


@dataclass
class DemoPrefect:
    """Where the demo's flow runs went."""

    prefect_home: Path
    api_url: str
    started_here: bool  # a temporary server of the demo (else the running `copytrade up` stack's)
    ui_url: str
    startup_seconds: float = 0.0
    flow_runs: list[dict] = field(default_factory=list)


@contextmanager
def demo_prefect(home: Path, timeout: int = STARTUP_TIMEOUT) -> Iterator[DemoPrefect]:
    """Point Prefect at ``<home>/prefect`` and a server on its database for the ``with`` block."""
    import prefect.context
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_HOME,
        PREFECT_SERVER_ANALYTICS_ENABLED,
        PREFECT_SERVER_DATABASE_CONNECTION_URL,
        temporary_settings,
    )

    stack = Stack(home=home.resolve())
    prefect_home = stack.prefect_home
    prefect_home.mkdir(parents=True, exist_ok=True)
    base = {
        PREFECT_HOME: str(prefect_home),
        PREFECT_SERVER_DATABASE_CONNECTION_URL: f"sqlite+aiosqlite:///{prefect_home / 'prefect.db'}",
        PREFECT_SERVER_ANALYTICS_ENABLED: False,
    }
    with ExitStack() as stack_:
        stack_.enter_context(temporary_settings(updates=base))
        if stack.running("prefect-server") and stack.api().healthy():
            info = DemoPrefect(prefect_home, stack.prefect_api_url, False, stack.prefect_ui_url)
        else:
            server = SubprocessASGIServer(port=_free_port())
            started = time.perf_counter()
            server.start(timeout=timeout)
            stack_.callback(_stop, server)
            info = DemoPrefect(
                prefect_home,
                server.api_url,
                True,
                stack.prefect_ui_url,
                round(time.perf_counter() - started, 1),
            )
        stack_.enter_context(temporary_settings(updates={PREFECT_API_URL: info.api_url}))
        # Flow and task runs may read the process-global settings (threads, copied contexts).
        stack_.enter_context(
            prefect.context._temporary_global_settings_context(
                prefect.context.get_settings_context()
            )
        )
        yield info
        _drain()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _drain() -> None:
    """Send the buffered logs and events before the server goes (as Prefect's test harness does)."""
    import inspect

    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.utilities.asyncutils import run_coro_as_sync

    async def drain() -> None:
        try:
            result = APILogWorker.instance().drain()
            if inspect.isawaitable(result):
                await result
        except RuntimeError:  # the worker never started
            pass
        result = EventsWorker.drain_all()
        if inspect.isawaitable(result):
            await result

    run_coro_as_sync(drain())


def _stop(server) -> None:
    server.stop()


def flow_runs_since(since) -> list[dict]:
    """Return the flow runs started since ``since`` as the Prefect API reports them: name, flow,
    state, tags and the keys of their artifacts, in start order."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterStartTime

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(start_time=FlowRunFilterStartTime(after_=since))
        )
        flows = {f.id: f.name for f in client.read_flows()}
        artifacts = client.read_artifacts()
    keys: dict[str, list[str]] = {}
    for a in artifacts:
        if a.flow_run_id and a.key:
            keys.setdefault(str(a.flow_run_id), []).append(a.key)
    return [
        {
            "name": r.name,
            "flow": flows.get(r.flow_id, ""),
            "state": r.state.name if r.state else "",
            "tags": sorted(r.tags),
            "artifacts": sorted(keys.get(str(r.id), [])),
        }
        for r in sorted(runs, key=lambda r: r.start_time or since)
    ]
