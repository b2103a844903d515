"""The local stack behind `copytrade up`: Prefect server, a process worker, the paper exchange,
leader bots and the deployments of prefect.yaml. `copytrade down` stops what `up` started.

Every process runs in its own session with its output in ``var/run/<name>.log``; their pids are in
``var/run/stack.json`` so that ``down`` stops exactly what ``up`` started, and nothing else.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from copytrade.config import PROJECT_ROOT, get_settings

WORK_POOL = "copytrade-process"


@dataclass
class Stack:
    """Where the stack keeps its state, and how to reach it."""

    home: Path
    prefect_port: int = 4200
    paper_port: int = field(default_factory=lambda: get_settings().paper_port)

    @property
    def run_dir(self) -> Path:
        return self.home / "run"

    @property
    def state_file(self) -> Path:
        return self.run_dir / "stack.json"

    @property
    def prefect_api_url(self) -> str:
        return f"http://127.0.0.1:{self.prefect_port}/api"

    @property
    def prefect_ui_url(self) -> str:
        return f"http://127.0.0.1:{self.prefect_port}"

    def env(self) -> dict[str, str]:
        """Return the environment every process of the stack runs with."""
        env = dict(os.environ)
        env.update(
            PREFECT_API_URL=self.prefect_api_url,
            PREFECT_HOME=str(self.home / "prefect"),
            COPYTRADE_HOME=str(self.home),
            COPYTRADE_PROJECT_DIR=str(PROJECT_ROOT),
            COPYTRADE_PAPER_PORT=str(self.paper_port),
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            PREFECT_LOGGING_LEVEL=env.get("PREFECT_LOGGING_LEVEL", "INFO"),
        )
        return env

    def read_state(self) -> dict[str, int]:
        try:
            return json.loads(self.state_file.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def write_state(self, state: dict[str, int]) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.state_file.write_text(json.dumps(state, indent=2))


def bin_path(name: str) -> str:
    """Return the path of a console script installed beside this interpreter."""
    candidate = Path(sys.executable).with_name(name)
    return str(candidate) if candidate.exists() else name


def start_process(stack: Stack, name: str, argv: Sequence[str], state: dict[str, int]) -> int:
    """Start ``argv`` in its own session, log to var/run/<name>.log, remember its pid."""
    stack.run_dir.mkdir(parents=True, exist_ok=True)
    log = (stack.run_dir / f"{name}.log").open("ab")
    proc = subprocess.Popen(
        list(argv),
        cwd=PROJECT_ROOT,
        env=stack.env(),
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    state[name] = proc.pid
    stack.write_state(state)
    return proc.pid


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise TimeoutError(f"{what} did not come up within {timeout:.0f} s")


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - loopback only
            return resp.status < 500
    except OSError:
        return False


def run(stack: Stack, argv: Sequence[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(argv), cwd=PROJECT_ROOT, env=stack.env(), capture_output=True, text=True, check=check
    )


def start_prefect_server(stack: Stack, state: dict[str, int]) -> None:
    if http_ok(f"{stack.prefect_api_url}/health"):
        return
    start_process(
        stack,
        "prefect-server",
        [
            bin_path("prefect"),
            "server",
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(stack.prefect_port),
        ],
        state,
    )
    wait_until(lambda: http_ok(f"{stack.prefect_api_url}/health"), 120, "Prefect server")


def ensure_work_pool(stack: Stack) -> None:
    result = run(stack, [bin_path("prefect"), "work-pool", "inspect", WORK_POOL], check=False)
    if result.returncode != 0:
        run(stack, [bin_path("prefect"), "work-pool", "create", WORK_POOL, "--type", "process"])


def deploy_all(stack: Stack) -> str:
    result = run(stack, [bin_path("prefect"), "--no-prompt", "deploy", "--all"], check=False)
    if result.returncode != 0:
        raise RuntimeError(
            f"prefect deploy failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
        )
    return result.stdout


def stop_all(stack: Stack, timeout: float = 15) -> list[str]:
    """Stop every process `up` started (SIGTERM, then SIGKILL after ``timeout``); return their names."""
    state = stack.read_state()
    stopped = []
    for name, pid in reversed(list(state.items())):
        if not alive(pid):
            continue
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
        stopped.append(name)
    deadline = time.monotonic() + timeout
    for pid in state.values():
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
    if stack.state_file.exists():
        stack.state_file.unlink()
    return stopped
