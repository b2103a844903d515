"""`copytrade up` seeds a living platform (issue 13 item 9): the leader bots linked as a futures
and a spot lead portfolio, with followers of varied settings, once, through the platform's rules."""

from __future__ import annotations

import json
from types import SimpleNamespace

from sqlalchemy import func, select

from copytrade import migrate
from copytrade.config import get_settings
from copytrade.db import session_factory
from copytrade.ops.seed import FOLLOWERS, SPOT_FOLLOWERS, seed
from models import Copy, ExchangeAccount, LeadPortfolio
from tests.support import paper_exchange as paper_testing


def test_seed_links_the_bot_and_starts_followers_once(tmp_path, monkeypatch):
    monkeypatch.setenv("COPYTRADE_PAPER_ADMIN_TOKEN", paper_testing.TEST_ADMIN_TOKEN)
    get_settings.cache_clear()
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    migrate.upgrade(url)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    bot = run_dir / "leader-bot.json"
    bot.write_text(json.dumps({"api_key": "k" * 64, "api_secret": "s" * 64}))
    bot.with_suffix(".secret").write_text("s" * 64)
    spot_bot = run_dir / "spot-leader-bot.json"
    spot_bot.write_text(json.dumps({"api_key": "p" * 64, "api_secret": "q" * 64}))
    spot_bot.with_suffix(".secret").write_text("q" * 64)
    try:
        with paper_testing.run_paper_exchange(speed=0) as paper:
            stack = SimpleNamespace(run_dir=run_dir, paper_url=paper.base_url, ledger_url=url)
            first = seed(stack, bot, spot_bot)
            again = seed(stack, bot, spot_bot)
            names = {a["name"] for a in paper.admin._http.get("/admin/accounts").json()["accounts"]}
    finally:
        get_settings.cache_clear()
    assert first.startswith("portfolio 1 ReplayBot (futures)") and "CrossBot (spot)" in first
    assert again.count("already seeded") == 2
    assert {f"seed-{h}" for h, _, _ in (*FOLLOWERS, *SPOT_FOLLOWERS)} <= names
    with session_factory(url)() as s:
        portfolio, spot = s.scalars(select(LeadPortfolio).order_by(LeadPortfolio.id)).all()
        leader = s.get(ExchangeAccount, portfolio.exchange_account_id)
        assert (portfolio.mode, portfolio.nickname) == ("futures", "ReplayBot")
        assert leader.api_key_id == "k" * 64 and leader.credentials_ref.startswith("file:")
        assert (spot.mode, spot.nickname) == ("spot", "CrossBot")
        assert s.get(ExchangeAccount, spot.exchange_account_id).market == "spot"
        assert s.scalar(select(func.count()).select_from(Copy)) == len(FOLLOWERS) + len(
            SPOT_FOLLOWERS
        )
        stops = s.scalars(select(Copy.stop_loss_pct).where(Copy.stop_loss_pct.is_not(None))).all()
        assert len(stops) == 1
        assert all(c.exchange_account_id for c in s.scalars(select(Copy)))
    for handle, _, _ in (*FOLLOWERS, *SPOT_FOLLOWERS):
        secret = run_dir / f"seed-{handle}.secret"
        assert secret.stat().st_mode & 0o777 == 0o600
