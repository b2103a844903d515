"""The leader bot's paper account behind `copytrade up`: created once with a key pair kept under
<home>/run (mode 0600), re-created with the same keys on a restarted paper exchange (which keeps
accounts in memory), so a lead portfolio linked to that key stays valid."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from copytrade.config import get_settings
from copytrade.ops.stack import LEADER_BOT_DEPOSIT, Stack, leader_bot_account
from tests.support.paper_exchange import TEST_ADMIN_TOKEN, run_paper_exchange


@pytest.fixture(autouse=True)
def admin_token(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("COPYTRADE_PAPER_ADMIN_TOKEN", TEST_ADMIN_TOKEN)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def _stack(home: Path, base_url: str) -> Stack:
    return Stack(home=home, prefect_port=9, paper_port=urlsplit(base_url).port)


def test_leader_bot_account_is_created_once_and_kept_private(
    tmp_path: Path, shared_data: Path
) -> None:
    with run_paper_exchange(data_dir=shared_data) as paper:
        stack = _stack(tmp_path, paper.base_url)
        path = leader_bot_account(stack)
        again = leader_bot_account(stack)
        creds = json.loads(path.read_text())
        assert again == path
        listed = httpx.get(
            f"{paper.base_url}/admin/accounts", headers={"X-Admin-Token": TEST_ADMIN_TOKEN}
        ).json()["accounts"]
        account = paper.admin.account(creds["account_id"])

    assert [a["name"] for a in listed] == ["leader-bot"], "a second call must not add an account"
    assert account["api_key"] == creds["api_key"]
    assert "api_secret" not in account
    assert Decimal(account["futures"]["USDT"]) == Decimal(LEADER_BOT_DEPOSIT)
    secret = tmp_path / "run" / "leader-bot.secret"
    assert secret.read_text() == creds["api_secret"]
    for file in (path, secret):
        assert stat.S_IMODE(file.stat().st_mode) == 0o600, file


def test_restarted_paper_exchange_gets_the_same_keys_back(
    tmp_path: Path, shared_data: Path
) -> None:
    with run_paper_exchange(data_dir=shared_data) as paper:
        first = json.loads(leader_bot_account(_stack(tmp_path, paper.base_url)).read_text())
    with run_paper_exchange(data_dir=shared_data) as restarted:
        second = json.loads(leader_bot_account(_stack(tmp_path, restarted.base_url)).read_text())
        account = restarted.admin.account(second["account_id"])
    assert (second["api_key"], second["api_secret"]) == (first["api_key"], first["api_secret"])
    assert account["name"] == "leader-bot"
