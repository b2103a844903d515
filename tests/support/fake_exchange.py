"""An in-memory exchange speaking the gateway protocol, with faults on demand, for engine tests.

``FakeExchange`` holds accounts, prices, orders and trades; ``FakeExchange.gateway(account)``
returns one ``ExchangeGateway`` per account. Market orders fill at once at the current price
(optionally only in part); faults can be queued per account: a timeout *after* the order was
executed (unknown outcome), a timeout before it reached the book, a 429, or a rejection. Leader
trades are published to the account's fill stream, which can be dropped (a gap to backfill) or
made to repeat an event.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Awaitable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from copytrade import clock
from copytrade.exchange.protocol import (
    FundingPayment,
    Marks,
    OrderRequest,
    OrderState,
    Placement,
    Position,
    RateLimited,
    Rejected,
    Retryable,
    Trade,
    UnknownOutcome,
)


class StreamDropped(ConnectionError):
    """The fake user-data stream was cut (the engine must backfill and reconnect)."""


@dataclass
class FakeAccount:
    account_id: int
    balances: dict[str, Decimal] = field(default_factory=dict)
    positions: dict[str, Decimal] = field(default_factory=dict)
    leverage: dict[str, int] = field(default_factory=dict)
    faults: deque = field(default_factory=deque)
    stream: asyncio.Queue | None = None
    read_faults: int = 0
    fee_rate: Decimal = Decimal("0.001")


class FakeExchange:
    """The exchange side of unit tests: deterministic, in memory, one instance per test."""

    def __init__(self, prices: dict[str, Decimal] | None = None, kind: str = "futures") -> None:
        self.kind = kind
        self.prices: dict[str, Decimal] = dict(prices or {})
        self.accounts: dict[int, FakeAccount] = {}
        self.orders: dict[tuple[int, str], OrderState] = {}
        self.order_log: list[tuple[int, str]] = []  # every accepted (account, client id)
        self.trades: dict[tuple[int, str], list[Trade]] = defaultdict(list)
        self._order_ids = itertools.count(1)
        self._trade_ids: dict[str, itertools.count] = defaultdict(lambda: itertools.count(1))
        self.partial_fill: Decimal | None = None  # fraction filled of market orders
        self.funding: dict[int, list[FundingPayment]] = defaultdict(list)  # per account
        self.requests = 0

    # -- setup -----------------------------------------------------------------------------------

    def account(self, account_id: int, **balances: Decimal) -> FakeAccount:
        acc = self.accounts.get(account_id)
        if acc is None:
            acc = self.accounts[account_id] = FakeAccount(account_id)
        acc.balances.update({k: Decimal(v) for k, v in balances.items()})
        return acc

    def gateway(self, account_id: int) -> FakeGateway:
        self.account(account_id)
        return FakeGateway(self, account_id)

    def fail_reads(self, account_id: int, count: int) -> None:
        """Make the account's next ``count`` trade-list reads fail (a 503 on ``userTrades``)."""
        self.account(account_id).read_faults += count

    def fail_next(self, account_id: int, *faults: str) -> None:
        """Queue faults for the account's next order calls: ``unknown_after``, ``unknown_before``,
        ``rate_limited``, ``rejected``."""
        self.account(account_id).faults.extend(faults)

    # -- leader side ------------------------------------------------------------------------------

    def leader_trade(
        self,
        account_id: int,
        symbol: str,
        side: str,
        quantity: Decimal,
        price: Decimal | None = None,
        *,
        order_id: str | None = None,
        publish: bool = True,
        at: datetime | None = None,
    ) -> Trade:
        """Record a leader execution and publish it on the account's stream (unless ``publish`` is off)."""
        price = Decimal(price) if price is not None else self.prices[symbol]
        self.prices[symbol] = price
        trade = Trade(
            trade_id=str(next(self._trade_ids[symbol])),
            order_id=order_id or str(next(self._order_ids)),
            client_order_id=None,
            symbol=symbol,
            side=side,
            price=price,
            quantity=Decimal(quantity),
            fee=Decimal(0),
            fee_asset="USDT",
            realised_pnl=None,
            is_maker=False,
            traded_at=at or datetime.now(UTC),
        )
        self.trades[(account_id, symbol)].append(trade)
        acc = self.account(account_id)
        held = acc.positions.get(symbol, Decimal(0))
        acc.positions[symbol] = held + (trade.quantity if side == "buy" else -trade.quantity)
        if publish:
            self.publish(account_id, trade)
        return trade

    def publish(self, account_id: int, event: object) -> None:
        """Put an event (a ``Trade``, a raw dict, or ``StreamDropped``) on the account's stream."""
        acc = self.account(account_id)
        if acc.stream is not None:
            acc.stream.put_nowait(event)

    def drop_stream(self, account_id: int) -> None:
        self.publish(account_id, StreamDropped("stream dropped"))

    # -- order execution ---------------------------------------------------------------------------

    def _execute(self, account_id: int, request: OrderRequest) -> OrderState:
        acc = self.account(account_id)
        price = self.prices[request.symbol]
        qty = request.quantity
        if self.partial_fill is not None:
            qty = (qty * self.partial_fill).quantize(Decimal("1e-8"))
        fee = (qty * price * acc.fee_rate).quantize(Decimal("1e-8"))
        signed = qty if request.side == "buy" else -qty
        held = acc.positions.get(request.symbol, Decimal(0))
        if request.reduce_only and (held == 0 or (held > 0) == (signed > 0)):
            raise Rejected("ReduceOnly Order is rejected.", code="-2022", reason="invalid_order")
        acc.positions[request.symbol] = held + signed
        order_id = str(next(self._order_ids))
        now = datetime.now(UTC)
        trade = Trade(
            trade_id=str(next(self._trade_ids[request.symbol])),
            order_id=order_id,
            client_order_id=request.client_order_id,
            symbol=request.symbol,
            side=request.side,
            price=price,
            quantity=qty,
            fee=fee,
            fee_asset="USDT",
            realised_pnl=None,
            is_maker=False,
            traded_at=now,
        )
        self.trades[(account_id, request.symbol)].append(trade)
        status = "filled" if qty == request.quantity else ("expired" if qty == 0 else "expired")
        state = OrderState(
            order_id=order_id,
            client_order_id=request.client_order_id,
            symbol=request.symbol,
            side=request.side,
            status=status,
            quantity=request.quantity,
            filled_quantity=qty,
            average_price=price if qty else None,
            updated_at=now,
            trades=(trade,) if qty else (),
        )
        self.orders[(account_id, request.client_order_id)] = state
        self.order_log.append((account_id, request.client_order_id))
        return state

    def duplicate_client_ids(self) -> list[tuple[int, str]]:
        """Return (account, client id) pairs that the exchange accepted more than once."""
        seen: dict[tuple[int, str], int] = defaultdict(int)
        for key in self.order_log:
            seen[key] += 1
        return [k for k, n in seen.items() if n > 1]


class FakeGateway:
    """One account's view of a ``FakeExchange`` (implements ``ExchangeGateway``)."""

    def __init__(self, exchange: FakeExchange, account_id: int) -> None:
        self.exchange = exchange
        self.account_id = account_id

    async def place_order(self, request: OrderRequest) -> OrderState:
        ex = self.exchange
        ex.requests += 1
        acc = ex.account(self.account_id)
        await asyncio.sleep(0)
        fault = acc.faults.popleft() if acc.faults else None
        if fault == "unknown_before":
            raise UnknownOutcome("timeout before the order reached the book")
        if fault == "rate_limited":
            raise RateLimited("429 Too Many Requests", retry_after=0.01)
        if fault == "rejected":
            raise Rejected(
                "Account has insufficient balance", code="-2019", reason="insufficient_funds"
            )
        state = ex._execute(self.account_id, request)
        if fault == "unknown_after":
            raise UnknownOutcome("timeout after the order was executed")
        return state

    def place_many(self, requests: Sequence[OrderRequest]) -> Awaitable[list[Placement]]:
        """Start one ``place_order`` per request now; the awaitable collects their placements."""
        return asyncio.gather(*(self._placed(r) for r in requests))

    async def _placed(self, request: OrderRequest) -> Placement:
        sent_at = clock.now()  # the platform's clock, as the dispatcher stamps every send
        try:
            state = await self.place_order(request)
        except Exception as exc:
            return Placement(error=exc, sent_at=sent_at)
        return Placement(state, sent_at=sent_at, acked_at=clock.now())

    async def order_by_client_id(self, symbol: str, client_order_id: str) -> OrderState | None:
        self.exchange.requests += 1
        await asyncio.sleep(0)
        return self.exchange.orders.get((self.account_id, client_order_id))

    async def cancel_order(self, symbol: str, client_order_id: str) -> OrderState:
        state = self.exchange.orders[(self.account_id, client_order_id)]
        return state

    async def balances(self) -> dict[str, Decimal]:
        return dict(self.exchange.account(self.account_id).balances)

    async def positions(self) -> list[Position]:
        acc = self.exchange.account(self.account_id)
        return [
            Position(
                s, q, Decimal(0), self.exchange.prices.get(s), Decimal(0), acc.leverage.get(s, 1)
            )
            for s, q in acc.positions.items()
            if q
        ]

    async def my_trades(
        self, symbol: str, from_id: str | None = None, limit: int = 1000
    ) -> list[Trade]:
        self.exchange.requests += 1
        await asyncio.sleep(0)
        acc = self.exchange.account(self.account_id)
        if acc.read_faults:
            acc.read_faults -= 1
            raise Retryable("503 Service Unavailable on userTrades")
        start = int(from_id) if from_id else 0
        trades = [
            t for t in self.exchange.trades[(self.account_id, symbol)] if int(t.trade_id) >= start
        ]
        return trades[:limit]

    async def set_leverage(self, symbol: str, leverage: int) -> None:
        self.exchange.account(self.account_id).leverage[symbol] = leverage

    async def fetch_marks(self, symbols: Sequence[str]) -> Marks:
        self.exchange.requests += 1
        await asyncio.sleep(0)
        if self.exchange.account(self.account_id).read_faults:
            raise Retryable("503 Service Unavailable on premiumIndex")
        return Marks({s: self.exchange.prices[s] for s in symbols if s in self.exchange.prices})

    async def funding_payments(self, since: datetime | None = None) -> list[FundingPayment]:
        await asyncio.sleep(0)
        rows = self.exchange.funding.get(self.account_id, [])
        return [p for p in rows if since is None or p.at >= since]

    async def start_stream(self) -> None:
        """Subscribe now: events published from here on are delivered by ``fills()``."""
        acc = self.exchange.account(self.account_id)
        if acc.stream is None:
            acc.stream = asyncio.Queue()

    async def fills(self) -> AsyncIterator[Trade]:
        await self.start_stream()
        acc = self.exchange.account(self.account_id)
        while True:
            event = await acc.stream.get()
            if isinstance(event, BaseException):
                acc.stream = None
                raise event
            yield event

    async def close(self) -> None:
        return None
