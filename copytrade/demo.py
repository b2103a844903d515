"""The demo (first version): leaders and followers through the platform services, trades and fees
through the ledger, balances at the end.

It runs on a fresh SQLite database (``<home>/demo.db``, recreated on every run so the demo is
repeatable), migrated with the project's migrations, and uses exactly the services the CLI uses.
Later work grows it into the full story (paper exchange, copy engine, settlement, metrics).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from rich.console import Console
from rich.table import Table
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from copytrade import migrate
from copytrade.config import get_settings
from copytrade.db import make_engine
from copytrade.domain.errors import RuleViolation
from copytrade.domain.fees import leader_rebate, trading_fee
from copytrade.domain.leaders import LeaderApplication
from copytrade.domain.markets import Market
from copytrade.ledger import Ledger, Leg
from copytrade.ledger.accounts import (
    PLATFORM_FEES,
    exchange,
    follower_cash,
    leader_capital,
    leader_rebates,
)
from copytrade.platform import copies, leaders, wallets
from models import Copy, LeadPortfolio, Person

USDT = "USDT"
SPOT_FEE = Decimal("0.001")  # 0.1 % taker, Binance spot
FUTURES_FEE = Decimal("0.0004")  # 0.04 % taker, Binance USDⓈ-M

# BTC/USDT filters as Binance publishes them, used when the reference data folder is absent.
_BTCUSDT_FALLBACK = {
    "symbol": "BTCUSDT",
    "baseAsset": "BTC",
    "quoteAsset": "USDT",
    "filters": [
        {
            "filterType": "PRICE_FILTER",
            "minPrice": "0.01",
            "maxPrice": "1000000",
            "tickSize": "0.01",
        },
        {"filterType": "LOT_SIZE", "minQty": "0.00001", "maxQty": "9000", "stepSize": "0.00001"},
        {"filterType": "NOTIONAL", "minNotional": "5", "applyMinToMarket": True},
    ],
}


@dataclass
class DemoResult:
    """What the demo did, for callers and tests."""

    database_url: str
    portfolios: dict[str, int] = field(default_factory=dict)
    copies: dict[str, int] = field(default_factory=dict)
    refusals: list[str] = field(default_factory=list)
    transfers: int = 0
    chain_ok: bool = False


def demo_database(home: Path | None = None) -> tuple[Path, str]:
    """Return the demo database file and its URL (``<home>/demo.db``)."""
    path = (home or get_settings().home) / "demo.db"
    return path, f"sqlite:///{path}"


def reset_database(path: Path) -> None:
    """Remove the demo database and its WAL files so every run starts fresh."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def btc_usdt() -> Market:
    """Return the BTC/USDT spot market from the reference data (or Binance's published filters)."""
    source = get_settings().data_dir / "exchange" / "binance-markets.json"
    entry = _BTCUSDT_FALLBACK
    if source.is_file():
        entry = json.loads(source.read_text())["BTC/USDT"]["info"]
    return Market.from_exchange_info(entry, "spot", taker_fee=SPOT_FEE)


def run_demo(
    console: Console | None = None, home: Path | None = None, fast: bool = False
) -> DemoResult:
    """Run the demo end to end and print what happens; return a summary."""
    console = console or Console()
    path, url = demo_database(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    reset_database(path)
    migrate.upgrade(url)
    result = DemoResult(database_url=url)
    # An engine of its own, disposed at the end: a cached one would keep the previous run's
    # (deleted) file open and the next run would not start fresh.
    engine = make_engine(url)
    factory = sessionmaker(engine, expire_on_commit=False)

    @contextmanager
    def session_scope(_url: str = url) -> Iterator[Session]:
        with factory() as session, session.begin():
            yield session

    try:
        _story(console, url, result, session_scope)
    finally:
        engine.dispose()
    console.print(f"demo database: {path}")
    return result


def _story(console: Console, url: str, result: DemoResult, session_scope) -> None:

    def step(title: str) -> None:
        console.rule(f"[bold]{title}")

    def attempt(label: str, action: Callable[[object], object]) -> object | None:
        """Run one request in its own transaction, like a CLI command; show a refusal."""
        try:
            with session_scope(url) as session:
                return action(session)
        except RuleViolation as exc:
            console.print(f"  [red]refused[/] {label}: {exc}")
            result.refusals.append(f"{label}: {exc}")
            return None

    step("1. People deposit USDT into their spot wallets")
    funds = {
        "alice": "20000",
        "bruno": "30000",
        "chen": "10000",
        "dana": "1000",
        "erik": "5000",
        "fatima": "3000",
        "goran": "2500",
        "hana": "4000",
    }
    with session_scope(url) as session:
        for handle, amount in funds.items():
            wallets.deposit(session, handle, amount, key=f"demo-{handle}")
            console.print(f"  {handle}: +{amount} USDT")

    step("2. Leaders apply (R-LEAD-1..6)")
    applications = {
        "alice": LeaderApplication(
            "spot", "AlphaAlice", "BTC and ETH swing trades, spot only", "10000", True
        ),
        "bruno": LeaderApplication(
            "futures", "BrunoMomentum", "Trend following on USDⓈ-M perpetuals", "20000", True
        ),
        "chen": LeaderApplication(
            "futures",
            "ChenPrivate",
            "Invite-only mean reversion",
            "5000",
            True,
            visibility="private",
            profit_share_ratio="20%",
        ),
        "dana": LeaderApplication("spot", "DanaDips", "Buying dips", "200", True),
    }
    codes: dict[str, str | None] = {}
    for handle, application in applications.items():

        def open_portfolio(session, handle=handle, application=application):
            portfolio = leaders.apply(session, handle, application)
            return portfolio.id, portfolio.invitation_code

        opened = attempt(f"{handle} applies with {application.capital} USDT", open_portfolio)
        if opened:
            pid, code = opened
            result.portfolios[handle] = pid
            codes[handle] = code
            extra = f", invitation code {code}" if code else ""
            console.print(
                f"  [green]accepted[/] {handle}: portfolio {pid} {application.nickname!r} "
                f"({application.mode}, {application.visibility}){extra}"
            )

    step("3. Followers start copies with their own settings (R-COPY-2)")
    follows = [
        ("erik", "alice", "2000", {}, None),
        (
            "fatima",
            "alice",
            "1000",
            {"sizing_mode": "fixed_amount", "fixed_amount": "200", "stop_loss_pct": "20"},
            None,
        ),
        (
            "goran",
            "bruno",
            "2000",
            {"leverage": 3, "slippage_limit_pct": "1", "symbols": ["BTCUSDT", "ETH/USDT"]},
            None,
        ),
        ("hana", "chen", "1500", {"leverage": 5, "daily_loss_limit": "100"}, codes.get("chen")),
        ("erik", "chen", "500", {}, None),  # refused: private portfolio without the code
    ]
    for follower, leader, allocation, settings, code in follows:
        pid = result.portfolios.get(leader)
        if pid is None:
            continue

        def start_copy(
            session, follower=follower, pid=pid, allocation=allocation, settings=settings, code=code
        ):
            return copies.start(
                session, follower, pid, allocation, invitation_code=code, **settings
            ).id

        copy_id = attempt(f"{follower} copies {leader} with {allocation} USDT", start_copy)
        if copy_id:
            result.copies[f"{follower}->{leader}"] = copy_id
            console.print(
                f"  [green]started[/] copy {copy_id}: {follower} copies {leader} "
                f"with {allocation} USDT {settings or ''}"
            )

    step("4. Trades and fees through the ledger (R-FEE-1, R-FEE-2)")
    market = btc_usdt()
    with session_scope(url) as session:
        ledger = Ledger(session)
        _spot_round_trip(console, ledger, market, result)
        _futures_fees(console, ledger, result)

    step("5. Balances")
    with session_scope(url) as session:
        ledger = Ledger(session)
        _print_balances(console, ledger)
        report = ledger.verify_chain()
        result.transfers = report.checked
        result.chain_ok = report.ok
        console.print(
            f"hash chain {'intact' if report.ok else 'BROKEN'}: {report.checked} transfers (R-X-4)"
        )


def _spot_round_trip(console: Console, ledger: Ledger, market: Market, result: DemoResult) -> None:
    """Alice buys BTC and sells half; her followers' copies do the same, paying fees with rebates."""
    pid = result.portfolios.get("alice")
    if pid is None:
        return
    leader_equity = ledger.balance(leader_capital(pid), USDT)
    buy_price, sell_price = Decimal("65000.00"), Decimal("67000.00")
    leader_qty = market.round_amount(Decimal("0.05"))
    _fill(
        ledger,
        f"demo:leader:{pid}:buy",
        "leader_fill",
        leader_capital(pid),
        market,
        leader_qty,
        buy_price,
    )
    console.print(f"  leader alice buys {_d(leader_qty)} BTC at {_d(buy_price)}")

    positions: dict[int, Decimal] = {}
    for key, copy_id in result.copies.items():
        if not key.endswith("->alice"):
            continue
        cash = ledger.balance(follower_cash(copy_id), USDT)
        if key.startswith("fatima"):  # fixed amount: 200 USDT per opening order
            qty = market.round_amount(Decimal(200) / buy_price)
        else:  # fixed ratio: the follower's equity over the leader's
            qty = market.round_amount(leader_qty * cash / leader_equity)
        market.check_order(qty, buy_price)
        positions[copy_id] = qty
        _copied_fill(
            console, ledger, f"demo:copy:{copy_id}:buy", pid, copy_id, market, qty, buy_price
        )

    sell_qty = market.round_amount(leader_qty / 2)
    _fill(
        ledger,
        f"demo:leader:{pid}:sell",
        "leader_fill",
        leader_capital(pid),
        market,
        -sell_qty,
        sell_price,
    )
    console.print(
        f"  leader alice sells {_d(sell_qty)} BTC at {_d(sell_price)} (half her position)"
    )
    for copy_id, held in positions.items():
        qty = market.round_amount(
            held * sell_qty / leader_qty
        )  # same fraction of their own (R-COPY-4)
        _copied_fill(
            console, ledger, f"demo:copy:{copy_id}:sell", pid, copy_id, market, -qty, sell_price
        )


def _fill(
    ledger: Ledger, key: str, code: str, address: str, market: Market, qty: Decimal, price: Decimal
) -> Decimal:
    """Post a fill of ``qty`` (negative: sell) at ``price`` against the exchange; return the notional."""
    notional = abs(qty) * price
    sign = 1 if qty > 0 else -1
    venue = exchange("binance")
    ledger.transfer(
        key,
        code,
        [
            Leg(address, market.quote, -sign * notional),
            Leg(venue, market.quote, sign * notional),
            Leg(venue, market.base, -qty),
            Leg(address, market.base, qty),
        ],
        refs={"symbol": market.symbol, "price": str(price)},
    )
    return notional


def _copied_fill(
    console: Console,
    ledger: Ledger,
    key: str,
    portfolio_id: int,
    copy_id: int,
    market: Market,
    qty: Decimal,
    price: Decimal,
) -> None:
    notional = _fill(ledger, key, "copy_fill", follower_cash(copy_id), market, qty, price)
    fee, rebate = _fee_and_rebate(ledger, key, portfolio_id, copy_id, notional, market.taker_fee)
    side = "buys" if qty > 0 else "sells"
    console.print(
        f"  copy {copy_id} {side} {_d(abs(qty))} BTC = {_d(notional)} USDT; fee {_d(fee)} "
        f"({_d(market.taker_fee * 100)} %), leader rebate {_d(rebate)}"
    )


def _fee_and_rebate(
    ledger: Ledger, key: str, portfolio_id: int, copy_id: int, notional: Decimal, rate: Decimal
) -> tuple[Decimal, Decimal]:
    fee = trading_fee(notional, rate)
    rebate = leader_rebate(fee)
    ledger.transfer(
        f"{key}:fee",
        "trading_fee",
        [Leg(follower_cash(copy_id), USDT, -fee), Leg(PLATFORM_FEES, USDT, fee)],
    )
    if rebate:
        ledger.transfer(
            f"{key}:rebate",
            "fee_rebate",
            [Leg(PLATFORM_FEES, USDT, -rebate), Leg(leader_rebates(portfolio_id), USDT, rebate)],
        )
    return fee, rebate


def _futures_fees(console: Console, ledger: Ledger, result: DemoResult) -> None:
    """Futures copies open positions held at the exchange; the ledger records their fees and rebates."""
    for key, copy_id in result.copies.items():
        leader = key.split("->")[1]
        if leader not in ("bruno", "chen"):
            continue
        pid = result.portfolios[leader]
        notional = Decimal("1500")
        fee, rebate = _fee_and_rebate(
            ledger, f"demo:copy:{copy_id}:open", pid, copy_id, notional, FUTURES_FEE
        )
        console.print(
            f"  copy {copy_id} opens a {_d(notional)} USDT futures position; fee {_d(fee)} "
            f"({_d(FUTURES_FEE * 100)} %), leader rebate {_d(rebate)}"
        )


def _d(value: Decimal) -> str:
    return format(value.normalize(), ",f")


def _owners(session) -> dict[str, str]:
    """Label ledger addresses with who they belong to (handles and nicknames)."""
    labels: dict[str, str] = {}
    for pid, handle in session.execute(select(Person.id, Person.handle)):
        labels[f"person:{pid}:"] = handle
    for pid, nickname in session.execute(select(LeadPortfolio.id, LeadPortfolio.nickname)):
        labels[f"leader:{pid}:"] = nickname
    rows = session.execute(
        select(Copy.id, Person.handle, LeadPortfolio.nickname)
        .join(Person, Person.id == Copy.follower_person_id)
        .join(LeadPortfolio, LeadPortfolio.id == Copy.portfolio_id)
    )
    for cid, handle, nickname in rows:
        labels[f"follower:{cid}:"] = f"{handle} copying {nickname}"
    return labels


def _print_balances(console: Console, ledger: Ledger) -> None:
    owners = _owners(ledger.session)
    table = Table("account", "owner", "asset", "balance", title="Ledger balances")
    totals: dict[str, Decimal] = {}
    for row in ledger.balances():
        if not row.amount:
            continue
        totals[row.asset] = totals.get(row.asset, Decimal(0)) + row.amount
        owner = next((v for k, v in owners.items() if row.address.startswith(k)), "")
        table.add_row(row.address, owner, row.asset, _d(row.amount))
    console.print(table)
    check = ", ".join(
        f"{asset} {format(total.normalize(), 'f')}" for asset, total in totals.items()
    )
    console.print(f"sum of all balances per asset (double entry, R-LED-1): {check}")
