"""Process bookkeeping of the local stack: `down` stops what `up` started, with its descendants,
and never signals a process that only reuses a recorded pid."""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
import time
from pathlib import Path

from copytrade.ops.processes import (
    ProcessRecord,
    descendants,
    is_running,
    spawn,
    start_ticks,
    terminate,
)

SLEEP = [sys.executable, "-c", "import time; time.sleep(120)"]
# A parent that starts a grandchild in a session of its own (as a Prefect process worker does
# with flow runs) and prints its pid.
SPAWNER = [
    sys.executable,
    "-c",
    "import subprocess, sys, time; "
    "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'], "
    "start_new_session=True); print(p.pid, flush=True); time.sleep(120)",
]


def _spawn(tmp_path: Path, name: str, argv: list[str]) -> ProcessRecord:
    return spawn(name, argv, cwd=tmp_path, env=dict(os.environ), log_dir=tmp_path)


def _wait(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_spawned_process_is_running_until_terminated(tmp_path: Path) -> None:
    record = _spawn(tmp_path, "sleeper", SLEEP)
    assert is_running(record)
    assert Path(record.log) == tmp_path / "sleeper.log"
    assert ProcessRecord.from_json(record.to_json()) == record

    assert terminate([record], timeout=5) == ["sleeper"]
    assert not is_running(record)
    assert terminate([record], timeout=5) == []  # idempotent: nothing left to stop


def test_a_reused_pid_is_not_ours_and_is_left_alone(tmp_path: Path) -> None:
    record = _spawn(tmp_path, "sleeper", SLEEP)
    impostor = dataclasses.replace(record, start_ticks=(record.start_ticks or 0) + 1)
    try:
        assert not is_running(impostor)
        assert terminate([impostor], timeout=1) == []
        assert is_running(record), "a process with another start time must not be signalled"
    finally:
        terminate([record], timeout=5)


def test_terminate_reaches_descendants_in_their_own_session(tmp_path: Path) -> None:
    record = _spawn(tmp_path, "spawner", SPAWNER)
    log = Path(record.log)
    assert _wait(lambda: log.read_text().strip() != "")
    grandchild = int(log.read_text().split()[0])
    assert grandchild in descendants(record.pid)
    grandchild_ticks = start_ticks(grandchild)
    try:
        assert terminate([record], timeout=5) == ["spawner"]
        assert _wait(lambda: start_ticks(grandchild) != grandchild_ticks)
    finally:
        if start_ticks(grandchild) == grandchild_ticks:
            os.kill(grandchild, signal.SIGKILL)


def test_process_ignoring_sigterm_is_killed_after_the_timeout(tmp_path: Path) -> None:
    stubborn = [
        sys.executable,
        "-c",
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ready', flush=True); time.sleep(120)",
    ]
    record = _spawn(tmp_path, "stubborn", stubborn)
    assert _wait(lambda: "ready" in Path(record.log).read_text())
    assert terminate([record], timeout=0.5) == ["stubborn"]
    assert not is_running(record)
