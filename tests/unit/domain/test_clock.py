"""The platform clock: wall time by default, a simulated source when plugged in (demo history)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from copytrade import clock


def test_wall_clock_by_default() -> None:
    before = datetime.now(UTC)
    assert before <= clock.now() <= datetime.now(UTC)
    stamp = time.time()
    assert clock.at_wall(stamp) == datetime.fromtimestamp(stamp, UTC)


def test_simulated_clock_keeps_wall_distances_for_hot_path_stamps() -> None:
    simulated = datetime(2025, 2, 24, 12, 0, tzinfo=UTC)
    stamp = time.time() - 0.25  # an order sent 250 ms ago, stamped with time.time()
    with clock.simulated(lambda: simulated):
        assert clock.now() == simulated
        sent = clock.at_wall(stamp)
        assert timedelta(seconds=0.2) < simulated - sent < timedelta(seconds=1)
    assert clock.now().year >= 2026  # restored on exit
