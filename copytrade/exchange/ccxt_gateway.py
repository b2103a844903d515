"""The exchange gateway on ccxt async: one instance per account, spot (binance) or USDⓈ-M (binanceusdm).

Rules kept here (ARCHITECTURE.md, R-COPY-11): every order carries our own ``clientOrderId``;
order placement is never retried; a timeout, network error or 5xx while placing or cancelling is
an ``UnknownOutcome`` that the caller resolves with ``order_by_client_id``; ccxt errors are
translated once (``copytrade.exchange.errors``); amounts are read from Binance's raw strings, never
from ccxt's floats; API keys and signatures are never logged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime
from decimal import Decimal

import ccxt.async_support as ccxt

from copytrade import clock
from copytrade.domain.markets import Market
from copytrade.domain.money import ZERO
from copytrade.exchange.binance_fastpath import LeanOrders, Pending, SigningKey, timestamp
from copytrade.exchange.errors import translate
from copytrade.exchange.protocol import (
    FundingPayment,
    Marks,
    OrderRequest,
    OrderState,
    Placement,
    Position,
    Rejected,
    Retryable,
    Trade,
    UnknownOutcome,
)
from copytrade.exchange.stream import UserDataStream

log = logging.getLogger("copytrade.exchange")
SPOT, FUTURES = "spot", "futures"

_STATUS = {
    "NEW": "new",
    "PARTIALLY_FILLED": "partially_filled",
    "FILLED": "filled",
    "CANCELED": "canceled",
    "PENDING_CANCEL": "canceled",
    "REJECTED": "rejected",
    "EXPIRED": "expired",
    "EXPIRED_IN_MATCH": "expired",
}


def _dec(value: object, default: Decimal = ZERO) -> Decimal:
    if value is None or value == "":
        return default
    return Decimal(str(value)) if not isinstance(value, float) else Decimal(repr(value))


def _ms(value: object) -> datetime | None:
    if value in (None, "", 0):
        return None
    return datetime.fromtimestamp(int(value) / 1000, tz=UTC)


class CcxtGateway:
    """One exchange account (one API key) on Binance or the paper exchange, through ccxt.

    The account's ccxt client is built on first use (``build_client``): a copy that only sends
    market orders and sets leverage (the lean path, signed with ``key``) never needs one, and a
    shard of thousands of followers then starts in seconds, not minutes.
    """

    def __init__(
        self,
        build_client: Callable[[], ccxt.binance],
        key: SigningKey | None,
        kind: str,
        markets: dict[str, Market],
        stream_url: str,
        account_label: str = "",
    ) -> None:
        if kind not in (SPOT, FUTURES):
            raise ValueError(f"kind: {kind!r} is not spot or futures")
        self._build_client = build_client
        self._exchange: ccxt.binance | None = None
        self._key = key
        self.kind = kind
        self.markets = markets
        self.stream_url = stream_url
        self.label = account_label or "account"
        self._market_type = "spot" if kind == SPOT else "linear"
        self._stream = None
        self._lean: LeanOrders | None = None
        self._lean_checked = False

    def __repr__(self) -> str:  # never shows the key
        return f"CcxtGateway({self.kind}, {self.label})"

    @property
    def exchange(self) -> ccxt.binance:
        """The account's ccxt client (built now if it was not yet)."""
        if self._exchange is None:
            self._exchange = self._build_client()
        return self._exchange

    def _client(self, build: bool = True) -> ccxt.binance | None:
        return self.exchange if build else self._exchange

    # -- helpers -----------------------------------------------------------------------------------

    def market(self, symbol: str) -> Market:
        """Return the domain market (precision, filters) of an exchange symbol id."""
        try:
            return self.markets[symbol]
        except KeyError:
            raise Rejected(
                f"symbol: {symbol!r} is not listed on this exchange", reason="invalid_order"
            ) from None

    def _unified(self, symbol: str) -> str:
        self.market(symbol)
        return self.exchange.markets_by_id[symbol][0]["symbol"]

    async def _call(self, coro, *, changes_state: bool = False):
        try:
            return await coro
        except ccxt.BaseError as exc:
            raise translate(
                exc, self.exchange, self._market_type, outcome_unknown_on_failure=changes_state
            ) from None
        except (TimeoutError, OSError) as exc:
            raise translate(
                exc, self.exchange, self._market_type, outcome_unknown_on_failure=changes_state
            ) from None

    # -- orders ------------------------------------------------------------------------------------

    def _check(self, request: OrderRequest) -> None:
        """Refuse what no exchange would accept, before anything is sent."""
        if not request.client_order_id:
            raise Rejected(
                "client_order_id: empty; every order carries our own id (R-COPY-11)",
                reason="invalid_order",
            )
        if request.side not in ("buy", "sell"):
            raise Rejected(f"side: {request.side!r} is not buy or sell", reason="invalid_order")
        if request.order_type not in ("market", "limit"):
            raise Rejected(
                f"order_type: {request.order_type!r} is not market or limit", reason="invalid_order"
            )
        self.market(request.symbol)
        if self._stream is not None:
            self._stream.watch_symbol(request.symbol)

    def _lean_path(self, request: OrderRequest) -> LeanOrders | None:
        """The lean path for a market order (built on first use); None for anything else.

        A hedge-mode ``position_side`` goes through ccxt: the lean body does not carry it.
        """
        if request.order_type != "market" or request.position_side:
            return None
        return self._lean_account()

    def _lean_account(self) -> LeanOrders | None:
        """The account's lean signed-POST path (built on first use); None without an API key."""
        if not self._lean_checked:
            self._lean_checked = True
            if self._key is not None:
                self._lean = LeanOrders(
                    self._key, self._client, self.kind == FUTURES, self._order_state
                )
        return self._lean

    async def place_order(self, request: OrderRequest) -> OrderState:
        """Send one order with our client order id; never retried (UnknownOutcome on doubt).

        Market orders take the lean signed POST on a kept-alive connection
        (``binance_fastpath``); limit orders go through ccxt's ``create_order``.
        """
        self._check(request)
        lean = self._lean_path(request)
        if lean is not None:
            return await lean.post(request)
        symbol = self._unified(request.symbol)
        params: dict = {"clientOrderId": request.client_order_id}
        if self.kind == FUTURES:
            if request.reduce_only:
                params["reduceOnly"] = True
            if request.position_side:
                params["positionSide"] = request.position_side.upper()
        if request.order_type == "limit":
            if request.price is None:
                raise Rejected("price: a limit order needs a price", reason="invalid_order")
            params["timeInForce"] = "GTC"
        price = str(request.price) if request.price is not None else None
        order = await self._call(
            self.exchange.create_order(
                symbol, request.order_type, request.side, str(request.quantity), price, params
            ),
            changes_state=True,
        )
        return self._order_state(order["info"], request.side)

    def place_many(self, requests: Sequence[OrderRequest]) -> Awaitable[list[Placement]]:
        """Send every order once, starting now; return an awaitable of their ``Placement``s.

        Every market order that finds an idle kept-alive connection is signed and written right
        here, one after the other (no task, timer or coroutine per order); the others get one
        task each through ``place_order``. Awaiting the result waits for all answers at once.
        """
        stamp, began = timestamp(), time.monotonic()
        started: list[Pending | asyncio.Task | Placement] = []
        for request in requests:
            try:
                self._check(request)
            except Rejected as exc:
                started.append(Placement(error=exc, sent_at=clock.now()))
                continue
            lean = self._lean_path(request)
            pending = lean.begin(request, stamp) if lean is not None else None
            started.append(pending or asyncio.ensure_future(_placed(self.place_order(request))))
        return self._placements(started, began)

    async def _placements(self, started: list, began: float) -> list[Placement]:
        lean = self._lean
        waiters = [p.waiter for p in started if isinstance(p, Pending) and not p.waiter.done()]
        if waiters:  # the deadline runs from the write, however late the caller awaits
            left = lean.timeout - (time.monotonic() - began)
            await asyncio.wait(waiters, timeout=max(left, 0.0))
        out: list[Placement] = []
        for item in started:
            if isinstance(item, Placement):
                out.append(item)
            elif not isinstance(item, Pending):
                out.append(await item)
            else:
                try:
                    state = lean.finish(item)
                except Exception as exc:  # settled by the caller: lookups, retries, resend
                    out.append(Placement(error=exc, sent_at=item.sent_at()))
                else:
                    out.append(Placement(state, sent_at=item.sent_at(), acked_at=item.acked_at()))
        return out

    async def order_by_client_id(self, symbol: str, client_order_id: str) -> OrderState | None:
        """Return the order with this client id, or None if the exchange does not know it."""
        unified = self._unified(symbol)
        try:
            order = await self._call(
                self.exchange.fetch_order(None, unified, {"origClientOrderId": client_order_id})
            )
        except Rejected as exc:
            if exc.reason == "not_found":
                return None
            raise
        return self._order_state(order["info"])

    async def resolve_unknown(
        self, request: OrderRequest, attempts: int = 5, delay: float = 0.5
    ) -> OrderState | None:
        """Look up an order whose placement had an unknown outcome; None when it does not exist.

        Transient read failures are retried (reads are safe); a definite "not found" is returned
        as None, and the caller decides whether to send again under the same client id.
        """
        last: Exception | None = None
        for attempt in range(attempts):
            try:
                return await self.order_by_client_id(request.symbol, request.client_order_id)
            except Retryable as exc:  # includes RateLimited
                last = exc
                wait = getattr(exc, "retry_after", None) or delay * (2**attempt)
                await asyncio.sleep(min(wait, 30))
        raise UnknownOutcome(
            f"order {request.client_order_id} still unknown after {attempts} lookups: {last}"
        )

    async def cancel_order(self, symbol: str, client_order_id: str) -> OrderState:
        """Cancel by client id; an order already done comes back in its final state."""
        unified = self._unified(symbol)
        try:
            order = await self._call(
                self.exchange.cancel_order(None, unified, {"origClientOrderId": client_order_id}),
                changes_state=True,
            )
        except Rejected as exc:
            if exc.reason != "not_found":
                raise
            state = await self.order_by_client_id(symbol, client_order_id)
            if state is None:
                raise
            return state
        return self._order_state(order["info"])

    async def open_orders(self, symbol: str | None = None) -> list[OrderState]:
        unified = self._unified(symbol) if symbol else None
        orders = await self._call(self.exchange.fetch_open_orders(unified))
        return [self._order_state(o["info"]) for o in orders]

    def _order_state(self, info: dict, side: str | None = None) -> OrderState:
        executed = _dec(info.get("executedQty"))
        quote = _dec(info.get("cummulativeQuoteQty", info.get("cumQuote")))
        average = _dec(info.get("avgPrice")) or (quote / executed if executed else ZERO)
        order_id = str(info.get("orderId"))
        client_id = info.get("clientOrderId") or info.get("origClientOrderId") or ""
        updated = _ms(info.get("updateTime") or info.get("transactTime"))
        trades = tuple(
            Trade(
                trade_id=str(f["tradeId"]),
                order_id=order_id,
                client_order_id=client_id,
                symbol=info["symbol"],
                side=(side or info.get("side", "")).lower(),
                price=_dec(f["price"]),
                quantity=_dec(f["qty"]),
                fee=_dec(f["commission"]),
                fee_asset=f["commissionAsset"],
                realised_pnl=None,
                is_maker=False,
                traded_at=updated or clock.now(),
            )
            for f in info.get("fills") or ()
        )
        return OrderState(
            order_id=order_id,
            client_order_id=client_id,
            symbol=info["symbol"],
            side=(info.get("side") or side or "").lower(),
            status=_STATUS.get(info.get("status", ""), str(info.get("status", "")).lower()),
            quantity=_dec(info.get("origQty")),
            filled_quantity=executed,
            average_price=average or None,
            updated_at=updated,
            trades=trades,
        )

    async def last_price(self, symbol: str) -> Decimal:
        """Return the last traded price of ``symbol`` (Binance's ticker/price, exact)."""
        market_id = self.market(symbol).symbol
        if self.kind == SPOT:
            coro = self.exchange.publicGetTickerPrice({"symbol": market_id})
        else:
            coro = self.exchange.fapiPublicGetTickerPrice({"symbol": market_id})
        row = await self._call(coro)
        return _dec(row["price"])

    async def fetch_marks(self, symbols: Sequence[str]) -> Marks:
        """Return the marks of ``symbols``: USDⓈ-M ``premiumIndex`` markPrice, spot last price.

        One unfiltered request (weight 10 on futures, 4 on spot), then the asked symbols kept:
        cheaper than one request per symbol once a handful are held.
        """
        wanted = set(symbols)
        if not wanted:
            return Marks()
        if self.kind == SPOT:
            rows = await self._call(self.exchange.publicGetTickerPrice())
            key = "price"
        else:
            rows = await self._call(self.exchange.fapiPublicGetPremiumIndex())
            key = "markPrice"
        if isinstance(rows, dict):
            rows = [rows]
        out = Marks()
        for row in rows:
            price = _dec(row.get(key))
            if row.get("symbol") in wanted and price > 0:
                out[row["symbol"]] = price
                if row.get("time"):  # premiumIndex carries the exchange's time; spot's ticker not
                    at = datetime.fromtimestamp(int(row["time"]) / 1000, tz=UTC)
                    out.at = at if out.at is None else max(out.at, at)
        return out

    async def funding_payments(self, since: datetime | None = None) -> list[FundingPayment]:
        """Return the account's funding fees at or after ``since`` (at most 1,000, oldest first)."""
        if self.kind == SPOT:
            return []
        params = {"incomeType": "FUNDING_FEE", "limit": 1000}
        if since is not None:
            params["startTime"] = int(since.timestamp() * 1000)
        rows = await self._call(self.exchange.fapiPrivateGetIncome(params))
        return [
            FundingPayment(
                exchange_id=str(row["tranId"]),
                symbol=row.get("symbol", ""),
                asset=row.get("asset", "USDT"),
                amount=_dec(row.get("income")),
                at=_ms(row.get("time")) or clock.now(),
            )
            for row in rows
            if _dec(row.get("income"))
        ]

    # -- account -----------------------------------------------------------------------------------

    async def balances(self) -> dict[str, Decimal]:
        """Return free balances per asset (spot), or the futures wallet's available balance."""
        raw = await self._call(self.exchange.fetch_balance())
        info = raw["info"]
        if self.kind == SPOT:
            return {
                b["asset"]: _dec(b["free"])
                for b in info.get("balances", [])
                if _dec(b["free"]) or _dec(b["locked"])
            }
        return {a["asset"]: _dec(a["availableBalance"]) for a in info.get("assets", [])}

    async def wallet(self) -> dict[str, dict[str, Decimal]]:
        """Return the full balances: spot free/locked, or futures wallet/available/unrealised PnL."""
        raw = await self._call(self.exchange.fetch_balance())
        info = raw["info"]
        if self.kind == SPOT:
            return {
                b["asset"]: {"free": _dec(b["free"]), "locked": _dec(b["locked"])}
                for b in info.get("balances", [])
            }
        return {
            a["asset"]: {
                "wallet": _dec(a["walletBalance"]),
                "available": _dec(a["availableBalance"]),
                "unrealised_pnl": _dec(a.get("unrealizedProfit")),
            }
            for a in info.get("assets", [])
        }

    async def positions(self) -> list[Position]:
        """Return the open USDⓈ-M positions (an empty list for spot)."""
        if self.kind == SPOT:
            return []
        rows = await self._call(self.exchange.fetch_positions())
        out = []
        for row in rows:
            info = row["info"]
            qty = _dec(info.get("positionAmt"))
            if not qty:
                continue
            leverage = info.get("leverage") or row.get("leverage") or 0
            out.append(
                Position(
                    symbol=info["symbol"],
                    quantity=qty,
                    entry_price=_dec(info.get("entryPrice")),
                    mark_price=_dec(info.get("markPrice")) or None,
                    unrealised_pnl=_dec(info.get("unRealizedProfit", info.get("unrealizedProfit"))),
                    leverage=int(Decimal(str(leverage))),
                )
            )
        return out

    async def my_trades(
        self, symbol: str, from_id: str | None = None, limit: int = 1000
    ) -> list[Trade]:
        """Return this account's trades of ``symbol`` with id ≥ ``from_id`` (Binance's ``fromId``)."""
        unified = self._unified(symbol)
        params = {"fromId": str(from_id)} if from_id is not None else {}
        rows = await self._call(self.exchange.fetch_my_trades(unified, None, limit, params))
        return [self._trade(r["info"]) for r in rows]

    def _trade(self, info: dict) -> Trade:
        if self.kind == SPOT:
            side, maker, pnl = (
                ("buy" if info.get("isBuyer") else "sell"),
                bool(info.get("isMaker")),
                None,
            )
        else:
            side, maker, pnl = (
                info["side"].lower(),
                bool(info.get("maker")),
                _dec(info.get("realizedPnl")),
            )
        return Trade(
            trade_id=str(info["id"]),
            order_id=str(info["orderId"]),
            client_order_id=None,  # Binance's trade lists do not carry it; join on order_id
            symbol=info["symbol"],
            side=side,
            price=_dec(info["price"]),
            quantity=_dec(info["qty"]),
            fee=_dec(info["commission"]),
            fee_asset=info["commissionAsset"],
            realised_pnl=pnl,
            is_maker=maker,
            traded_at=_ms(info["time"]) or clock.now(),
        )

    async def set_leverage(self, symbol: str, leverage: int) -> None:
        if self.kind == SPOT:
            raise Rejected("leverage: spot accounts have no leverage", reason="invalid_order")
        lean = self._lean_account()
        if lean is not None:  # the signed POST on the account's kept-alive pool
            await lean.set_leverage(self.market(symbol).symbol, leverage)
            return
        await self._call(
            self.exchange.set_leverage(leverage, self._unified(symbol)), changes_state=False
        )

    async def set_margin_mode(self, symbol: str, mode: str) -> None:
        """Set ``isolated`` or ``cross`` margin; already set is not an error."""
        if self.kind == SPOT:
            raise Rejected("margin mode: spot accounts have no margin mode", reason="invalid_order")
        try:
            await self.exchange.set_margin_mode(mode, self._unified(symbol))
        except ccxt.MarginModeAlreadySet:
            return
        except ccxt.BaseError as exc:
            if "No need to change margin type" in str(exc):
                return
            raise translate(
                exc, self.exchange, self._market_type, outcome_unknown_on_failure=False
            ) from None

    # -- stream ------------------------------------------------------------------------------------

    def _user_stream(self) -> UserDataStream:
        if self._stream is None:
            self._stream = UserDataStream(self)
        return self._stream

    async def start_stream(self, timeout: float = 10.0) -> None:
        """Subscribe to the user-data stream now; fills from here on are delivered by ``fills()``."""
        await self._user_stream().start(timeout)

    def fills(self) -> AsyncIterator[Trade]:
        """Return the account's fills as they happen (user-data websocket, reconnecting, deduplicated)."""
        return self._user_stream().fills()

    async def close(self) -> None:
        if self._lean is not None:
            self._lean.close()
        if self._stream is not None:
            await self._stream.close()
        if self._exchange is not None:
            await self._exchange.close()


async def _placed(sending) -> Placement:
    """Await one ``place_order`` and return its placement (its error kept, never raised)."""
    sent_at = clock.now()
    try:
        state = await sending
    except Exception as exc:
        return Placement(error=exc, sent_at=sent_at)
    return Placement(state, sent_at=sent_at, acked_at=clock.now())
