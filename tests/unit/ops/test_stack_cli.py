"""`copytrade up` / `copytrade down` without a running stack: help, idempotent down, and a busy
port refused with exit code 3 and a message naming it (nothing is started)."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from copytrade.cli import app
from copytrade.config import get_settings
from copytrade.ops.processes import spawn, terminate
from copytrade.ops.stack import Stack

runner = CliRunner()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("COPYTRADE_HOME", str(tmp_path / "var"))
    monkeypatch.setenv("COPYTRADE_DATABASE_URL", f"sqlite:///{tmp_path / 'var' / 'ledger.db'}")
    get_settings.cache_clear()
    yield tmp_path / "var"
    get_settings.cache_clear()


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A loopback port held by a listener that is not a Prefect server (it never answers)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        yield sock.getsockname()[1]


@pytest.mark.parametrize("command", ["up", "down"])
def test_help(command: str) -> None:
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0
    assert ("--port" in result.output) == (command == "up")


def test_down_with_nothing_running_exits_0(home: Path) -> None:
    first = runner.invoke(app, ["down"])
    second = runner.invoke(app, ["down"])
    assert first.exit_code == 0 and second.exit_code == 0
    assert "nothing was running" in second.output


def test_up_on_a_port_taken_by_something_else_exits_3(home: Path, busy_port: int) -> None:
    result = runner.invoke(app, ["up", "--port", str(busy_port), "--no-paper", "--no-engine"])
    assert result.exit_code == 3, result.output
    output = " ".join(result.output.split())  # rich wraps long lines
    assert f"port {busy_port} is taken" in output
    assert "not a Prefect server" in output
    assert Stack.from_settings().processes() == {}, "nothing may be started"
    # The ledger step ran before the refusal; a second `up` would find it migrated.
    assert (home / "ledger.db").exists()


def test_up_on_other_ports_than_the_running_stack_is_refused(home: Path) -> None:
    """A second stack on other ports would orphan the first one's processes: exit 2."""
    stack = Stack.from_settings(prefect_port=45001, paper_port=45002)
    record = spawn(
        "prefect-server",
        [sys.executable, "-c", "import time; time.sleep(60)"],
        cwd=home.parent,
        env=dict(os.environ),
        log_dir=stack.run_dir,
    )
    stack.remember(record)
    try:
        result = runner.invoke(app, ["up", "--port", "45003", "--no-paper", "--no-engine"])
        assert result.exit_code == 2, result.output
        output = " ".join(result.output.split())
        assert "--port: 45003 differs from the running stack's port 45001" in output
    finally:
        assert terminate([record], timeout=5) == ["prefect-server"]


def test_up_with_shards_on_a_sqlite_ledger_is_refused_and_starts_nothing(home: Path) -> None:
    """Shards need PostgreSQL: SQLite has one writer (exit 2, nothing started or migrated)."""
    result = runner.invoke(app, ["up", "--shards", "2", "--no-paper"])
    output = " ".join(result.output.split())
    assert result.exit_code == 2, output
    assert "--shards 2" in output and "PostgreSQL" in output
    assert Stack.from_settings().processes() == {}
    assert not (home / "ledger.db").exists()


def test_up_with_another_shard_count_than_the_running_stack_is_refused(home: Path) -> None:
    """Resharding is stop everything first: `up --shards M` beside running N shards exits 2."""
    stack = Stack.from_settings(shards=3)
    record = spawn(
        "worker",
        [sys.executable, "-c", "import time; time.sleep(60)"],
        cwd=home.parent,
        env=dict(os.environ),
        log_dir=stack.run_dir,
    )
    stack.remember(record)
    try:
        assert Stack.from_settings().shards == 3  # `up` without --shards keeps the layout
        result = runner.invoke(app, ["up", "--shards", "1", "--no-paper", "--no-engine"])
        assert result.exit_code == 2, result.output
        output = " ".join(result.output.split())
        assert "--shards: 1 differs from the running stack's shard count 3" in output
    finally:
        assert terminate([record], timeout=5) == ["worker"]
