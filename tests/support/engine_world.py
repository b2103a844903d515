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


def _person_with_account(
    session: Session, handle: str, key_prefix: str, venue: str, mode: str
) -> tuple[Person, ExchangeAccount]:
    """A person and their exchange account (API key id ``<key_prefix>-<person id>``)."""
    person = Person(handle=handle)
    session.add(person)
    session.flush()
    account = ExchangeAccount(
        person_id=person.id,
        venue=venue,
        market=mode,
        api_key_id=f"{key_prefix}-{person.id}",
        credentials_ref="env:NONE",
    )
    session.add(account)
    session.flush()
    return person, account


def make_world(
    session: Session,
    *,
    mode: str = "futures",
    capital: Decimal = Decimal("10000"),
    copies: list[dict] | None = None,
    venue: str = "paper",
) -> World:
    """Create a leader with a portfolio and one funded copy per settings dict (in one transaction)."""
    tag = next(_counter)
    leader, leader_acc = _person_with_account(
        session, f"leader-{tag}-{datetime.now(UTC).timestamp()}", f"lead-{tag}", venue, mode
    )
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
        follower, acc = _person_with_account(
            session, f"follower-{tag}-{n}-{leader.id}", f"f-{tag}-{n}", venue, mode
        )
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


@dataclass
class PaperWorld:
    """A world whose accounts exist on a paper exchange; ``secrets`` maps credentials_ref → secret."""

    world: World
    secrets: dict[str, str]
    leader_key: str
    leader_secret: str
    paper_ids: dict[int, str]  # exchange account id → paper account id


def make_paper_world(
    session_maker,
    admin,
    *,
    mode: str = "futures",
    capital: Decimal = Decimal("10000"),
    copies: list[dict],
    leader_funds: Decimal = Decimal("100000"),
    balances: list[Decimal | None] | None = None,
) -> PaperWorld:
    """Create the world in the database and one paper account per exchange account.

    ``balances[i]`` funds copy i's paper account (default: its allocation), so a short balance
    on the exchange can be tested; secrets are referenced as ``env:CT_SECRET_<account id>``.
    """
    wallet = "futures" if mode == "futures" else "spot"
    lead = admin.create_account("leader", **{wallet: {"USDT": str(leader_funds)}})
    with session_maker() as s, s.begin():
        world = make_world(s, mode=mode, capital=capital, copies=copies)
        accounts = {a.id: a for a in s.query(ExchangeAccount).all()}
        secrets: dict[str, str] = {}
        paper_ids: dict[int, str] = {}
        la = accounts[world.leader_account_id]
        la.api_key_id, la.credentials_ref = lead.api_key, f"env:CT_SECRET_{la.id}"
        secrets[la.credentials_ref] = lead.api_secret
        paper_ids[la.id] = lead.account_id
        for n, copy_id in enumerate(world.copy_ids):
            acc = accounts[world.copy_accounts[copy_id]]
            funds = (balances[n] if balances and balances[n] is not None else None) or Decimal(
                str(copies[n].get("allocation", "1000"))
            )
            pa = admin.create_account(f"copy-{copy_id}", **{wallet: {"USDT": str(funds)}})
            acc.api_key_id, acc.credentials_ref = pa.api_key, f"env:CT_SECRET_{acc.id}"
            secrets[acc.credentials_ref] = pa.api_secret
            paper_ids[acc.id] = pa.account_id
    return PaperWorld(world, secrets, lead.api_key, lead.api_secret, paper_ids)


def real_leader_rows(
    data_dir: Path, symbols: tuple[str, ...] = ("1000PEPEUSDT", "ONDOUSDT")
) -> list:
    """Return the real lead trader's fills of ``symbols`` in time order (duplicates dropped)."""
    from copytrade.engine.importer import read_fills

    kept, _, _ = read_fills(
        data_dir / "leaders" / "binance-lead-trader-fills-2025-01-27_2025-03-21.csv"
    )
    return [r for r in kept if r.trade.symbol in symbols]


async def replay_leader(bot, admin, rows, *, prefix: str = "lead", pause: float = 0.0) -> list:
    """Place the leader's orders on the paper exchange at each fill's time (clock jumped there).

    Closes never exceed what the paper leader holds (the file starts with positions opened
    before it). Returns the order states.
    """
    import asyncio

    from copytrade.exchange.protocol import OrderRequest

    held: dict[str, Decimal] = {}
    states = []
    for n, row in enumerate(rows):
        t = row.trade
        qty = t.quantity
        if t.side == "sell":
            qty = min(qty, held.get(t.symbol, Decimal(0)))
            if qty <= 0:
                continue
        admin.set_clock(time=t.traded_at.strftime("%Y-%m-%dT%H:%M:%SZ"), speed=0)
        state = await bot.place_order(
            OrderRequest(t.symbol, t.side, qty, f"{prefix}-{n}", reduce_only=t.side == "sell")
        )
        held[t.symbol] = held.get(t.symbol, Decimal(0)) + (
            state.filled_quantity if t.side == "buy" else -state.filled_quantity
        )
        states.append(state)
        if pause:
            await asyncio.sleep(pause)
    return states
