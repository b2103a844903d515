"""Automatic garbage collection is held while a leader fill is on its way out (copy latency)."""

from __future__ import annotations

import gc

from copytrade.engine.gcpause import GcPause


def test_holds_nest_across_portfolios_and_restore_the_collector():
    assert gc.isenabled()
    first, second = GcPause(), GcPause()
    first.hold()
    second.hold()
    first.release()
    first.release()  # idempotent: one hold, one release
    assert not gc.isenabled()  # the second portfolio's fill is still on its way out
    second.release()
    assert gc.isenabled()


def test_a_collector_disabled_before_stays_disabled():
    gc.disable()
    try:
        pause = GcPause()
        pause.hold()
        pause.release()
        assert not gc.isenabled()
    finally:
        gc.enable()
