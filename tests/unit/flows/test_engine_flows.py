"""The engine's Prefect flows are thin and importable; the ingest report renders every count."""

from __future__ import annotations

from flows._secrets import prefect_secret
from flows.copy_engine import copy_engine
from flows.ingest_leader_trades import ingest_leader_trades, render


def test_flows_import_and_are_flows():
    assert copy_engine.name == "copy-engine"
    assert ingest_leader_trades.name == "ingest-leader-trades"


def test_ingest_report_renders_the_counts():
    text = render({"open_intents": 3, "adopted": 1, "backfilled": 7, "baselined": ["1:XRPUSDT@5"]})
    assert "| adopted | 1 |" in text and "| backfilled | 7 |" in text and "baselined" not in text


def test_non_prefect_references_are_left_to_copytrade():
    assert prefect_secret("env:SOMETHING") is None
