"""The platform clock: wall time by default, a simulated source when plugged in (demo history)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from copytrade import clock

WALL = 1_760_000_000.0  # a fixed wall-clock reading, so the conversions are exact


def test_wall_clock_by_default(monkeypatch) -> None:
    before = datetime.now(UTC)
    assert before <= clock.now() <= datetime.now(UTC)
    monkeypatch.setattr(clock.time, "time", lambda: WALL)
    assert clock.at_wall(WALL - 0.25) == datetime.fromtimestamp(WALL - 0.25, UTC)


def test_simulated_clock_keeps_wall_distances_for_hot_path_stamps(monkeypatch) -> None:
    simulated = datetime(2025, 2, 24, 12, 0, tzinfo=UTC)
    monkeypatch.setattr(clock.time, "time", lambda: WALL)
    with clock.simulated(lambda: simulated):
        assert clock.now() == simulated
        # an order stamped with time.time() 250 ms before now is 250 ms before simulated now
        assert clock.at_wall(WALL - 0.25) == simulated - timedelta(milliseconds=250)
    assert clock.now().year >= 2026  # restored on exit
