"""The dbt project as analysts expect it: every mart has a dbt unit test (the copy side included)
and the marts' readers are declared as exposures."""

from __future__ import annotations

from pathlib import Path

import yaml

from copytrade.analytics.warehouse import DBT_PROJECT

MODELS = DBT_PROJECT / "models"


def _yml(path: Path) -> dict:
    return yaml.safe_load(path.read_text()) or {}


def test_every_mart_has_a_unit_test():
    marts = {p.stem for p in (MODELS / "marts").glob("*.sql")}
    tested = {
        test["model"] for path in MODELS.rglob("*.yml") for test in _yml(path).get("unit_tests", [])
    }
    assert marts - tested == set()
    assert {"fct_copy_daily_equity", "fct_copy_daily_returns", "fct_copy_outcomes"} <= tested


def test_exposures_declare_the_leaderboard_reports_and_analysts():
    exposures = {e["name"]: e for e in _yml(MODELS / "exposures.yml")["exposures"]}
    assert set(exposures) == {"leaderboard", "leader_reports", "analysts_queries"}
    assert "ref('leaderboard')" in exposures["leaderboard"]["depends_on"]
    marts = {p.stem for p in (MODELS / "marts").glob("*.sql")}
    read = {
        r.removeprefix("ref('").removesuffix("')")
        for e in exposures.values()
        for r in e["depends_on"]
    }
    assert marts - read == set()  # every mart has a declared reader
