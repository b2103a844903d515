"""The exchange port: what the platform needs from an exchange, whoever implements it.

Implemented by the ccxt gateway (Binance or the paper exchange) and by in-memory fakes in unit
tests. Domain and engine code depend on this protocol, never on ccxt.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Protocol


class Marks(dict[str, Decimal]):
    """Mark prices by symbol, with the exchange's time of the quotes (None: the answer had none).

    The time is the exchange's, not ours: under a simulated exchange clock, or after a stall, a
    mark fetched seconds ago may be minutes behind the market a new fill happened in.
    """

    def __init__(self, prices: Mapping[str, Decimal] = (), at: datetime | None = None) -> None:
        super().__init__(prices)
        self.at = at


class GatewayError(Exception):
    """Base of the platform's exchange errors (ccxt errors are translated into these once)."""


class Retryable(GatewayError):
    """Transient failure before anything happened (safe to retry a read; never resend an order blindly)."""


class RateLimited(Retryable):
    """429/418: back off for ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class UnknownOutcome(GatewayError):
    """Timeout, network error or 5xx on an order: it may or may not exist; look it up by client id."""


class Rejected(GatewayError):
    """The exchange refused the order for good (filters, balance, bad parameters)."""

    def __init__(self, message: str, code: str | None = None, reason: str = "rejected") -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason  # insufficient_funds | invalid_order | auth | …


class AuthenticationFailed(Rejected):
    """Bad API key, signature or timestamp."""


@dataclass(frozen=True, slots=True)
class OrderRequest:
    symbol: str  # exchange id, e.g. BTCUSDT
    side: str  # buy | sell
    quantity: Decimal
    client_order_id: str
    order_type: str = "market"  # market | limit
    price: Decimal | None = None
    reduce_only: bool = False
    position_side: str | None = None


@dataclass(frozen=True, slots=True)
class Trade:
    """One execution as the exchange reports it."""

    trade_id: str
    order_id: str
    client_order_id: str | None
    symbol: str
    side: str
    price: Decimal
    quantity: Decimal
    fee: Decimal
    fee_asset: str
    realised_pnl: Decimal | None
    is_maker: bool
    traded_at: datetime


@dataclass(frozen=True, slots=True)
class OrderState:
    order_id: str
    client_order_id: str
    symbol: str
    side: str
    status: str  # new | partially_filled | filled | canceled | rejected | expired
    quantity: Decimal
    filled_quantity: Decimal
    average_price: Decimal | None
    updated_at: datetime | None = None
    trades: tuple[Trade, ...] = field(default_factory=tuple)


@dataclass(slots=True)
class Placement:
    """One order of a ``place_many`` batch after its single attempt: its state, or its error.

    ``error`` is what ``place_order`` would have raised for that attempt (a ``GatewayError``, a
    ``TimeoutError``, …); nothing is retried or looked up here, the caller decides (R-COPY-11).
    """

    state: OrderState | None = None
    error: Exception | None = None
    sent_at: datetime | None = None
    acked_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Position:
    symbol: str
    quantity: Decimal  # signed: + long, - short
    entry_price: Decimal
    mark_price: Decimal | None
    unrealised_pnl: Decimal
    leverage: int


@dataclass(frozen=True, slots=True)
class FundingPayment:
    """One USDⓈ-M funding fee of the account (``amount`` signed: received +, paid −)."""

    exchange_id: str  # the exchange's income id (tranId): a payment read twice is posted once
    symbol: str
    asset: str
    amount: Decimal
    at: datetime


class ExchangeGateway(Protocol):
    """One exchange account (one API key). Order placement is never retried automatically."""

    async def place_order(self, request: OrderRequest) -> OrderState: ...

    def place_many(self, requests: Sequence[OrderRequest]) -> Awaitable[list[Placement]]:
        """Send every order once, starting now, and return an awaitable of their placements.

        Every order is on its way (written, or its send scheduled) before this returns, so a
        caller fanning out over many accounts starts them all before awaiting any; awaiting it
        creates no task. Placements come back in the order of ``requests`` and never raise.
        """
        ...

    async def order_by_client_id(self, symbol: str, client_order_id: str) -> OrderState | None: ...

    async def cancel_order(self, symbol: str, client_order_id: str) -> OrderState: ...

    async def balances(self) -> dict[str, Decimal]: ...

    async def positions(self) -> list[Position]: ...

    async def my_trades(
        self, symbol: str, from_id: str | None = None, limit: int = 1000
    ) -> list[Trade]: ...

    async def set_leverage(self, symbol: str, leverage: int) -> None: ...

    async def fetch_marks(self, symbols: Sequence[str]) -> Marks:
        """Return the mark price of each of ``symbols`` the exchange lists (absent: not listed).

        USDⓈ-M futures: the mark price of ``premiumIndex`` (what Binance values positions at);
        spot: the last traded price (spot has no mark price). One request for all symbols.
        ``Marks.at`` is the exchange's time of the quotes when the answer carries one.
        """
        ...

    async def funding_payments(self, since: datetime | None = None) -> list[FundingPayment]:
        """Return the account's funding fees at or after ``since``, oldest first (futures;
        spot: none). Binance's ``/fapi/v1/income?incomeType=FUNDING_FEE``."""
        ...

    def fills(self) -> AsyncIterator[Trade]: ...

    async def close(self) -> None: ...
