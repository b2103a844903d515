"""`copytrade up` seeds a living platform: the leader bot as a futures lead portfolio, followers.

Without it a fresh stack copies nothing until an operator links a portfolio by hand. The seed
(skipped with ``--no-seed``) does, through the platform's own services (the rules apply as for
any user):

- ``botleader`` deposits 20,000 USDT and applies with a public futures portfolio "ReplayBot"
  (capital 10,000) linked to the leader bot's paper account (``api_key_id`` = the bot's key,
  ``credentials_ref`` = ``file:<home>/run/leader-bot.secret``);
- five followers with varied settings (``FOLLOWERS``: leverage, a stop-loss, a take-profit,
  fixed amount, a symbol list, a slippage limit), each with a paper futures account funded with
  its allocation, key pairs generated once and kept in ``<home>/run/seed-<handle>.secret``;
- when the spot leader bot runs too (``ops.stack.start_spot_leader_bot``): ``spotleader``
  applies with a public spot portfolio "CrossBot" (capital 10,000) linked to that bot's paper
  spot account, and ``SPOT_FOLLOWERS`` copy it from paper spot accounts.

Idempotent: the paper exchange keeps accounts in memory, so every ``up`` re-creates missing
paper accounts with the same keys; the platform rows are written once (a lead portfolio already
linked to the bot's key means seeded). The running engine picks the new portfolio and copies up
within a sweep (``engine/live_config.py``).
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import httpx
from sqlalchemy import select

from copytrade.config import get_settings
from copytrade.db import session_factory
from copytrade.domain.leaders import LeaderApplication
from copytrade.platform import copies, leaders, wallets
from copytrade.platform.accounts import link_account
from models import ExchangeAccount, LeadPortfolio

LEADER = "botleader"
LEADER_DEPOSIT = "20000"
APPLICATION = LeaderApplication(
    "futures",
    "ReplayBot",
    "The leader bot replaying the real Binance lead trader on the paper exchange",
    "10000",
    True,
)
SPOT_LEADER = "spotleader"
SPOT_APPLICATION = LeaderApplication(
    "spot",
    "CrossBot",
    "A moving-average cross on real ETH/BTC candles, ETHUSDT on the paper exchange",
    "10000",
    True,
)
# (handle, allocation USDT, copy settings): varied, as the demo's followers
FOLLOWERS: tuple[tuple[str, str, dict], ...] = (
    ("ada", "2000", {"leverage": 5}),
    ("bo", "1500", {"leverage": 10, "stop_loss_pct": "5"}),
    (
        "cy",
        "1000",
        {
            "leverage": 3,
            "take_profit_pct": "20",
            "below_min_policy": "round_up",
            "symbols": ["ONDOUSDT"],
        },
    ),
    ("di", "800", {"leverage": 4, "sizing_mode": "fixed_amount", "fixed_amount": "100"}),
    ("ed", "1200", {"leverage": 2, "symbols": ["ONDOUSDT"], "slippage_limit_pct": "1"}),
)
SPOT_FOLLOWERS: tuple[tuple[str, str, dict], ...] = (
    ("fay", "1500", {}),
    ("gus", "1000", {"below_min_policy": "round_up"}),
)


def _keys(run_dir: Path, name: str) -> tuple[dict, Path]:
    """The key pair of a seeded paper account, generated once and kept (mode 0600)."""
    path, secret_path = run_dir / f"{name}.json", run_dir / f"{name}.secret"
    try:
        creds = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        creds = {"api_key": secrets.token_hex(32), "api_secret": secrets.token_hex(32)}
    run_dir.mkdir(parents=True, exist_ok=True)
    for file, text in ((path, json.dumps(creds)), (secret_path, creds["api_secret"])):
        file.touch(mode=0o600, exist_ok=True)
        file.chmod(0o600)
        file.write_text(text)
    return creds, secret_path


def _paper_accounts(paper_url: str, wanted: dict[str, tuple[dict, str, str]]) -> None:
    """Create the paper accounts ``name → (keys, market, USDT)`` the exchange does not hold."""
    from copytrade.paper.admin_token import resolve

    token = resolve(get_settings())
    with httpx.Client(base_url=paper_url, headers={"X-Admin-Token": token}, timeout=10) as admin:
        listed = admin.get("/admin/accounts")
        listed.raise_for_status()
        known = {a["name"] for a in listed.json()["accounts"]}
        for name, (creds, market, funds) in wanted.items():
            if name in known:
                continue
            created = admin.post(
                "/admin/accounts",
                json={
                    "name": name,
                    market: {"USDT": funds},
                    "api_key": creds["api_key"],
                    "api_secret": creds["api_secret"],
                },
            )
            created.raise_for_status()


def seed(stack, leader_credentials: Path, spot_credentials: Path | None = None) -> str:
    """Seed the platform for ``stack`` (see the module docstring); return what was done."""
    done = [_seed_portfolio(stack, leader_credentials, LEADER, APPLICATION, FOLLOWERS)]
    if spot_credentials is not None:
        done.append(
            _seed_portfolio(stack, spot_credentials, SPOT_LEADER, SPOT_APPLICATION, SPOT_FOLLOWERS)
        )
    return "; ".join(done)


def _seed_portfolio(
    stack,
    leader_credentials: Path,
    leader: str,
    application: LeaderApplication,
    followers_spec: tuple[tuple[str, str, dict], ...],
) -> str:
    """Link one bot as a lead portfolio and start its followers, once."""
    market = application.mode
    bot = json.loads(leader_credentials.read_text())
    bot_secret = leader_credentials.with_suffix(".secret")
    followers = {
        handle: (*_keys(stack.run_dir, f"seed-{handle}"), allocation, settings)
        for handle, allocation, settings in followers_spec
    }
    _paper_accounts(
        stack.paper_url,
        {
            f"seed-{h}": (creds, market, allocation)
            for h, (creds, _, allocation, _) in followers.items()
        },
    )
    sessions = session_factory(stack.ledger_url)
    with sessions() as session, session.begin():
        linked = session.scalar(
            select(LeadPortfolio.id)
            .join(ExchangeAccount, ExchangeAccount.id == LeadPortfolio.exchange_account_id)
            .where(ExchangeAccount.api_key_id == bot["api_key"])
        )
        if linked is not None:
            return f"{application.nickname} already seeded (portfolio {linked})"
        wallets.deposit(session, leader, LEADER_DEPOSIT, key=f"seed-{leader}")
        portfolio = leaders.apply(session, leader, application)
        portfolio.exchange_account_id = link_account(
            session, portfolio.leader_person_id, market, bot["api_key"], f"file:{bot_secret}"
        ).id
        started = []
        for handle, (creds, secret_path, allocation, settings) in followers.items():
            wallets.deposit(session, handle, allocation, key=f"seed-{handle}")
            copy = copies.start(session, handle, portfolio.id, allocation, **settings)
            copy.exchange_account_id = link_account(
                session, copy.follower_person_id, market, creds["api_key"], f"file:{secret_path}"
            ).id
            started.append(copy.id)
        pid = portfolio.id
    return f"portfolio {pid} {application.nickname} ({market}) linked to its bot, copies {started}"
