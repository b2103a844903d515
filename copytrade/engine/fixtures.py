"""Build a small platform world (persons, accounts, a lead portfolio, funded copies) for tests,
the demo and the benchmark. Funding goes through the ledger as the copies service does:
external:deposits → person:<id>:spot → follower:<copy>:cash."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from sqlalchemy.orm import Session

from copytrade.domain.markets import Market
from copytrade.ledger import Ledger, Leg, TransferSpec
from models import Copy, ExchangeAccount, LeadPortfolio, Person

_counter = iter(range(1, 10**9))


@dataclass
class World:
    portfolio_id: int
    leader_account_id: int
    copy_ids: list[int] = field(default_factory=list)
    copy_accounts: dict[int, int] = field(default_factory=dict)  # copy id → account id


def load_reference_markets(data_dir: Path) -> dict[str, dict[str, Market]]:
    """Return ccxt's static Binance markets from the reference data, by kind and exchange id."""
    raw = json.loads((data_dir / "exchange" / "binance-markets.json").read_text())
    out: dict[str, dict[str, Market]] = {"spot": {}, "futures": {}}
    for entry in raw.values():
        if entry.get("spot"):
            m = Market.from_exchange_info(entry["info"], "spot")
            out["spot"][m.symbol] = m
        elif entry.get("linear") and entry.get("swap"):
            m = Market.from_exchange_info(entry["info"], "futures")
            out["futures"][m.symbol] = m
    return out


def make_world(
    session: Session,
    *,
    mode: str = "futures",
    capital: Decimal = Decimal("10000"),
    copies: list[dict] | None = None,
    venue: str = "paper",
    account_ids: list[int] | None = None,
) -> World:
    """Create a leader with a portfolio and one funded copy per settings dict (in one transaction)."""
    tag = next(_counter)
    leader = Person(handle=f"leader-{tag}-{datetime.now(UTC).timestamp()}")
    session.add(leader)
    session.flush()
    leader_acc = ExchangeAccount(
        person_id=leader.id,
        venue=venue,
        market=mode,
        api_key_id=f"lead-{tag}-{leader.id}",
        credentials_ref="env:NONE",
    )
    session.add(leader_acc)
    session.flush()
    portfolio = LeadPortfolio(
        leader_person_id=leader.id,
        mode=mode,
        nickname=f"leader {tag}",
        profit_share_ratio=Decimal("0.1"),
        capital=capital,
        follower_cap=300 if mode == "spot" else 200,
        agreement_accepted_at=datetime.now(UTC),
        exchange_account_id=leader_acc.id,
    )
    session.add(portfolio)
    session.flush()
    world = World(portfolio.id, leader_acc.id)
    ledger = Ledger(session)
    transfers = []
    for n, settings in enumerate(copies or []):
        settings = dict(settings)
        allocation = Decimal(settings.pop("allocation", "1000"))
        follower = Person(handle=f"follower-{tag}-{n}-{leader.id}")
        session.add(follower)
        session.flush()
        acc = ExchangeAccount(
            person_id=follower.id,
            venue=venue,
            market=mode,
            api_key_id=f"f-{tag}-{n}-{follower.id}",
            credentials_ref="env:NONE",
        )
        session.add(acc)
        session.flush()
        copy = Copy(
            portfolio_id=portfolio.id,
            follower_person_id=follower.id,
            exchange_account_id=acc.id,
            allocation=allocation,
            **settings,
        )
        session.add(copy)
        session.flush()
        world.copy_ids.append(copy.id)
        world.copy_accounts[copy.id] = acc.id
        transfers.append(
            TransferSpec(
                key=f"deposit:{follower.id}",
                code="deposit",
                legs=(
                    Leg("external:deposits", "USDT", -allocation),
                    Leg(f"person:{follower.id}:spot", "USDT", allocation),
                ),
            )
        )
        transfers.append(
            TransferSpec(
                key=f"copy_allocation:{copy.id}",
                code="copy_allocation",
                legs=(
                    Leg(f"person:{follower.id}:spot", "USDT", -allocation),
                    Leg(f"follower:{copy.id}:cash", "USDT", allocation),
                ),
            )
        )
    if transfers:
        ledger.post_many(transfers)
    return world
