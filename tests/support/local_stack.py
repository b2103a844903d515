"""A `copytrade up` stack for end-to-end tests: free ports, a temporary home, its environment."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from copytrade.config import PROJECT_ROOT
from copytrade.ops.stack import Stack


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def local_stack(home: Path, ledger_url: str) -> tuple[Stack, dict[str, str]]:
    """Return a stack on free ports under ``home`` and the environment its commands run with
    (ledger, warehouse and home there; this checkout importable; no inherited Prefect API)."""
    env = dict(os.environ)
    env.update(
        COPYTRADE_HOME=str(home),
        COPYTRADE_DATABASE_URL=ledger_url,
        COPYTRADE_WAREHOUSE_PATH=str(home / "warehouse.duckdb"),
        PYTHONPATH=os.pathsep.join(
            [str(PROJECT_ROOT), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
        ),
    )
    env.pop("PREFECT_API_URL", None)
    stack = Stack(
        home=home,
        project_dir=Path(env.get("COPYTRADE_PROJECT_DIR") or PROJECT_ROOT),
        prefect_port=free_port(),
        paper_port=free_port(),
        ledger_url=ledger_url,
    )
    return stack, env
