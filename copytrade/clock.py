"""The platform's notion of now: UTC wall-clock time, or a simulated clock plugged in for a while.

Everything the platform stamps (ledger transfers, rows' created/started/stopped times, order
acknowledgements, settlement runs) asks ``now()``. The demo plugs in the paper exchange's
simulated clock, so weeks of 2025 trades replayed in minutes are recorded on the days they
happened and daily metrics (R-MET-*) see those days. A module global, not a context variable:
the engine's tasks and Prefect's task threads must all see the same clock.

``COPYTRADE_CLOCK_OFFSET`` (seconds, read once at import) runs the wall clock that many seconds
ahead (or behind): every process of a local stack started with it lives on the same shifted
time, the paper exchange's timestamps included, so a Monday 00:00 UTC weekly cycle (R-SET-4) can
pass while a rehearsal runs (the stack test does). Never set it against a real exchange.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

_source: Callable[[], datetime] | None = None
OFFSET_VARIABLE = "COPYTRADE_CLOCK_OFFSET"


def _offset_from_env() -> timedelta:
    text = os.environ.get(OFFSET_VARIABLE, "").strip()
    try:
        return timedelta(seconds=float(text)) if text else timedelta(0)
    except ValueError:
        raise ValueError(f"{OFFSET_VARIABLE}: {text!r} is not a number of seconds") from None


_offset = _offset_from_env()


def offset() -> timedelta:
    """How far the wall clock is shifted (``COPYTRADE_CLOCK_OFFSET``; zero unless rehearsing)."""
    return _offset


def now() -> datetime:
    """Return the current time (time-zone aware, UTC)."""
    return _source() if _source is not None else datetime.now(UTC) + _offset


def at_wall(stamp: float) -> datetime:
    """Return the clock's time at the wall-clock instant ``stamp`` (``time.time()`` seconds).

    Hot paths take cheap ``time.time()`` stamps and convert them later; under a simulated clock
    the stamp keeps its distance from the present, so measured delays stay real.
    """
    if _source is None:
        return datetime.fromtimestamp(stamp, UTC) + _offset
    return _source() - timedelta(seconds=time.time() - stamp)


@contextmanager
def simulated(source: Callable[[], datetime]) -> Iterator[None]:
    """Use ``source`` (returning aware UTC datetimes) as the clock inside the ``with`` block."""
    global _source
    previous, _source = _source, source
    try:
        yield
    finally:
        _source = previous
