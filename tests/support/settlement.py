"""Data for settlement tests and benchmarks: people, portfolios, copies, fills and their postings.

``Scenario`` builds hand-written cases one object at a time, posting every movement through the
real ``Ledger`` service with the codes the copy engine uses:

- ``deposit`` (external → person spot), ``lead_capital`` (leader spot → ``leader:<pid>:capital``)
  and ``copy_allocation`` (person spot → copy cash);
- per follower fill, keyed ``<code>:<fill id>``: exactly the transfers the copy engine posts,
  built by the same function (``copytrade.ledger.fill_transfers``): ``copy_fill`` (spot: the
  asset swap), ``realised_pnl`` (futures), ``trading_fee`` and ``fee_rebate`` (10 % of the fee,
  rounded down, R-SET-10);

and writing the leader fill, the follower order intent, the order and the follower fill rows the
engine writes (client order ids derived from leader fill, copy and leg). Realised PnL is computed
by average cost unless given. ``generate_population`` writes the same shapes in bulk for the
benchmark and the crash test.
"""

from __future__ import annotations

import itertools
import random
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import BigInteger, Column, MetaData, Table, text, update
from sqlalchemy.orm import Session

from copytrade.domain.fees import leader_rebate
from copytrade.domain.money import ZERO, round_down, to_decimal, to_units
from copytrade.engine.stop_events import add_stop_event
from copytrade.ledger import Ledger, Leg, PostResult, TransferSpec
from copytrade.ledger.accounts import (
    external,
    follower_cash,
    leader_capital,
    person_spot,
)
from copytrade.ledger.fill_transfers import fill_transfers
from models.platform import Copy, LeadPortfolio, Person
from models.trading import FollowerFill, FollowerOrder, FollowerOrderIntent, LeaderFill
from models.types import Amount

Poster = Callable[[Session, Sequence[TransferSpec]], list[PostResult]]
EPOCH = datetime(2025, 1, 6, tzinfo=UTC)  # a Monday


def ledger_poster(session: Session, specs: Sequence[TransferSpec]) -> list[PostResult]:
    """Post through the ledger service (the default)."""
    return Ledger(session).post_many(specs)


def d(value) -> Decimal:
    return to_decimal(value) if not isinstance(value, Decimal) else value


@dataclass(slots=True)
class Position:
    """Average-cost position of one copy in one symbol (signed quantity, cost of what is open)."""

    quantity: Decimal = ZERO
    cost: Decimal = ZERO

    def apply(self, side: str, quantity: Decimal, price: Decimal) -> Decimal:
        """Apply a fill; return the realised PnL it books (rounded down to 1e-8)."""
        signed = quantity if side == "buy" else -quantity
        if self.quantity == 0 or (self.quantity > 0) == (signed > 0):
            self.quantity += signed
            self.cost += signed * price
            return ZERO
        closing = min(abs(signed), abs(self.quantity))
        average = self.cost / self.quantity
        direction = 1 if self.quantity > 0 else -1
        realised = round_down(closing * (price - average) * direction)
        self.cost -= average * closing * direction
        self.quantity += signed
        if abs(signed) > closing:  # flipped: the remainder opens at this price
            self.cost = self.quantity * price
        if self.quantity == 0:
            self.cost = ZERO
        return realised


@dataclass
class Scenario:
    """Build settlement cases on ``session`` (committed by the caller; may be rebound between
    transactions, the id counter and positions carry over)."""

    session: Session | None
    venue: str = "paper"
    poster: Poster = ledger_poster
    now: datetime = EPOCH
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    _positions: dict = field(default_factory=lambda: defaultdict(Position))

    def _next(self) -> int:
        return next(self._ids)

    def post(self, key: str, code: str, legs: Sequence[Leg], refs: dict | None = None) -> None:
        self.poster(self.session, [TransferSpec(key=key, code=code, legs=tuple(legs), refs=refs)])

    def person(self, handle: str | None = None) -> int:
        person = Person(handle=handle or f"p{self._next()}")
        self.session.add(person)
        self.session.flush()
        return person.id

    def portfolio(
        self,
        leader: int | None = None,
        *,
        mode: str = "futures",
        ratio: str | Decimal = "0.1",
        visibility: str = "public",
        asset: str = "USDT",
        capital: str = "10000",
    ) -> int:
        leader = leader or self.person()
        portfolio = LeadPortfolio(
            leader_person_id=leader,
            mode=mode,
            visibility=visibility,
            nickname=f"lead-{leader}",
            profit_share_ratio=d(ratio),
            capital=d(capital),
            capital_asset=asset,
            follower_cap=300 if mode == "spot" else 200,
            agreement_accepted_at=self.now,
            invitation_code=f"INV{self._next():06d}" if visibility == "private" else None,
        )
        self.session.add(portfolio)
        self.session.flush()
        amount = d(capital)
        self.post(
            f"deposit:leader:{portfolio.id}",
            "deposit",
            [Leg(external(), asset, -amount), Leg(person_spot(leader), asset, amount)],
        )
        self.post(
            f"lead-capital:{portfolio.id}",
            "lead_capital",
            [
                Leg(person_spot(leader), asset, -amount),
                Leg(leader_capital(portfolio.id), asset, amount),
            ],
            {"portfolio_id": portfolio.id},
        )
        return portfolio.id

    def copy(
        self,
        portfolio_id: int,
        follower: int | None = None,
        *,
        allocation: str | Decimal = "1000",
        asset: str = "USDT",
        at: datetime | None = None,
    ) -> int:
        """Open a copy and fund it: deposit into the follower's spot wallet, then allocate."""
        follower = follower or self.person()
        at = at or self.now
        copy = Copy(
            portfolio_id=portfolio_id,
            follower_person_id=follower,
            allocation=d(allocation),
            started_at=at,
        )
        self.session.add(copy)
        self.session.flush()
        amount = d(allocation)
        self.post(
            f"deposit:copy:{copy.id}",
            "deposit",
            [Leg(external(), asset, -amount), Leg(person_spot(follower), asset, amount)],
        )
        self.post(
            f"allocate:copy:{copy.id}",
            "copy_allocation",
            [
                Leg(person_spot(follower), asset, -amount),
                Leg(follower_cash(copy.id), asset, amount),
            ],
            {"copy_id": copy.id},
        )
        return copy.id

    def fund(self, copy_id: int, amount: str | Decimal, asset: str = "USDT") -> None:
        """Move more money into a copy's cash (from outside, for tests of R-SET-7)."""
        amount = d(amount)
        self.post(
            f"fund:{copy_id}:{self._next()}",
            "deposit",
            [Leg(external(), asset, -amount), Leg(follower_cash(copy_id), asset, amount)],
            {"copy_id": copy_id},
        )

    def withdraw(self, copy_id: int, amount: str | Decimal, asset: str = "USDT") -> None:
        """Move money out of a copy's cash to outside (a follower withdrawal, R-SET-7 tests)."""
        amount = d(amount)
        self.post(
            f"withdraw:{copy_id}:{self._next()}",
            "copy_withdrawal",
            [
                Leg(follower_cash(copy_id), asset, -amount),
                Leg(external("withdrawals"), asset, amount),
            ],
            {"copy_id": copy_id},
        )

    def leader_fill(
        self,
        portfolio_id: int,
        symbol: str,
        side: str,
        quantity: str | Decimal,
        price: str | Decimal,
        *,
        realised: str | Decimal | None = None,
        at: datetime | None = None,
    ) -> int:
        key = ("leader", portfolio_id, symbol)
        booked = self._positions[key].apply(side, d(quantity), d(price))
        fill = LeaderFill(
            portfolio_id=portfolio_id,
            exchange_trade_id=f"L{self._next()}",
            symbol=symbol,
            side=side,
            price=d(price),
            quantity=d(quantity),
            realised_pnl=d(realised) if realised is not None else booked,
            traded_at=at or self.now,
            is_opening=booked == 0,
        )
        self.session.add(fill)
        self.session.flush()
        return fill.id

    def fill(
        self,
        copy_id: int,
        symbol: str,
        side: str,
        quantity: str | Decimal,
        price: str | Decimal,
        *,
        fee: str | Decimal = "0",
        fee_asset: str = "USDT",
        realised: str | Decimal | None = None,
        at: datetime | None = None,
        quote: str = "USDT",
    ) -> int:
        """Record one follower fill (and the leader fill it copies) with its ledger postings."""
        copy = self.session.get(Copy, copy_id)
        portfolio = self.session.get(LeadPortfolio, copy.portfolio_id)
        quantity, price, fee = d(quantity), d(price), d(fee)
        at = at or self.now
        leader_fill_id = self.leader_fill(portfolio.id, symbol, side, quantity, price, at=at)
        booked = self._positions[("copy", copy_id, symbol)].apply(side, quantity, price)
        pnl = d(realised) if realised is not None else booked
        client_id = f"ct-{leader_fill_id}-{copy_id}-0"
        intent = FollowerOrderIntent(
            leader_fill_id=leader_fill_id,
            copy_id=copy_id,
            client_order_id=client_id,
            symbol=symbol,
            side=side,
            quantity=quantity,
            computed_quantity=quantity,
            leader_price=price,
            status="done",
            outcome="filled",
        )
        self.session.add(intent)
        self.session.flush()
        order = FollowerOrder(
            intent_id=intent.id,
            copy_id=copy_id,
            client_order_id=client_id,
            exchange_status="FILLED",
            filled_quantity=quantity,
            average_price=price,
        )
        self.session.add(order)
        self.session.flush()
        rebate = leader_rebate(fee)
        row = FollowerFill(
            order_id=order.id,
            copy_id=copy_id,
            leader_fill_id=leader_fill_id,
            exchange_trade_id=f"F{self._next()}",
            symbol=symbol,
            side=side,
            price=price,
            quantity=quantity,
            fee=fee,
            fee_asset=fee_asset,
            realised_pnl=pnl,
            traded_at=at,
            leader_price=price,
            slippage_bps=ZERO,
            rebate=rebate,
        )
        self.session.add(row)
        self.session.flush()
        self.poster(
            self.session,
            _fill_transfers(
                row.id,
                copy_id,
                portfolio.id,
                portfolio.mode,
                symbol,
                side,
                quantity,
                price,
                pnl,
                fee,
                fee_asset,
                quote=quote,
                venue=self.venue,
            ),
        )
        return row.id

    def stop(self, copy_id: int, reason: str = "stop_copy", at: datetime | None = None) -> None:
        self.session.execute(
            update(Copy)
            .where(Copy.id == copy_id)
            .values(status="stopped", stop_reason=reason, stopped_at=at or self.now)
        )
        add_stop_event(self.session, copy_id, reason, at=at or self.now)

    def close_portfolio(self, portfolio_id: int, at: datetime | None = None) -> None:
        """Close a lead portfolio and stop every copy of it (R-LEAD-10)."""
        at = at or self.now
        self.session.execute(
            update(LeadPortfolio)
            .where(LeadPortfolio.id == portfolio_id)
            .values(status="closed", closed_at=at)
        )
        stopped = self.session.scalars(
            update(Copy)
            .where(Copy.portfolio_id == portfolio_id, Copy.status == "active")
            .values(status="stopped", stop_reason="portfolio_closed", stopped_at=at)
            .returning(Copy.id)
        ).all()
        for copy_id in stopped:
            add_stop_event(self.session, copy_id, "portfolio_closed", at=at)


def _fill_transfers(
    fill_id: int,
    copy_id: int,
    portfolio_id: int,
    mode: str,
    symbol: str,
    side: str,
    quantity: Decimal,
    price: Decimal,
    realised: Decimal,
    fee: Decimal,
    fee_asset: str,
    *,
    quote: str = "USDT",
    venue: str = "paper",
    at: datetime | None = None,
) -> list[TransferSpec]:
    """Return the transfers the copy engine posts for this fill (``copytrade.ledger.fill_transfers``)."""
    return fill_transfers(
        key=str(fill_id),
        copy_id=copy_id,
        portfolio_id=portfolio_id,
        venue=venue,
        kind=mode,
        base=symbol.removesuffix(quote),
        quote=quote,
        side=side,
        quantity=quantity,
        price=price,
        fee=fee,
        fee_asset=fee_asset,
        realised_pnl=realised,
        refs={"copy_id": copy_id, "follower_fill_id": fill_id, "portfolio_id": portfolio_id},
        at=at,
    )


# -- bulk population (benchmark, crash test) ----------------------------------------------------


def _raw(table: Table) -> Table:
    """Return ``table`` with its Amount columns as plain integers (bulk inserts of units)."""
    columns = [
        Column(
            c.name, BigInteger if isinstance(c.type, Amount) else c.type, primary_key=c.primary_key
        )
        for c in table.columns
    ]
    return Table(table.name, MetaData(), *columns)


@dataclass(frozen=True, slots=True)
class Population:
    """What ``generate_population`` wrote: ids, symbols, and the marks it expects."""

    copies: int
    fills: int
    transfers: int
    portfolios: int
    as_of: datetime
    marks: dict[str, Decimal]


SYMBOLS = {"BTCUSDT": Decimal("60000"), "ETHUSDT": Decimal("3000"), "XRPUSDT": Decimal("0.5")}


def generate_population(
    session: Session,
    *,
    copies: int,
    fills_per_copy: int = 10,
    copies_per_portfolio: int = 100,
    seed: int = 7,
    poster: Poster = ledger_poster,
    start: datetime = EPOCH,
    chunk: int = 20_000,
    progress: Callable[[str, int, int], None] | None = None,
) -> Population:
    """Write ``copies`` copies with ``fills_per_copy`` fills each, in bulk, on an empty database.

    Half the portfolios are spot (ratio 10 %), half futures (public 10 % or private 0-30 %). Each
    object draws from its own random stream, so the first N copies are identical whatever the
    total (the benchmark's naive slice is the bulk run's first copies). Each
    leader fill is copied by every copy of its portfolio at that copy's scale with random price
    noise; fees are 0.1 % of notional with the 10 % rebate. Fills fall in the week after
    ``start``; the returned ``as_of`` is the Monday after, and ``marks`` the futures marks to use.
    """
    n_portfolios = max(1, -(-copies // copies_per_portfolio))
    followers = max(1, copies // 5)
    person_rows = [
        {"id": i, "handle": f"u{i}", "display_name": "", "created_at": start}
        for i in range(1, n_portfolios + followers + 1)
    ]
    _insert(session, Person.__table__, person_rows, chunk)

    portfolios = []
    for pid in range(1, n_portfolios + 1):
        mode = "spot" if pid % 2 else "futures"
        private = mode == "futures" and pid % 4 == 0
        rng = _rng(seed, "portfolio", pid)
        ratio = Decimal(rng.randrange(0, 31)) / 100 if private else Decimal("0.1")
        portfolios.append(
            {
                "id": pid,
                "leader_person_id": pid,
                "mode": mode,
                "visibility": "private" if private else "public",
                "nickname": f"lead-{pid}",
                "description": "",
                "invitation_code": f"INV{pid:08d}" if private else None,
                "profit_share_ratio": to_units(ratio),
                "capital": to_units(Decimal(50_000)),
                "capital_asset": "USDT",
                "status": "active",
                "follower_cap": 300 if mode == "spot" else 200,
                "is_listed": True,
                "agreement_accepted_at": start,
                "created_at": start,
            }
        )
    _insert(session, _raw(LeadPortfolio.__table__), portfolios, chunk)

    copy_rows, specs = [], []
    allocation = Decimal(1000)
    for cid in range(1, copies + 1):
        pid = (cid - 1) // copies_per_portfolio + 1
        follower = n_portfolios + 1 + (cid - 1) % followers
        copy_rows.append(
            {
                "id": cid,
                "portfolio_id": pid,
                "follower_person_id": follower,
                "status": "active",
                "allocation": to_units(allocation),
                "sizing_mode": "fixed_ratio",
                "below_min_policy": "skip",
                "leverage": 1,
                "close_only": False,
                "started_at": start,
            }
        )
        specs.append(
            TransferSpec(
                f"allocate:copy:{cid}",
                "copy_allocation",
                (Leg(external(), "USDT", -allocation), Leg(follower_cash(cid), "USDT", allocation)),
                refs={"copy_id": cid},
                at=start,
            )
        )
    _insert(session, _raw(Copy.__table__), copy_rows, chunk)
    for part in range(0, len(specs), chunk):
        poster(session, specs[part : part + chunk])

    # Leader fills: per portfolio, a path of trades in one symbol that opens and trims a position.
    leader_rows, plan = [], {}
    symbols = sorted(SYMBOLS)
    leader_fill_id = itertools.count(1)
    step = timedelta(days=6) / max(1, fills_per_copy)
    for p in portfolios:
        rng = _rng(seed, "leader", p["id"])
        symbol = symbols[p["id"] % len(symbols)]
        base = SYMBOLS[symbol]
        fills = []
        for k in range(fills_per_copy):
            side = "buy" if k % 3 != 2 else "sell"
            price = (base * Decimal(rng.randrange(9_500, 10_500)) / 10_000).quantize(
                Decimal("0.0001")
            )
            fid = next(leader_fill_id)
            fills.append((fid, side, price))
            leader_rows.append(
                {
                    "id": fid,
                    "portfolio_id": p["id"],
                    "exchange_trade_id": f"L{fid}",
                    "symbol": symbol,
                    "side": side,
                    "price": to_units(price),
                    "quantity": to_units(Decimal("1")),
                    "fee": 0,
                    "realised_pnl": 0,
                    "traded_at": start + step * k + timedelta(hours=1),
                    "is_opening": side == "buy",
                    "position_before": 0,
                    "source": "import",
                    "received_at": start,
                }
            )
        plan[p["id"]] = (symbol, fills)
    _insert(session, _raw(LeaderFill.__table__), leader_rows, chunk)

    intents, orders, follower_fills, pending, transfers = [], [], [], [], 0
    raw = {
        model: _raw(model.__table__) for model in (FollowerOrderIntent, FollowerOrder, FollowerFill)
    }
    fill_id = itertools.count(1)
    written = 0
    total = copies * fills_per_copy
    ratio_of = {p["id"]: p for p in portfolios}
    for cid in range(1, copies + 1):
        pid = (cid - 1) // copies_per_portfolio + 1
        mode = ratio_of[pid]["mode"]
        symbol, fills = plan[pid]
        unit = (allocation / SYMBOLS[symbol] / 4).quantize(Decimal("0.00001"))
        position = Position()
        rng = _rng(seed, "copy", cid)
        fill_specs = []
        for k, (lid, side, lprice) in enumerate(fills):
            fid = next(fill_id)
            price = (lprice * Decimal(rng.randrange(9_990, 10_010)) / 10_000).quantize(
                Decimal("0.0001")
            )
            quantity = (
                unit if side == "buy" else (position.quantity / 2).quantize(Decimal("0.00001"))
            )
            if quantity <= 0:
                quantity, side = unit, "buy"
            realised = position.apply(side, quantity, price)
            fee = round_down(quantity * price * Decimal("0.001"))
            rebate = leader_rebate(fee)
            client = f"ct-{lid}-{cid}-0"
            at = start + step * k + timedelta(hours=1, milliseconds=cid % 1000)
            intents.append(
                {
                    "id": fid,
                    "leader_fill_id": lid,
                    "copy_id": cid,
                    "leg": 0,
                    "kind": "copy",
                    "client_order_id": client,
                    "symbol": symbol,
                    "side": side,
                    "quantity": to_units(quantity),
                    "computed_quantity": to_units(quantity),
                    "reduce_only": side == "sell",
                    "leader_price": to_units(lprice),
                    "status": "done",
                    "outcome": "filled",
                    "created_at": at,
                }
            )
            orders.append(
                {
                    "id": fid,
                    "intent_id": fid,
                    "copy_id": cid,
                    "client_order_id": client,
                    "exchange_status": "FILLED",
                    "filled_quantity": to_units(quantity),
                    "average_price": to_units(price),
                    "created_at": at,
                    "updated_at": at,
                }
            )
            follower_fills.append(
                {
                    "id": fid,
                    "order_id": fid,
                    "copy_id": cid,
                    "leader_fill_id": lid,
                    "exchange_trade_id": f"F{fid}",
                    "symbol": symbol,
                    "side": side,
                    "price": to_units(price),
                    "quantity": to_units(quantity),
                    "fee": to_units(fee),
                    "fee_asset": "USDT",
                    "realised_pnl": to_units(realised),
                    "traded_at": at,
                    "leader_price": to_units(lprice),
                    "rebate": to_units(rebate),
                }
            )
            fill_specs += _fill_transfers(
                fid, cid, pid, mode, symbol, side, quantity, price, realised, fee, "USDT", at=at
            )
        transfers += len(fill_specs)
        pending.extend(fill_specs)
        if len(follower_fills) >= chunk:
            written += _flush(session, raw, intents, orders, follower_fills, pending, poster, chunk)
            if progress:
                progress("fills", written, total)
    written += _flush(session, raw, intents, orders, follower_fills, pending, poster, chunk)
    if progress:
        progress("fills", written, total)
    _sync_sequences(session, [Person, LeadPortfolio, Copy, LeaderFill, *raw])
    marks = population_marks()
    return Population(
        copies=copies,
        fills=total,
        transfers=transfers + copies,
        portfolios=n_portfolios,
        as_of=start + timedelta(days=7),
        marks=marks,
    )


def population_marks() -> dict[str, Decimal]:
    """Return the futures marks a generated population is settled at (2 % above its prices)."""
    return {s: (p * Decimal("1.02")).quantize(Decimal("0.0001")) for s, p in SYMBOLS.items()}


def _rng(seed: int, kind: str, number: int) -> random.Random:
    """Return a random stream per object, so the first N copies are the same whatever the total."""
    return random.Random(f"{seed}:{kind}:{number}")


def _flush(session, raw, intents, orders, fills, specs, poster, chunk) -> int:
    """Write the buffered order, fill and transfer rows; return how many fills were written."""
    n = len(fills)
    _insert(session, raw[FollowerOrderIntent], intents, chunk)
    _insert(session, raw[FollowerOrder], orders, chunk)
    _insert(session, raw[FollowerFill], fills, chunk)
    for part in range(0, len(specs), chunk):
        poster(session, specs[part : part + chunk])
    for buffer in (intents, orders, fills, specs):
        buffer.clear()
    return n


def _sync_sequences(session: Session, models) -> None:
    """Move PostgreSQL's id sequences past the ids written explicitly (SQLite needs nothing)."""
    if session.get_bind().dialect.name != "postgresql":
        return
    for model in models:
        table = model.__tablename__
        session.execute(
            text(
                f"select setval(pg_get_serial_sequence('{table}', 'id'), "
                f"coalesce((select max(id) from {table}), 0) + 1, false)"
            )
        )


def _insert(session: Session, table: Table, rows: list[dict], chunk: int) -> None:
    for start in range(0, len(rows), chunk):
        session.execute(table.insert(), rows[start : start + chunk])
