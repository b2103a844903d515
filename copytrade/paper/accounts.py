"""In-memory state of paper accounts: balances, orders, trades, futures positions.

Every amount is an exact ``Decimal``. Each account keeps the list of its money movements
(``journal``: deposits, fills, fees, realised PnL, funding) so that balances can be checked
against their history (tests/unit/paper/test_balance_property.py).
"""

from __future__ import annotations

import secrets
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal

from copytrade.domain.money import ZERO


@dataclass(slots=True)
class Order:
    order_id: int
    client_order_id: str
    account_id: str
    kind: str  # spot | futures
    symbol: str
    side: str  # BUY | SELL
    type: str  # MARKET | LIMIT | LIMIT_MAKER | spot STOP_LOSS(_LIMIT) | TAKE_PROFIT(_LIMIT)
    time_in_force: str
    quantity: Decimal
    price: Decimal
    created_ms: int
    status: str = "NEW"
    executed_qty: Decimal = ZERO
    cum_quote: Decimal = ZERO
    updated_ms: int = 0
    reduce_only: bool = False
    locked: Decimal = ZERO  # spot: still reserved (quote for buys, base for sells)
    quote_order_qty: Decimal = ZERO
    iceberg_qty: Decimal = ZERO
    self_trade_prevention: str = "NONE"
    stop_price: Decimal = ZERO  # spot stop-loss / take-profit trigger
    working: bool = True  # False while a spot stop order waits for its trigger
    working_ms: int = -1

    @property
    def remaining(self) -> Decimal:
        return self.quantity - self.executed_qty

    @property
    def is_open(self) -> bool:
        return self.status in ("NEW", "PARTIALLY_FILLED")

    @property
    def is_limit(self) -> bool:
        """True for the types that carry a limit price (LIMIT, LIMIT_MAKER, *_LIMIT)."""
        return self.type.startswith("LIMIT") or self.type.endswith("_LIMIT")

    @property
    def average_price(self) -> Decimal:
        return self.cum_quote / self.executed_qty if self.executed_qty else ZERO


@dataclass(slots=True)
class AlgoOrder:
    """A USDⓈ-M conditional order (``/fapi/v1/algoOrder``): it waits for its trigger on the
    replayed price, then places an actual order (``actual_order_id``) and is TRIGGERED."""

    algo_id: int
    client_algo_id: str
    account_id: str
    symbol: str
    side: str
    order_type: str  # STOP | STOP_MARKET | TAKE_PROFIT | TAKE_PROFIT_MARKET | TRAILING_STOP_MARKET
    quantity: Decimal
    price: Decimal
    trigger_price: Decimal
    time_in_force: str
    working_type: str  # CONTRACT_PRICE | MARK_PRICE
    reduce_only: bool
    close_position: bool
    created_ms: int
    callback_rate: Decimal = ZERO  # trailing: percent
    activate_price: Decimal = ZERO  # trailing: 0 = active at once
    extreme: Decimal = ZERO  # trailing: best price since activation (peak for sells)
    self_trade_prevention: str = "NONE"
    status: str = "NEW"  # NEW | CANCELED | TRIGGERED | EXPIRED
    updated_ms: int = 0
    trigger_ms: int = 0
    actual_order_id: int | None = None

    @property
    def is_open(self) -> bool:
        return self.status == "NEW"


@dataclass(frozen=True, slots=True)
class Fill:
    """One execution of one order (a Binance trade as its owner sees it)."""

    trade_id: int
    order_id: int
    client_order_id: str
    account_id: str
    kind: str
    symbol: str
    side: str
    price: Decimal
    qty: Decimal
    quote_qty: Decimal
    commission: Decimal
    commission_asset: str
    realized_pnl: Decimal
    is_maker: bool
    time_ms: int


@dataclass(slots=True)
class Position:
    """A one-way-mode USDⓈ-M position; ``qty`` is signed (+ long, − short)."""

    symbol: str
    qty: Decimal = ZERO
    entry_price: Decimal = ZERO
    updated_ms: int = 0


@dataclass(slots=True)
class Account:
    """One paper account (one API key): a spot wallet and a USDⓈ-M futures wallet."""

    account_id: str
    name: str
    api_key: str
    secret: bytes = field(repr=False)
    spot_maker_fee: Decimal = Decimal("0.001")
    spot_taker_fee: Decimal = Decimal("0.001")
    futures_maker_fee: Decimal = Decimal("0.0002")
    futures_taker_fee: Decimal = Decimal("0.0004")
    spot_free: dict[str, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    spot_locked: dict[str, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    futures_wallet: dict[str, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    positions: dict[str, Position] = field(default_factory=dict)
    leverage: dict[str, int] = field(default_factory=dict)
    margin_type: dict[str, str] = field(default_factory=dict)
    orders: dict[tuple[str, int], Order] = field(default_factory=dict)
    by_client_id: dict[tuple[str, str, str], Order] = field(default_factory=dict)
    algo_orders: dict[int, AlgoOrder] = field(default_factory=dict)
    open_orders: dict[tuple[str, int], Order] = field(default_factory=dict)
    fills: dict[tuple[str, str], list[Fill]] = field(default_factory=lambda: defaultdict(list))
    journal: list[tuple[str, str, str, Decimal]] = field(default_factory=list)
    income: list[dict] = field(default_factory=list)  # /fapi/v1/income rows (funding fees)
    updated_ms: int = 0

    def fees(self, kind: str) -> tuple[Decimal, Decimal]:
        """Return (maker, taker) rates for spot or futures."""
        if kind == "spot":
            return self.spot_maker_fee, self.spot_taker_fee
        return self.futures_maker_fee, self.futures_taker_fee

    def leverage_of(self, symbol: str) -> int:
        return self.leverage.get(symbol, 20)

    def record(self, wallet: str, asset: str, reason: str, amount: Decimal) -> None:
        """Append one money movement to the journal (wallet is spot or futures)."""
        if amount:
            self.journal.append((wallet, asset, reason, amount))

    def move_spot(self, asset: str, amount: Decimal, reason: str) -> None:
        self.spot_free[asset] += amount
        self.record("spot", asset, reason, amount)

    def move_futures(self, asset: str, amount: Decimal, reason: str) -> None:
        self.futures_wallet[asset] += amount
        self.record("futures", asset, reason, amount)


def new_credentials() -> tuple[str, str]:
    """Return a fresh (api key, secret) pair shaped like Binance's (64 alphanumerics each)."""
    return secrets.token_hex(32), secrets.token_hex(32)
