"""The platform's notion of now: UTC wall-clock time, or a simulated clock plugged in for a while.

Everything the platform stamps (ledger transfers, rows' created/started/stopped times, order
acknowledgements, settlement runs) asks ``now()``. The demo plugs in the paper exchange's
simulated clock, so weeks of 2025 trades replayed in minutes are recorded on the days they
happened and daily metrics (R-MET-*) see those days. A module global, not a context variable:
the engine's tasks and Prefect's task threads must all see the same clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

_source: Callable[[], datetime] | None = None


def now() -> datetime:
    """Return the current time (time-zone aware, UTC)."""
    return _source() if _source is not None else datetime.now(UTC)


def at_wall(stamp: float) -> datetime:
    """Return the clock's time at the wall-clock instant ``stamp`` (``time.time()`` seconds).

    Hot paths take cheap ``time.time()`` stamps and convert them later; under a simulated clock
    the stamp keeps its distance from the present, so measured delays stay real.
    """
    if _source is None:
        return datetime.fromtimestamp(stamp, UTC)
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
