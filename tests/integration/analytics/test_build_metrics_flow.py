"""The `build_metrics` flow and the `copytrade metrics` / `leaders top` commands end to end."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

import models
from copytrade.config import get_settings
from copytrade.db import make_engine
from tests.support.synthetic import SyntheticConfig, generate


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """A ledger with a few synthetic leaders, and settings pointing at a fresh var/ folder."""
    tmp_path = tmp_path_factory.mktemp("flow")
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    engine = make_engine(url)
    models.Base.metadata.create_all(engine)
    generate(SyntheticConfig(leaders=8, days=10, fills=600, copy_share=0.3, seed=5)).write(engine)
    engine.dispose()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("COPYTRADE_HOME", str(tmp_path / "var"))
        patch.setenv("COPYTRADE_DATABASE_URL", url)
        patch.delenv("COPYTRADE_WAREHOUSE_PATH", raising=False)
        patch.delenv("COPYTRADE_DBT_TARGET", raising=False)
        get_settings.cache_clear()
        yield tmp_path
    get_settings.cache_clear()


@pytest.mark.slow
def test_build_metrics_flow_publishes_the_leaderboard_artifact_R_MET_4(home):
    from prefect.artifacts import Artifact
    from prefect.testing.utilities import prefect_test_harness

    from flows.build_metrics import build_metrics

    with prefect_test_harness(server_startup_timeout=180):
        result = build_metrics(period="all", limit=5, charts=2)
        artifact = Artifact.get("leaderboard")
        quality = Artifact.get("copy-quality")
        charts = [Artifact.get(key) for key in result["reports"]]
    assert result["extracted_rows"] > 0
    assert result["listed"] == 5
    assert result["unmarked"] == 0  # the synthetic ledger has a daily mark for every market
    assert "pass" in result["dbt"]
    assert artifact is not None and artifact.type == "table"
    assert quality is not None and quality.type == "table"
    # the top two leaders' charts (R-MET figures + equity/drawdown/monthly PNG) as artifacts
    assert len(charts) == 2 and all(c is not None and c.type == "markdown" for c in charts)
    assert all("data:image/png;base64," in c.data and "| PnL USD |" in c.data for c in charts)
    assert len(list((home / "var" / "reports").glob("leader-*.html"))) == 2
    assert (home / "var" / "warehouse.duckdb").exists()


def test_cli_build_then_top_sorted_and_refusals_R_IN_2(home):
    from copytrade.cli import app

    runner = CliRunner()
    built = runner.invoke(app, ["metrics", "build"])
    assert built.exit_code == 0, built.output
    assert "pass" in built.output
    top = runner.invoke(app, ["metrics", "top", "--period", "all", "--sort", "pnl", "--limit", "3"])
    assert top.exit_code == 0, top.output
    assert "Leaderboard all, by pnl" in top.output
    bad = runner.invoke(app, ["metrics", "top", "--period", "5d"])
    assert bad.exit_code == 2
    assert "period '5d'" in bad.output and "R-MET-1" in bad.output
    bad_sort = runner.invoke(app, ["metrics", "top", "--sort", "luck"])
    assert bad_sort.exit_code == 2 and "R-MET-4" in bad_sort.output


def test_leaders_top_registers_on_another_group(home):
    import typer

    from copytrade.analytics.leaderboard import top
    from copytrade.analytics.warehouse import Warehouse, build
    from copytrade.cli.metrics import register

    if not Warehouse.default().path.exists():
        assert build(Warehouse.default()).dbt.success
    leaders = typer.Typer()
    register(leaders)

    @leaders.callback()
    def _group() -> None:
        """Leaders."""

    result = CliRunner().invoke(leaders, ["top", "--period", "all", "--limit", "2"])
    assert result.exit_code == 0, result.output
    by_sharpe = top(Warehouse.default(), period="all", sort="sharpe", limit=50)
    assert [r["sharpe_rank"] for r in by_sharpe] == sorted(r["sharpe_rank"] for r in by_sharpe)
    by_mdd = top(Warehouse.default(), period="all", sort="mdd", limit=50)
    mdds = [r["mdd_pct"] for r in by_mdd if r["mdd_pct"] is not None]
    assert mdds == sorted(mdds)


def test_docs_generate_writes_the_site(home, tmp_path):
    from copytrade.cli import app

    runner = CliRunner()
    if not (home / "var" / "warehouse.duckdb").exists():
        assert runner.invoke(app, ["metrics", "build"]).exit_code == 0
    out = tmp_path / "site"
    result = runner.invoke(app, ["metrics", "docs", "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "index.html").exists() and (out / "catalog.json").exists()
