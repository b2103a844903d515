"""The demo: the whole platform story on the embedded default, in a few minutes.

On a fresh SQLite ledger (``<home>/demo.db``, recreated every run) migrated with the project's
migrations, with an in-process paper exchange (USDⓈ-M) whose simulated clock is the platform's
clock (``copytrade.clock``) for the whole story: people deposit, leaders apply through the platform
services (one refused), followers join with varied settings (one refused: private portfolio
without the code). One leader replays the real Binance lead trader's Feb–Mar 2025 fills on the
real 1000PEPE/ONDO candles, two leaders trade a moving-average cross on the real XRPUSDT candles
(2021, the exchange repeats the file along its clock), while the copy engine copies them; one
follower's tight stop-loss fires. Then, on Prefect (``demo.prefect_server``), the production
flows run: ``settle`` (weekly cycle, gated by its ``validate_ledger`` subflow) and
``build_metrics`` (DuckDB, dbt); and a summary is printed. docs/demo.md tells the why.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from copytrade import clock, migrate
from copytrade.config import get_settings
from copytrade.db import make_engine
from copytrade.domain.errors import RuleViolation
from copytrade.domain.leaders import LeaderApplication
from copytrade.ledger import Ledger
from copytrade.platform import copies, leaders, wallets
from copytrade.settlement.cycles import week_start
from models import (
    Copy,
    ExchangeAccount,
    FollowerFill,
    FollowerOrderIntent,
    LeaderFill,
    LeadPortfolio,
    SettlementPayout,
)

USDT = "USDT"
REPLAY_SYMBOLS = ("1000PEPEUSDT", "ONDOUSDT")
CROSS_SYMBOL = "XRPUSDT"
FILES = {  # candle file of every traded symbol, under market/futures/
    "1000PEPEUSDT": "1000PEPEUSDT-5m-2025.csv",
    "ONDOUSDT": "ONDOUSDT-5m-2025.csv",
    "XRPUSDT": "XRP_USDT_USDT-5m.csv",
}
CROSS_CANDLES = f"market/futures/{FILES[CROSS_SYMBOL]}"
PAPER_START = "2025-02-24T00:00:00Z"


@dataclass
class DemoResult:
    """What the demo did, for callers and tests."""

    database_url: str
    database_path: Path | None = None
    warehouse_path: Path | None = None
    portfolios: dict[str, int] = field(default_factory=dict)
    copies: dict[str, int] = field(default_factory=dict)
    refusals: list[str] = field(default_factory=list)
    leader_orders: dict[str, int] = field(default_factory=dict)
    stopped: dict[int, str] = field(default_factory=dict)  # copy id → stop reason
    stop_events: list[dict] = field(default_factory=list)  # trigger, threshold, result at the stop
    event_settlements: list[dict] = field(default_factory=list)  # settled when the stop happened
    validation_passed: bool = False
    settlement_status: str = ""
    dbt_ok: bool = False
    leaderboard: list[dict] = field(default_factory=list)
    transfers: int = 0
    chain_ok: bool = False
    seconds: dict[str, float] = field(default_factory=dict)
    prefect_home: Path | None = None
    flow_runs: list[dict] = field(default_factory=list)  # as the Prefect API reports them

    @property
    def ok(self) -> bool:
        return self.chain_ok and self.validation_passed and self.dbt_ok


def demo_database(home: Path | None = None) -> tuple[Path, str]:
    """Return the demo database file and its URL (``<home>/demo.db``)."""
    path = (home or get_settings().home) / "demo.db"
    return path, f"sqlite:///{path}"


def reset_database(path: Path) -> None:
    """Remove the demo database and its WAL files so every run starts fresh."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


@dataclass(frozen=True)
class Scale:
    """How much of the story to play: ``--fast`` for tests, the default for people."""

    replay_fills: int
    cross_trades: int
    followers_per_leader: int


FAST = Scale(replay_fills=30, cross_trades=4, followers_per_leader=3)
FULL = Scale(replay_fills=160, cross_trades=12, followers_per_leader=10)


def run_demo(
    console: Console | None = None, home: Path | None = None, fast: bool = False
) -> DemoResult:
    """Run the demo end to end and print what happens; return a summary."""
    console = console or Console()
    home = home or get_settings().home
    path, url = demo_database(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    reset_database(path)
    migrate.upgrade(url)
    result = DemoResult(database_url=url, database_path=path)
    # An engine of its own, disposed at the end: a cached one would keep the previous run's
    # (deleted) file open and the next run would not start fresh.
    engine = make_engine(url)
    factory = sessionmaker(engine, expire_on_commit=False)
    try:
        _Story(console, url, factory, result, home, FAST if fast else FULL).run()
    finally:
        engine.dispose()
    return result


class _Story:
    def __init__(self, console, url, factory, result, home, scale) -> None:
        self.console, self.url, self.factory = console, url, factory
        self.result, self.home, self.scale = result, home, scale
        self.data_dir = get_settings().data_dir
        self.codes: dict[str, str | None] = {}
        self.fills_copied = 0
        self.secrets: dict[str, str] = {}
        self.event_runs: list[asyncio.Future] = []

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self.factory() as session, session.begin():
            yield session

    def step(self, title: str) -> None:
        self.console.rule(f"[bold]{title}")

    def timed(self, name: str, started: float) -> None:
        self.result.seconds[name] = round(time.perf_counter() - started, 1)

    def attempt(self, label: str, action: Callable[[Session], object]) -> object | None:
        """Run one request in its own transaction, like a CLI command; show a refusal."""
        try:
            with self.session() as session:
                return action(session)
        except RuleViolation as exc:
            self.console.print(f"  [red]refused[/] {label}: {exc}")
            self.result.refusals.append(f"{label}: {exc}")
            return None

    def progress(self) -> Progress:
        return Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
            transient=False,
        )

    # -- the story ---------------------------------------------------------------------------

    def run(self) -> None:
        import secrets

        from copytrade.paper.server import serve_in_thread

        # Speed 1 between the jumps of the clock to each trade: copies trade (and are acknowledged)
        # moments after their leader, on the same simulated clock.
        with serve_in_thread(
            self.data_dir, secrets.token_urlsafe(32), start=PAPER_START, speed=1
        ) as paper:
            self.paper = paper
            exchange = paper.server.exchange
            exchange.simulated_timestamps = True
            # Everything recorded while the exchange runs carries its simulated time.
            with clock.simulated(lambda: _utc_ms(exchange.clock.now_ms())):
                started = time.perf_counter()
                self.sign_up()
                self.timed("sign_up", started)
                self.open_exchange_accounts()
                started = time.perf_counter()
                asyncio.run(self.trade())
                self.timed("trading", started)
                # The week passes: settle the cycle that closes on the next Monday 00:00 UTC, at
                # the exchange's prices of that moment.
                self.at = week_start(clock.now()) + timedelta(days=7)
                paper.admin.set_clock(time=self.at.strftime("%Y-%m-%dT%H:%M:%SZ"), speed=0)
                self.marks = self.last_prices()
                self.daily_marks = self.replayed_daily_bars(self.at.date())
        # After the exchange: the simulated clock goes on from that Monday at wall-clock pace.
        started_at, wall = self.at, time.monotonic()
        with clock.simulated(lambda: started_at + timedelta(seconds=time.monotonic() - wall)):
            self.on_prefect()
        self.summary()

    def on_prefect(self) -> None:
        """Run the production flows (settle, gated by validate_ledger; build_metrics) on Prefect."""
        from prefect import tags

        from demo.prefect_server import demo_prefect, flow_runs_since

        since = datetime.now(UTC)
        with ExitStack() as stack:
            with self.console.status("starting Prefect (server and database under the demo home)"):
                self.prefect = stack.enter_context(demo_prefect(self.home))
            self.result.prefect_home = self.prefect.prefect_home
            self.result.seconds["prefect_start"] = self.prefect.startup_seconds
            with tags("demo"):
                started = time.perf_counter()
                self.settle()
                self.timed("settlement", started)
                started = time.perf_counter()
                self.build_metrics()
                self.timed("metrics", started)
            self.result.flow_runs = flow_runs_since(since)

    def sign_up(self) -> None:
        self.step("1. Leaders apply (R-LEAD-1..6)")
        funds = {"pepe": "50000", "xena": "30000", "chen": "20000", "dana": "1000"}
        with self.session() as session:
            for handle, amount in funds.items():
                wallets.deposit(session, handle, amount, key=f"demo-{handle}")
        applications = {
            "pepe": LeaderApplication(
                "futures",
                "PepeReplay",
                "The real Binance lead trader's Feb–Mar 2025 fills",
                "2000",
                True,
            ),
            "xena": LeaderApplication(
                "futures", "XenaCross", "Moving-average cross on XRP", "10000", True
            ),
            "chen": LeaderApplication(
                "futures",
                "ChenPrivate",
                "Invite-only slow cross",
                "10000",
                True,
                visibility="private",
                profit_share_ratio="20%",
            ),
            "dana": LeaderApplication("spot", "DanaDips", "Buying dips", "200", True),
        }
        for handle, application in applications.items():

            def open_portfolio(session, handle=handle, application=application):
                portfolio = leaders.apply(session, handle, application)
                return portfolio.id, portfolio.invitation_code

            opened = self.attempt(
                f"{handle} applies with {application.capital} USDT", open_portfolio
            )
            if opened:
                pid, code = opened
                self.result.portfolios[handle] = pid
                self.codes[handle] = code
                extra = f", invitation code {code}" if code else ""
                self.console.print(
                    f"  [green]accepted[/] {handle}: portfolio {pid} {application.nickname!r} "
                    f"(futures, {application.visibility}){extra}"
                )

        self.step("2. Followers join with their own settings (R-COPY-2)")
        follows = self.follow_plan()
        with self.session() as session:
            for follower, _leader, allocation, _settings, _code in follows:
                wallets.deposit(session, follower, allocation, key=f"demo-{follower}")
        for follower, leader, allocation, settings, code in follows:
            pid = self.result.portfolios.get(leader)
            if pid is None:
                continue

            def start_copy(
                session,
                follower=follower,
                pid=pid,
                allocation=allocation,
                settings=settings,
                code=code,
            ):
                return copies.start(
                    session, follower, pid, allocation, invitation_code=code, **settings
                ).id

            copy_id = self.attempt(f"{follower} copies {leader} with {allocation} USDT", start_copy)
            if copy_id:
                self.result.copies[f"{follower}->{leader}"] = copy_id
                shown = ", ".join(f"{k}={v}" for k, v in settings.items()) or "defaults"
                self.console.print(
                    f"  [green]started[/] copy {copy_id}: {follower} copies {leader} with "
                    f"{allocation} USDT ({shown})"
                )

    def follow_plan(self) -> list[tuple[str, str, str, dict, str | None]]:
        """Followers with varied settings; the first of the real leader's has a tight stop-loss."""
        n = self.scale.followers_per_leader
        plan: list[tuple[str, str, str, dict, str | None]] = [
            ("sam", "pepe", "3000", {"leverage": 10, "stop_loss_pct": "1"}, None)
        ]
        variants = [
            {"leverage": 5},
            {"leverage": 2, "symbols": ["ONDOUSDT"]},
            {"leverage": 3, "below_min_policy": "round_up"},
            {"leverage": 10, "sizing_mode": "fixed_amount", "fixed_amount": "150"},
            {"leverage": 8, "below_min_policy": "accumulate", "take_profit_pct": "50"},
            {"leverage": 4, "slippage_limit_pct": "1"},
        ]
        amounts = ["2000", "1200", "500", "5000", "800", "2500"]
        for leader in ("pepe", "xena", "chen"):
            for i in range(n - (1 if leader == "pepe" else 0)):
                settings = dict(variants[i % len(variants)])
                if leader != "pepe":
                    settings.pop("symbols", None)
                code = "CODE" if leader == "chen" else None
                plan.append(
                    (f"{leader}-fan-{i + 1}", leader, amounts[i % len(amounts)], settings, code)
                )
        plan.append(("tina", "pepe", "40", {"leverage": 2}, None))  # too small: skips below minimum
        plan.append(("ivan", "chen", "500", {}, None))  # refused: private, no code
        return [(f, lead, a, s, self.codes.get("chen") if c else None) for f, lead, a, s, c in plan]

    def open_exchange_accounts(self) -> None:
        """Give every leader and copy an account on the paper exchange (API key + secret by env ref)."""
        admin = self.paper.admin
        self.leader_accounts = {}
        with self.session() as session:
            for handle, pid in self.result.portfolios.items():
                portfolio = session.get(LeadPortfolio, pid)
                paper = admin.create_account(f"leader-{handle}", futures={USDT: "100000"})
                portfolio.exchange_account_id = self._account(
                    session, portfolio.leader_person_id, paper
                )
                self.leader_accounts[handle] = paper
            for copy_id in self.result.copies.values():
                copy = session.get(Copy, copy_id)
                paper = admin.create_account(
                    f"copy-{copy_id}", futures={USDT: str(copy.allocation)}
                )
                copy.exchange_account_id = self._account(session, copy.follower_person_id, paper)

    def _account(self, session: Session, person_id: int, paper) -> int:
        account = ExchangeAccount(
            person_id=person_id,
            venue="paper",
            market="futures",
            api_key_id=paper.api_key,
            credentials_ref="env:PENDING",
        )
        session.add(account)
        session.flush()
        account.credentials_ref = f"env:CT_DEMO_SECRET_{account.id}"
        self.secrets[account.credentials_ref] = paper.api_secret
        return account.id

    async def trade(self) -> None:
        from copytrade.engine.core import CopyEngine
        from copytrade.engine.reconcile import reconcile
        from copytrade.engine.runner import EngineRunner
        from copytrade.engine.wiring import GatewayDirectory
        from copytrade.exchange.factory import GatewayFactory

        self.step("3. Leaders trade on the paper exchange; the copy engine copies (R-COPY-*)")
        directory = GatewayDirectory(
            self.factory, self.paper.base_url, secrets=self.secrets, kinds=("futures",)
        )
        await directory.start()
        engine = CopyEngine(self.factory, directory, directory.markets_by_kind)
        # A stopped copy, once flat, is settled at once, as `copytrade engine run` does (the
        # deployed engine emits copytrade.copy.stopped and the settle-event automation runs it).
        loop = asyncio.get_running_loop()
        engine.on_stopped = lambda cid, why: self.event_runs.append(
            loop.run_in_executor(None, self.settle_stop_event, cid, why)
        )
        runner = EngineRunner(engine, sweep_every=1.0, heartbeat_every=60.0)
        task = asyncio.create_task(runner.run())
        bots = GatewayFactory("futures", self.paper.base_url)
        await bots.start()
        try:
            await asyncio.wait_for(runner.ready.wait(), 60)
            with self.progress() as progress:
                if "pepe" in self.leader_accounts:
                    await self.replay(bots, progress)
                for handle, fast, slow in (("xena", 6, 24), ("chen", 12, 48)):
                    if handle in self.leader_accounts:
                        await self.cross(handle, fast, slow, progress)
                await self.wait_for_engine(progress)
        finally:
            runner.stop()
            await task
            await reconcile(engine)
            await bots.close()
            await directory.close()
            await asyncio.gather(*self.event_runs)
        self.show_stops()

    def settle_stop_event(self, copy_id: int, reason: str | None) -> None:
        """Settle a stopped, flat copy now, on the recorded marks (R-SET-5); idempotent."""
        from copytrade.db import session_factory
        from copytrade.settlement import RecordedMarks, SettlementService, ledger_integrity_gate

        sessions = session_factory(self.url)
        marks = RecordedMarks(sessions).preload(clock.now())
        service = SettlementService(sessions, gate=ledger_integrity_gate(self.url), marks=marks)
        try:
            report = service.settle_event(copy_id)
        except Exception as exc:  # left to the weekly run's pending events, as the engine does
            self.result.event_settlements.append(
                {"copy_id": copy_id, "trigger": reason or "", "status": f"not settled: {exc}"}
            )
            return
        self.result.event_settlements.append(
            {
                "copy_id": copy_id,
                "trigger": report.trigger,
                "status": report.status,
                "at": report.as_of,
                "shares_paid": report.shares_paid,
                "rebates_paid": report.rebates_paid,
                "cash_returned": sum(report.cash_returned.values(), Decimal(0)),
            }
        )

    def show_stops(self) -> None:
        """Each stop-loss at its threshold, on the mark that fired it, and its event settlement."""
        from copytrade.engine.marks_feed import MARK_EVERY_SECONDS
        from models import CopyStopEvent

        with self.factory() as s:
            for ev in s.scalars(select(CopyStopEvent).order_by(CopyStopEvent.id)):
                copy = s.get(Copy, ev.copy_id)
                self.result.stop_events.append(
                    {
                        "copy_id": ev.copy_id,
                        "trigger": ev.trigger,
                        "threshold": ev.threshold,
                        "result": ev.cumulative_pnl,
                        "at": ev.at,
                        "allocation": copy.allocation,
                        "stop_loss_pct": copy.stop_loss_pct,
                    }
                )
        for ev in self.result.stop_events:
            who = self.copy_label(ev["copy_id"])
            pct = ""
            if ev["stop_loss_pct"] is not None and ev["trigger"] == "stop_loss":
                pct = f" ({_money(ev['stop_loss_pct'])} % of {_money(ev['allocation'])})"
            past = ""
            if ev["threshold"] is not None and ev["result"] is not None:
                past = f", {_money(abs(ev['result'] - ev['threshold']))} USDT past it"
            self.console.print(
                f"  [yellow]{ev['trigger']}[/] copy {ev['copy_id']} ({who}) at "
                f"{ev['at']:%Y-%m-%d %H:%M:%S}: threshold {_money(ev['threshold'])} USDT{pct}, "
                f"result at the stop {_money(ev['result'])} USDT{past} (R-COPY-3; the engine "
                f"marks held positions every {MARK_EVERY_SECONDS:g} s and on every fill)"
            )
        for st in self.result.event_settlements:
            who = self.copy_label(st["copy_id"])
            if "at" not in st:
                self.console.print(
                    f"  event settlement copy {st['copy_id']} ({who}): {st['status']}"
                )
                continue
            self.console.print(
                f"  event settlement copy {st['copy_id']} ({who}): trigger {st['trigger']}, "
                f"{st['status']}; share paid {_money(st['shares_paid'])} USDT, rebates "
                f"{_money(st['rebates_paid'])} USDT, cash returned {_money(st['cash_returned'])} "
                "USDT (R-SET-5)"
            )

    async def replay(self, bots, progress: Progress) -> None:
        """Replay the real leader's fills at their times (the paper clock jumps to each)."""
        from copytrade.engine.importer import read_fills
        from copytrade.exchange.protocol import GatewayError, OrderRequest
        from copytrade.paper.leader_bot import LEADER_FILE

        paper = self.leader_accounts["pepe"]
        bot = bots.gateway(paper.api_key, paper.api_secret, "demo-replay")
        for symbol in REPLAY_SYMBOLS:
            await bot.set_leverage(symbol, 10)
        # From 24 February 2025 on: both symbols have real candles from then (1000PEPE from 27
        # January, ONDO from 24 February), so every fill lands on a real candle.
        start = datetime.fromisoformat(PAPER_START.replace("Z", "+00:00"))
        kept, _, _ = read_fills(self.data_dir / LEADER_FILE)
        rows = [r for r in kept if r.trade.symbol in REPLAY_SYMBOLS and r.trade.traded_at >= start]
        rows = rows[: self.scale.replay_fills]
        task = progress.add_task("PepeReplay: real 2025 fills", total=len(rows))
        held: dict[str, Decimal] = {}
        sent = 0
        for n, row in enumerate(rows):
            t = row.trade
            qty = t.quantity if t.side == "buy" else min(t.quantity, held.get(t.symbol, Decimal(0)))
            if qty > 0:
                self.paper.admin.set_clock(time=t.traded_at.strftime("%Y-%m-%dT%H:%M:%SZ"), speed=1)
                try:
                    state = await bot.place_order(
                        OrderRequest(
                            t.symbol, t.side, qty, f"demo-{n}", reduce_only=t.side == "sell"
                        )
                    )
                except GatewayError:
                    state = None
                if state is not None:
                    sent += 1
                    signed = state.filled_quantity if t.side == "buy" else -state.filled_quantity
                    held[t.symbol] = held.get(t.symbol, Decimal(0)) + signed
                    await self.copied()
            progress.advance(task)
        self.result.leader_orders["pepe"] = sent

    async def cross(self, handle: str, fast: int, slow: int, progress: Progress) -> None:
        """Trade a moving-average cross of the real XRPUSDT candles until a few orders went out."""
        from copytrade.paper.leader_bot import run_ma_cross

        nickname = "XenaCross" if handle == "xena" else "ChenPrivate"
        total = self.scale.cross_trades
        task = progress.add_task(f"{nickname}: ma-cross {fast}/{slow} XRPUSDT", total=total)
        report = await run_ma_cross(
            self.paper.base_url,
            self.paper.admin_token,
            self.data_dir / CROSS_CANDLES,
            CROSS_SYMBOL,
            kind="futures",
            fast=fast,
            slow=slow,
            notional=Decimal(3000),
            credentials=self.leader_accounts[handle],
            max_trades=total,
            max_wait=0.0,
            on_trade=lambda *_: progress.advance(task),
            after_trade=self.copied,
        )
        self.result.leader_orders[handle] = report.sent

    def engine_counts(self) -> tuple[int, int, int]:
        """Return the leader fills recorded, the copy intents, and those without an outcome."""
        with self.factory() as s:
            fills = s.scalar(select(func.count()).select_from(LeaderFill))
            intents = select(func.count()).select_from(FollowerOrderIntent)
            total = s.scalar(intents)
            open_ = s.scalar(intents.where(FollowerOrderIntent.status != "done"))
        return fills, total, open_

    async def copied(self, timeout: float = 10) -> None:
        """Wait until the engine has recorded the leader's new fills and every copy of them has
        its outcome, so the clock only moves on after the copies traded at the leader's moment."""
        deadline = time.monotonic() + timeout
        seen = -1
        while time.monotonic() < deadline:
            fills, _, open_ = self.engine_counts()
            if fills > self.fills_copied and not open_ and fills == seen:
                self.fills_copied = fills
                return
            seen = fills
            await asyncio.sleep(0.02)

    async def wait_for_engine(self, progress: Progress, timeout: float = 120) -> None:
        """Wait until every leader fill is recorded and every intent has its outcome."""
        task = progress.add_task("copy engine: intents done", total=None)
        deadline = time.monotonic() + timeout
        quiet = 0
        while time.monotonic() < deadline:
            _, total, open_ = self.engine_counts()
            progress.update(task, total=total, completed=total - open_)
            quiet = quiet + 1 if not open_ else 0
            if quiet >= 4:  # two seconds without open intents: the streams have caught up
                return
            await asyncio.sleep(0.5)

    def last_prices(self) -> dict[str, Decimal]:
        exchange = self.paper.server.exchange
        prices = {}
        for symbol in (*REPLAY_SYMBOLS, CROSS_SYMBOL):
            try:
                prices[symbol] = exchange.mark_price(symbol)
            except Exception:  # noqa: BLE001 - a symbol without a price is marked by the ledger
                continue
        return prices

    def replayed_daily_bars(self, last_day: date) -> list:
        """Daily marks as the exchange priced each simulated day (its close): the real 2025 candles
        for the replay's symbols; for XRPUSDT, the 2021 day the exchange replayed on that date
        (its price path repeats the file), with that day's volume (R-MET-*, R-X-5)."""
        from copytrade.marks.candles import DailyBar, daily_bars

        exchange = self.paper.server.exchange
        first = datetime.fromisoformat(PAPER_START.replace("Z", "+00:00")).date()
        bars = []
        for symbol, name in FILES.items():
            path = exchange.data.path("futures", symbol)
            source = {
                b.price_date: b for b in daily_bars(self.data_dir / "market" / "futures" / name)
            }
            day = first
            while day <= last_day:
                start = datetime(day.year, day.month, day.day, tzinfo=UTC)
                close_ms = int(start.timestamp() * 1000) + 86_400_000 - 1
                cycle = (close_ms - path.first) // path.span
                replayed = source.get(_utc_ms(close_ms - cycle * path.span).date())
                bars.append(
                    DailyBar(
                        symbol,
                        day,
                        path.price_at(close_ms),
                        replayed.quote_volume if replayed else Decimal(0),
                        replayed.candles if replayed else 0,
                        f"paper exchange replay of {name}",
                    )
                )
                day += timedelta(days=1)
        return bars

    def settle(self) -> None:
        from prefect.artifacts import Artifact

        from flows.settle import settle

        self.step(
            "4. Validate the ledger, then settle the weekly cycle on Prefect (R-LED-7, R-SET-*)"
        )
        with self.factory() as s:
            for cid, reason in s.execute(
                select(Copy.id, Copy.stop_reason).where(Copy.status == "stopped")
            ):
                self.result.stopped[cid] = reason or ""
        with self.console.status("flow settle: validate_ledger (Great Expectations), then settle"):
            state = settle(
                cycle="weekly",
                at=self.at,
                database_url=self.url,
                marks={symbol: str(price) for symbol, price in self.marks.items()},
                return_state=True,
            )
        if state.is_completed():
            summaries = state.result()
            self.result.settlement_status = ", ".join(
                f"{r['trigger']}: {r['status']}" for r in summaries
            )
        else:
            self.result.settlement_status = f"settle run {state.name}: {state.message}"
        # What validate_ledger published for this run: one row per expectation.
        checks = Artifact.get("ledger-validation")
        data = checks.data if checks else []
        self.validation_rows = json.loads(data) if isinstance(data, str) else data
        self.result.validation_passed = bool(self.validation_rows) and all(
            r["result"] == "pass" for r in self.validation_rows
        )
        self.console.print(f"  {self.result.settlement_status}")

    def build_metrics(self) -> None:
        from copytrade.analytics.leaderboard import top
        from copytrade.analytics.warehouse import Warehouse
        from copytrade.marks.candles import store_daily_bars
        from flows.build_metrics import build_metrics

        self.step("5. Build the metrics warehouse on Prefect (DuckDB, dbt) (R-MET-*)")
        with self.session() as session:
            store_daily_bars(session, self.daily_marks, "usdm")
        root = self.home / "demo-warehouse"
        warehouse = Warehouse.duckdb(root)
        self.result.warehouse_path = warehouse.path
        with self.console.status(
            "flow build_metrics: extract ledger → Parquet, dbt build → DuckDB"
        ):
            # --fast skips dbt's data tests (they run in CI and in the full demo)
            state = build_metrics(
                period="90d",
                database_url=self.url,
                warehouse_dir=str(root),
                full_refresh=True,
                data_tests=self.scale is not FAST,
                return_state=True,
            )
        self.result.dbt_ok = state.is_completed()
        self.console.print(f"  {state.result()['dbt'] if self.result.dbt_ok else state.message}")
        if self.result.dbt_ok:
            self.result.leaderboard = top(warehouse, period="90d", sort="sharpe", limit=5)

    # -- the summary -------------------------------------------------------------------------

    def summary(self) -> None:
        console = self.console
        self.step("Summary")
        names = self.nicknames()
        table = Table(
            "#",
            "leader",
            "visibility",
            "Sharpe",
            "PnL USD",
            "ROI %",
            "MDD %",
            "copiers",
            title="Leaderboard top 5 (90 d, by Sharpe, R-MET-4)",
            caption="private: listed, joined only with the leader's invitation code (R-LEAD-4)",
        )
        for row in self.result.leaderboard:
            table.add_row(
                *(
                    _cell(row.get(k))
                    for k in (
                        "sharpe_rank",
                        "nickname",
                        "visibility",
                        "sharpe",
                        "pnl_usd",
                        "roi_pct",
                        "mdd_pct",
                        "copiers",
                    )
                )
            )
        console.print(table)
        console.print(self.quality_table(names))
        console.print(self.payout_table(names))
        console.print(self.balance_table(names))
        for cid, reason in self.result.stopped.items():
            who = self.copy_label(cid)
            console.print(f"[yellow]stopped[/] copy {cid} ({who}): {reason}")
        with self.factory() as s:
            report = Ledger(s).verify_chain()
        self.result.transfers, self.result.chain_ok = report.checked, report.ok
        rows = self.validation_rows
        verdict = "[green]passed[/]" if self.result.validation_passed else "[bold red]failed[/]"
        checks = f"{sum(1 for r in rows if r['result'] == 'pass')}/{len(rows)} checks"
        console.print(
            f"validation (ledger_integrity, GX): {verdict} {checks}; hash chain "
            f"{'intact' if report.ok else 'BROKEN'} over {report.checked} transfers (R-X-4)"
        )
        console.print(self.runs_table())
        console.print(f"timings (s): {self.result.seconds}")
        self.where_next()

    def nicknames(self) -> dict[int, str]:
        with self.factory() as s:
            return dict(s.execute(select(LeadPortfolio.id, LeadPortfolio.nickname)).all())

    def copy_label(self, copy_id: int) -> str:
        for key, cid in self.result.copies.items():
            if cid == copy_id:
                return key.replace("->", " copying ")
        return ""

    def quality_table(self, names: dict[int, str]) -> Table:
        table = Table(
            "leader",
            "leader fills",
            "copied",
            "skipped by reason",
            "slippage bps mean/p95",
            "delay ms p50/p99",
            title="Copy quality per leader (R-COPY-*, R-X-1)",
        )
        with self.factory() as s:
            fills = Counter(s.scalars(select(LeaderFill.portfolio_id)).all())
            outcomes = s.execute(
                select(
                    Copy.portfolio_id, FollowerOrderIntent.outcome, FollowerOrderIntent.reason_code
                )
                .join(Copy, Copy.id == FollowerOrderIntent.copy_id)
                .where(FollowerOrderIntent.kind == "copy")
            ).all()
            quality = s.execute(
                select(
                    Copy.portfolio_id, FollowerFill.slippage_bps, FollowerFill.copy_delay_ms
                ).join(Copy, Copy.id == FollowerFill.copy_id)
            ).all()
        copied: Counter = Counter()
        skipped: dict[int, Counter] = defaultdict(Counter)
        for pid, outcome, reason in outcomes:
            if outcome == "filled":
                copied[pid] += 1
            else:
                skipped[pid][reason or outcome or "open"] += 1
        slips, delays = defaultdict(list), defaultdict(list)
        for pid, slip, delay in quality:
            if slip is not None:
                slips[pid].append(float(slip))
            if delay is not None:
                delays[pid].append(float(delay))
        for pid, name in names.items():
            reasons = "\n".join(f"{k} {v}" for k, v in skipped[pid].most_common()) or "-"
            table.add_row(
                name,
                str(fills[pid]),
                str(copied[pid]),
                reasons,
                f"{_mean(slips[pid])} / {_pct(slips[pid], 95)}",
                f"{_pct(delays[pid], 50)} / {_pct(delays[pid], 99)}",
            )
        return table

    def payout_table(self, names: dict[int, str]) -> Table:
        table = Table(
            "leader",
            "profit shares paid",
            "rebates paid",
            "copies paid",
            "nothing due (no profit)",
            "withheld (paused/deferred)",
            title="Payouts per leader (weekly cycle, R-SET-*, R-FEE-3/4)",
        )
        with self.factory() as s:
            rows = s.execute(
                select(
                    SettlementPayout.portfolio_id,
                    SettlementPayout.kind,
                    SettlementPayout.status,
                    SettlementPayout.amount,
                )
            ).all()
        shares, rebates, paid, nothing, withheld = (
            defaultdict(Decimal),
            defaultdict(Decimal),
            Counter(),
            Counter(),
            Counter(),
        )
        for pid, kind, status, amount in rows:
            if status == "nothing_due":  # the copy is below its profit peak: no share (R-SET-2/3)
                nothing[pid] += 1
                continue
            if status != "paid":
                withheld[pid] += 1
                continue
            if kind == "rebate":
                rebates[pid] += amount
            else:
                shares[pid] += amount
                paid[pid] += 1 if amount else 0
        for pid, name in names.items():
            table.add_row(
                name,
                _money(shares[pid]),
                _money(rebates[pid]),
                str(paid[pid]),
                str(nothing[pid]),
                str(withheld[pid]),
            )
        return table

    def balance_table(self, names: dict[int, str]) -> Table:
        """Balances where the money ended: leaders' wallets, accrued rebates, platform fees."""
        table = Table(
            "account", "owner", "asset", "balance", title="Ledger balances (R-LED-1/2, R-SET-4)"
        )
        with self.factory() as s:
            balances = Ledger(s).balances()
            leaders_by_person = dict(
                s.execute(select(LeadPortfolio.leader_person_id, LeadPortfolio.nickname)).all()
            )
        totals: dict[str, Decimal] = defaultdict(Decimal)
        for b in balances:
            totals[b.asset] += b.amount
            kind, _, rest = b.address.partition(":")
            owner_id = rest.split(":")[0]
            if kind == "person" and owner_id.isdigit() and int(owner_id) in leaders_by_person:
                owner = f"leader {leaders_by_person[int(owner_id)]} (spot wallet)"
            elif kind == "leader" and b.address.endswith(":rebates") and owner_id.isdigit():
                owner = f"{names.get(int(owner_id), owner_id)} rebates accrued, unpaid"
            elif kind in ("platform", "exchange"):
                owner = kind
            else:
                continue
            table.add_row(b.address, owner, b.asset, _money(b.amount))
        table.caption = "sum of every account per asset (double entry): " + ", ".join(
            f"{asset} {_money(total)}" for asset, total in sorted(totals.items())
        )
        return table

    def runs_table(self) -> Table:
        """The demo's flow runs as the Prefect API reports them."""
        table = Table(
            "flow run", "flow", "state", "tags", "artifacts", title="Prefect flow runs of the demo"
        )
        for run in self.result.flow_runs:
            table.add_row(
                run["name"],
                run["flow"],
                run["state"],
                ", ".join(run["tags"]),
                ", ".join(run["artifacts"]),
            )
        return table

    def where_next(self) -> None:
        console = self.console
        settings = get_settings()
        prefect = self.prefect
        console.rule("[bold]Where to look next")
        if prefect.started_here:
            home = (
                ""
                if self.home.resolve() == settings.home.resolve()
                else f"COPYTRADE_HOME={self.home} "
            )
            console.print(
                f"  Prefect UI: the demo's runs (tag 'demo') are in "
                f"{prefect.prefect_home / 'prefect.db'}; see them with `{home}copytrade up`, then "
                f"{prefect.ui_url}/runs, or the UI alone: `PREFECT_HOME={prefect.prefect_home} "
                "prefect server start`"
            )
        else:
            console.print(f"  Prefect UI: {prefect.ui_url}/runs (tag 'demo')")
        warehouse = self.result.warehouse_path
        console.print(
            f"  dbt docs: `COPYTRADE_WAREHOUSE_PATH={warehouse} copytrade metrics docs "
            f"--output {self.home / 'demo-dbt-docs'}`, then open index.html there"
        )
        console.print(f"  warehouse file: {self.result.warehouse_path}")
        console.print(f"  demo database: {self.result.database_path}")
        console.print(f"  configured ledger: {settings.ledger_url.split('@')[-1]}")
        console.print(
            "  try: `COPYTRADE_DATABASE_URL=sqlite:///"
            f"{self.result.database_path} copytrade ledger balances`"
        )


def _utc_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float | Decimal):
        text = f"{value:,.2f}"
        return "0.00" if text == "-0.00" else text  # a drawdown of -1e-17 is no drawdown
    return str(value)


def _money(value: Decimal) -> str:
    return format(value.quantize(Decimal("0.00000001")).normalize(), ",f") if value else "0"


def _mean(values: list[float]) -> str:
    return f"{statistics.fmean(values):.1f}" if values else "-"


def _pct(values: list[float], p: int) -> str:
    if not values:
        return "-"
    ordered = sorted(values)
    return f"{ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]:.0f}"
