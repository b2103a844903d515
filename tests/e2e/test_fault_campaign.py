"""A fault campaign run as an operator would (issue 11; R-IN-3, R-COPY-6/7/11, R-X-4).

PostgreSQL ledger; the paper exchange in its own process (``copytrade paper serve``); a futures
leader replaying 320 of the real lead trader's fills (``copytrade paper leader-bot``); 30
followers; ``copytrade engine run`` as a subprocess. During the replay: every fault kind
``copytrade paper fault`` offers, 5 × ``kill -9`` of the engine (3 while orders are in flight),
503s on the leader's ``userTrades`` while the engine restarts, one database session dropped with
``pg_terminate_backend``. Seeded and bounded (≈ 3–5 min on the shared 2-core machine). The
machinery is ``tests/support/campaign.py``; ``benchmarks/fault_campaign.py`` runs a longer one.
"""

from __future__ import annotations

import pytest

from tests.support.campaign import FAULT_KINDS, CampaignConfig, run_campaign

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def test_fault_campaign_loses_no_leader_fill_and_keeps_followers_proportional_R_IN_3(
    pg_url, pg_server_url, shared_data, tmp_path
):
    outcome = run_campaign(
        CampaignConfig(pg_url, pg_server_url, tmp_path, fills=320, followers=30, kills=5)
    )
    figures, problems = outcome.figures, outcome.problems
    # the campaign happened as planned
    assert figures["leader_fills"] >= 300, figures
    # three of the five kills wait for orders in flight; at least one must land mid-dispatch
    assert figures["kills"] == 5 and figures["kills_mid_dispatch"] >= 1, figures
    assert figures["db_sessions_dropped"] == 1, figures
    assert set(FAULT_KINDS) <= set(figures["faults"]), figures
    # 0 lost leader fills (compared with the exchange's trade list), nothing invented
    assert problems["lost_leader_fills"] == [], problems["lost_leader_fills"][:10]
    assert problems["fills_not_on_exchange"] == []
    assert problems["quarantined_not_duplicate"] == []  # late fills are stored, not quarantined
    # 0 duplicate client order ids on the exchange; every exchange order is a recorded intent
    assert problems["duplicate_client_ids"] == [], problems["duplicate_client_ids"][:5]
    assert problems["orders_not_recorded"] == [], problems["orders_not_recorded"][:5]
    # exactly one outcome (with a reason) per leader fill × copy × leg
    assert problems["not_one_outcome"] == [], problems["not_one_outcome"][:5]
    # every follower proportional to the leader within R-COPY-6 rounding, never the other side
    assert problems["not_proportional"] == [], problems["not_proportional"][:3]
    # the operator's checks are clean and no secret reached the engine's log
    assert problems["reconcile"] == [] and figures["reconcile_exit"] == 0
    assert problems["validate"] == [] and figures["validate_exit"] == 0
    assert problems["secrets_in_log"] == []
    assert outcome.passed
