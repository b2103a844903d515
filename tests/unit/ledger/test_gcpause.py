"""Automatic garbage collection is held while a leader fill is on its way out and during bulk steps."""

from __future__ import annotations

import gc

from copytrade.gcpause import GcPause, paused_gc


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


def test_a_bulk_step_inside_a_held_fan_out_leaves_the_hold_in_place():
    """The ledger's bulk steps and the engine's fan-out share one helper: a bulk step that ends
    while a leader fill is still on its way out does not switch collection back on."""
    hold = GcPause()
    hold.hold()
    with paused_gc():
        assert not gc.isenabled()
    assert not gc.isenabled()
    hold.release()
    assert gc.isenabled()


def test_holds_from_the_recording_thread_and_the_loop_restore_the_collector():
    """The engine records on a worker thread (the ledger's ``paused_gc``) while its event loop
    holds too: concurrent holds and releases never lose a count."""
    import threading

    assert gc.isenabled()
    start = threading.Barrier(4)

    def churn():
        start.wait()
        for _ in range(20_000):
            with paused_gc():
                pass

    threads = [threading.Thread(target=churn) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert gc.isenabled() and GcPause._holds == 0
