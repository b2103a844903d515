"""`copytrade paper …` commands against a running paper exchange."""

from __future__ import annotations

import json
import stat

from typer.testing import CliRunner

from copytrade.cli import app


def test_help_lists_serve_and_leader_bot():
    result = CliRunner().invoke(app, ["paper", "--help"])
    assert result.exit_code == 0
    assert "serve" in result.output and "leader-bot" in result.output


def test_create_account_writes_the_secret_to_a_private_file_only(paper, tmp_path, monkeypatch):
    monkeypatch.setenv("COPYTRADE_PAPER_ADMIN_TOKEN", paper.admin_token)
    from copytrade.config import get_settings

    get_settings.cache_clear()
    try:
        file = tmp_path / "leader.json"
        result = CliRunner().invoke(
            app,
            [
                "paper",
                "create-account",
                "--spot",
                "USDT=1000",
                "--futures",
                "USDT=500",
                "--credentials-file",
                str(file),
                "--url",
                paper.base_url,
            ],
        )
        assert result.exit_code == 0, result.output
        creds = json.loads(file.read_text())
        assert creds["api_secret"] not in result.output
        assert stat.S_IMODE(file.stat().st_mode) == 0o600
        view = paper.admin.account(creds["account_id"])
        assert view["spot"]["USDT"]["free"] == "1000" and view["futures"]["USDT"] == "500"
        bad = CliRunner().invoke(
            app, ["paper", "create-account", "--spot", "USDT", "--url", paper.base_url]
        )
        assert bad.exit_code == 2 and "ASSET=AMOUNT" in bad.output
    finally:
        get_settings.cache_clear()


def test_unreachable_exchange_exits_3():
    result = CliRunner().invoke(app, ["paper", "create-account", "--url", "http://127.0.0.1:9"])
    assert result.exit_code == 3
