"""Start, recognise and stop the local stack's processes (Linux, via /proc).

A process is remembered by its pid *and* its start time (field 22 of ``/proc/<pid>/stat``), so a
pid that the kernel has since handed to an unrelated program is never mistaken for ours: ``down``
stops what ``up`` started, and only that.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class ProcessRecord:
    """What ``up`` remembers about a process it started."""

    name: str
    pid: int
    start_ticks: int | None
    argv: tuple[str, ...]
    log: str

    def to_json(self) -> dict:
        return asdict(self) | {"argv": list(self.argv)}

    @classmethod
    def from_json(cls, data: Mapping) -> ProcessRecord:
        return cls(
            name=str(data["name"]),
            pid=int(data["pid"]),
            start_ticks=data.get("start_ticks"),
            argv=tuple(data.get("argv", ())),
            log=str(data.get("log", "")),
        )


def start_ticks(pid: int) -> int | None:
    """Return the process's start time in clock ticks since boot, or None if it does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) may contain spaces and parentheses: split after its last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[19])


def parent_pid(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return int(stat[stat.rindex(")") + 2 :].split()[1])


def is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    return stat[stat.rindex(")") + 2 :].split()[0] == "Z"


def is_running(record: ProcessRecord) -> bool:
    """Return True if the recorded process still runs (same pid and same start time)."""
    ticks = start_ticks(record.pid)
    if ticks is None or is_zombie(record.pid):
        return False
    return record.start_ticks is None or ticks == record.start_ticks


def descendants(pid: int) -> list[int]:
    """Return every live descendant of ``pid`` (children first), read from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        ppid = parent_pid(int(entry.name))
        if ppid is not None:
            children.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    frontier = [pid]
    while frontier:
        nxt = []
        for p in frontier:
            for child in children.get(p, []):
                found.append(child)
                nxt.append(child)
        frontier = nxt
    return found


def spawn(
    name: str,
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    log_dir: Path,
) -> ProcessRecord:
    """Start ``argv`` in a session of its own with its output appended to ``<log_dir>/<name>.log``."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=dict(env),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return ProcessRecord(name, proc.pid, start_ticks(proc.pid), tuple(argv), str(log_path))


def _signal(pid: int, sig: int) -> None:
    # Each started process leads its own session (start_new_session), so its group id is its pid.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def terminate(records: Iterable[ProcessRecord], timeout: float = 15.0) -> list[str]:
    """Stop the recorded processes and everything they spawned; return the names that were running.

    Descendants are collected before any signal is sent: flow runs of a Prefect process worker
    live in process groups of their own and would otherwise outlive their worker.
    """
    running = [r for r in records if is_running(r)]
    targets: list[tuple[int, int | None]] = []
    for record in running:
        targets.append((record.pid, record.start_ticks))
        targets.extend((child, start_ticks(child)) for child in descendants(record.pid))
    for pid, _ in targets:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for pid, ticks in targets:
        while _same(pid, ticks) and time.monotonic() < deadline:
            _reap(pid)
            time.sleep(0.1)
        if _same(pid, ticks):
            _signal(pid, signal.SIGKILL)
            kill_deadline = time.monotonic() + 5
            while _same(pid, ticks) and time.monotonic() < kill_deadline:
                _reap(pid)
                time.sleep(0.05)
        _reap(pid)
    return [r.name for r in running]


def _same(pid: int, ticks: int | None) -> bool:
    now = start_ticks(pid)
    return now is not None and now == ticks and not is_zombie(pid)


def _reap(pid: int) -> None:
    # Collect the exit status when the process is our own child (tests start the stack in-process).
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)
