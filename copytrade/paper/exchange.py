"""The paper exchange's engine: accounts, orders, fills, futures positions, funding, price ticks.

Pure in-memory state, driven by the HTTP handlers and by ``tick()`` (called periodically by the
server). Runs on one event loop: no locks, no awaits inside a state change.
"""

from __future__ import annotations

import itertools
import re
import secrets
import time
from collections import defaultdict
from collections.abc import Callable
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, ROUND_UP, Decimal

from copytrade.domain.markets import FilterFailure, Market
from copytrade.domain.money import UNIT, ZERO, to_decimal
from copytrade.paper import errors as E
from copytrade.paper import views
from copytrade.paper.accounts import Account, Fill, Order, Position, new_credentials
from copytrade.paper.book import BookConfig, level_price, level_quantity, sweep
from copytrade.paper.catalog import FUTURES, SPOT, Catalog, PaperMarket
from copytrade.paper.errors import BinanceError, err
from copytrade.paper.market_data import MarketData
from copytrade.paper.prices import SimClock

CLIENT_ID_RE = re.compile(r"^[\.A-Z\:/a-z0-9_-]{1,36}$")
MAX_POINTS_PER_TICK = 5_000

EventSink = Callable[[str, str, dict], None]  # (account_id, kind, event)


def wall_ms() -> int:
    return int(time.time() * 1000)


def q8(value: Decimal, rounding: str = ROUND_HALF_EVEN) -> Decimal:
    return value.quantize(UNIT, rounding=rounding)


class PaperExchange:
    """All accounts and markets of one paper exchange."""

    def __init__(
        self,
        catalog: Catalog,
        data: MarketData,
        clock: SimClock,
        book: BookConfig | None = None,
    ) -> None:
        self.catalog = catalog
        self.data = data
        self.clock = clock
        self.book = book or BookConfig()
        self.book_overrides: dict[tuple[str, str], BookConfig] = {}
        self.price_overrides: dict[tuple[str, str], Decimal] = {}
        self.accounts: dict[str, Account] = {}
        self.by_key: dict[str, Account] = {}
        self._account_seq = itertools.count(1)
        self._order_seq = {SPOT: itertools.count(1_000_001), FUTURES: itertools.count(5_000_001)}
        self._trade_seq = {SPOT: itertools.count(100_001), FUTURES: itertools.count(500_001)}
        self._resting: dict[tuple[str, str], dict[int, Order]] = defaultdict(dict)
        self._last_index: dict[tuple[str, str], int] = {}
        self._last_funding_ms = clock.now_ms()
        # Times in answers and events: wall clock, as a live exchange's; or the simulated clock,
        # so a replay records its trades on the days they happened (the demo).
        self.simulated_timestamps = False
        self.sinks: list[EventSink] = []
        # Building events costs as much as matching; skip it for accounts nobody listens to.
        self.is_listened: Callable[[str, str], bool] = lambda account_id, kind: True

    # -- accounts ------------------------------------------------------------------------------

    def create_account(
        self,
        name: str | None = None,
        spot: dict[str, Decimal] | None = None,
        futures: dict[str, Decimal] | None = None,
        fees: dict[str, Decimal] | None = None,
        api_key: str | None = None,
        api_secret: str | None = None,
    ) -> Account:
        """Open an account with its API key and secret, and deposit the given balances."""
        number = next(self._account_seq)
        account_id = f"acc-{number}"
        key, secret = new_credentials()
        key, secret = api_key or key, api_secret or secret
        if key in self.by_key:
            raise ValueError(f"api_key: {key[:6]}… is already in use")
        account = Account(account_id, name or account_id, key, secret.encode())
        for attr, value in (fees or {}).items():
            if not hasattr(account, attr) or not attr.endswith("_fee"):
                raise ValueError(
                    f"fees: unknown fee {attr!r} (spot_maker_fee, spot_taker_fee, futures_maker_fee, futures_taker_fee)"
                )
            setattr(account, attr, to_decimal(value, attr))
        self.accounts[account_id] = account
        self.by_key[key] = account
        for asset, amount in (spot or {}).items():
            self.deposit(account, SPOT, asset, to_decimal(amount, asset))
        for asset, amount in (futures or {}).items():
            self.deposit(account, FUTURES, asset, to_decimal(amount, asset))
        return account

    def deposit(self, account: Account, wallet: str, asset: str, amount: Decimal) -> None:
        """Credit (or, negative, debit) a wallet from outside; refuse a debit below zero."""
        now = self.stamp_ms()
        if wallet == SPOT:
            if account.spot_free[asset] + amount < 0:
                raise ValueError(f"amount: {amount} {asset} would make the spot balance negative")
            account.move_spot(asset, amount, "deposit")
            self._emit(
                account.account_id, SPOT, views.outbound_account_position(account, [asset], now)
            )
        elif wallet == FUTURES:
            if account.futures_wallet[asset] + amount < 0:
                raise ValueError(f"amount: {amount} {asset} would make the futures wallet negative")
            account.move_futures(asset, amount, "deposit")
            self._emit(
                account.account_id,
                FUTURES,
                views.futures_account_update(self, account, "DEPOSIT", [], now),
            )
        else:
            raise ValueError(f"wallet: {wallet!r} is not spot or futures")

    def account_by_key(self, api_key: str) -> Account | None:
        return self.by_key.get(api_key)

    # -- prices --------------------------------------------------------------------------------

    def market(self, kind: str, symbol: str | None) -> PaperMarket:
        if not symbol:
            raise E.mandatory("symbol")
        pm = self.catalog.get(kind, symbol)
        if pm is None:
            raise err(E.INVALID_SYMBOL)
        return pm

    def price(self, kind: str, symbol: str) -> Decimal:
        """Return the last price: an admin override, else the replayed path at the simulated time."""
        override = self.price_overrides.get((kind, symbol))
        if override is not None:
            return override
        return self.data.path(kind, symbol).price_at(self.clock.now_ms())

    def mark_price(self, symbol: str) -> Decimal:
        override = self.price_overrides.get((FUTURES, symbol))
        mark = self.data.marks.get(symbol)
        if mark is not None and override is None:
            return mark.price_at(self.clock.now_ms())
        return self.price(FUTURES, symbol)

    def book_config(self, kind: str, symbol: str) -> BookConfig:
        return self.book_overrides.get((kind, symbol), self.book)

    def depth(self, kind: str, symbol: str, limit: int) -> tuple[list, list]:
        from copytrade.paper.book import depth

        pm = self.market(kind, symbol)
        return depth(self.price(kind, symbol), pm.market, self.book_config(kind, symbol), limit)

    def set_price(self, kind: str, symbol: str, price: Decimal | None) -> None:
        """Pin a symbol's price (``None`` returns it to its path) and match resting orders."""
        self.market(kind, symbol)
        if price is None:
            self.price_overrides.pop((kind, symbol), None)
        else:
            if price <= 0:
                raise ValueError(f"price: {price} must be positive")
            self.price_overrides[(kind, symbol)] = price
            self._match_resting(kind, symbol, [price])

    # -- events --------------------------------------------------------------------------------

    def _emit(self, account_id: str, kind: str, event: dict) -> None:
        for sink in self.sinks:
            sink(account_id, kind, event)

    # -- orders --------------------------------------------------------------------------------

    def place_order(
        self, account: Account, kind: str, p: dict[str, str]
    ) -> tuple[Order, list[Fill]]:
        """Validate and execute a new order; return it with its immediate fills."""
        pm = self.market(kind, p.get("symbol"))
        market = pm.market
        side = (p.get("side") or "").upper()
        if side not in ("BUY", "SELL"):
            raise E.mandatory("side") if not side else BinanceError(-1117, "Invalid side.")
        otype = (p.get("type") or "").upper()
        if otype not in ("MARKET", "LIMIT"):
            raise E.mandatory("type") if not otype else BinanceError(-1116, "Invalid orderType.")
        client_id = p.get("newClientOrderId") or f"paper_{secrets.token_hex(8)}"
        if not CLIENT_ID_RE.match(client_id):
            raise BinanceError(
                -1100,
                "Illegal characters found in parameter 'newClientOrderId'; legal range is "
                "'^[\\.A-Z\\:/a-z0-9_-]{1,36}$'.",
            )
        existing = account.by_client_id.get((kind, pm.symbol, client_id))
        if existing is not None and existing.is_open:
            raise err(E.DUPLICATE_ORDER if kind == SPOT else E.DUPLICATE_CLIENT_ID_FUTURES)
        price = _decimal_param(p, "price") if otype == "LIMIT" else ZERO
        tif = (p.get("timeInForce") or "").upper()
        if otype == "LIMIT":
            if price is None:
                raise E.mandatory("price")
            if tif not in ("GTC", "IOC", "FOK", "GTX"):
                raise E.mandatory("timeInForce")
        mid = self.price(kind, pm.symbol)
        quote_order_qty = _decimal_param(p, "quoteOrderQty") if kind == SPOT else None
        quantity = _decimal_param(p, "quantity")
        if quantity is None and quote_order_qty is not None and otype == "MARKET":
            quantity = self._quantity_for_quote(kind, market, side, quote_order_qty, mid)
        if quantity is None:
            raise E.mandatory("quantity")
        reduce_only = (p.get("reduceOnly") or "").lower() == "true"
        check_price = price if otype == "LIMIT" else mid
        if kind == SPOT:
            try:
                market.check_order(quantity, check_price, market_order=otype == "MARKET")
            except FilterFailure as exc:
                raise BinanceError(exc.code, f"Filter failure: {exc.filter_type}") from None
        else:
            _check_futures_filters(
                market, quantity, price if otype == "LIMIT" else None, mid, reduce_only
            )

        now = self.stamp_ms()
        order = Order(
            order_id=next(self._order_seq[kind]),
            client_order_id=client_id,
            account_id=account.account_id,
            kind=kind,
            symbol=pm.symbol,
            side=side,
            type=otype,
            time_in_force=tif if otype == "LIMIT" else ("GTC" if kind == FUTURES else ""),
            quantity=quantity,
            price=price or ZERO,
            created_ms=now,
            updated_ms=now,
            reduce_only=reduce_only,
            quote_order_qty=quote_order_qty or ZERO,
        )
        book = self.book_config(kind, pm.symbol)
        taker = sweep(
            mid, market, book, side.lower(), quantity, price if otype == "LIMIT" else None
        )
        if otype == "LIMIT" and tif == "GTX" and taker:
            raise BinanceError(
                -5022,
                "Due to the order could not be executed as maker, the Post Only order will be rejected.",
            )
        if otype == "LIMIT" and tif == "FOK" and sum(q for _, q in taker) < quantity:
            taker = []
        if kind == SPOT:
            self._reserve_spot(account, market, order, taker)
        else:
            self._check_margin(account, market, order, taker, mid)
        self._register(account, order)
        self._emit_order(account, order, None, "NEW", now)
        fills = [
            self._execute(account, pm, order, fp, fq, is_maker=False, now=now) for fp, fq in taker
        ]
        if order.is_open and (otype == "MARKET" or tif in ("IOC", "FOK")):
            self._close(account, order, "EXPIRED", now)
        elif order.is_open:
            self._resting[(kind, pm.symbol)][order.order_id] = order
        self._emit_balances(account, kind, pm, now)
        return order, fills

    def _quantity_for_quote(
        self, kind: str, market: Market, side: str, quote: Decimal, mid: Decimal
    ) -> Decimal:
        book = self.book_config(kind, market.symbol)
        best = level_price(mid, market, book, "ask" if side == "BUY" else "bid", 0)
        return market.round_amount(quote / best, market_order=False)

    def _reserve_spot(self, account: Account, market: Market, order: Order, taker: list) -> None:
        """Check the spot balance and lock what a resting remainder needs."""
        if order.side == "BUY":
            # Binance locks quantity × limit price; a market buy needs what the sweep costs.
            if order.type == "LIMIT":
                need = order.quantity * order.price
            else:
                need = sum((fp * fq for fp, fq in taker), ZERO)
            asset = market.quote
        else:
            need = order.quantity
            asset = market.base
        if account.spot_free[asset] < need:
            raise err(E.INSUFFICIENT_BALANCE)
        account.spot_free[asset] -= need
        account.spot_locked[asset] += need
        order.locked = need

    def _position(self, account: Account, symbol: str) -> Position:
        pos = account.positions.get(symbol)
        if pos is None:
            pos = account.positions[symbol] = Position(symbol)
        return pos

    def _check_margin(
        self, account: Account, market: Market, order: Order, taker: list, mid: Decimal
    ) -> None:
        """Refuse a futures order whose added exposure needs more margin than is available."""
        pos = account.positions.get(market.symbol)
        held = pos.qty if pos else ZERO
        signed = order.quantity if order.side == "BUY" else -order.quantity
        if order.reduce_only:
            if held == 0 or (held > 0) == (signed > 0):
                raise err(E.REDUCE_ONLY_REJECTED)
            if abs(signed) > abs(held):
                order.quantity = abs(held)
            return
        increase = (
            max(abs(held + signed) - abs(held), ZERO)
            if (held == 0 or (held > 0) == (signed > 0))
            else max(abs(signed) - abs(held), ZERO)
        )
        if increase == 0:
            return
        px = order.price if order.type == "LIMIT" else (taker[-1][0] if taker else mid)
        required = increase * px / account.leverage_of(market.symbol)
        if required > self.available_balance(account):
            raise err(E.MARGIN_INSUFFICIENT)

    def _register(self, account: Account, order: Order) -> None:
        account.orders[(order.kind, order.order_id)] = order
        account.by_client_id[(order.kind, order.symbol, order.client_order_id)] = order
        account.open_orders[(order.kind, order.order_id)] = order

    def _execute(
        self,
        account: Account,
        pm: PaperMarket,
        order: Order,
        price: Decimal,
        qty: Decimal,
        *,
        is_maker: bool,
        now: int,
    ) -> Fill:
        """Apply one fill of ``order`` to the account and emit its events."""
        kind, market = order.kind, pm.market
        maker_fee, taker_fee = account.fees(kind)
        rate = maker_fee if is_maker else taker_fee
        quote_qty = price * qty
        realized = ZERO
        if kind == SPOT:
            if order.side == "BUY":
                commission, commission_asset = q8(qty * rate, ROUND_UP), market.base
                release = min(
                    qty * order.price if order.type == "LIMIT" else quote_qty, order.locked
                )
                account.spot_locked[market.quote] -= release
                order.locked -= release
                account.spot_free[market.quote] += release - quote_qty
                account.record("spot", market.quote, "fill", -quote_qty)
                account.move_spot(market.base, qty, "fill")
                account.move_spot(market.base, -commission, "fee")
            else:
                commission, commission_asset = q8(quote_qty * rate, ROUND_UP), market.quote
                account.spot_locked[market.base] -= qty
                order.locked -= qty
                account.record("spot", market.base, "fill", -qty)
                account.move_spot(market.quote, quote_qty, "fill")
                account.move_spot(market.quote, -commission, "fee")
        else:
            commission, commission_asset = q8(quote_qty * rate, ROUND_UP), "USDT"
            realized = self._apply_position(account, market.symbol, order.side, price, qty, now)
            account.move_futures("USDT", realized, "realized_pnl")
            account.move_futures("USDT", -commission, "fee")
        order.executed_qty += qty
        order.cum_quote += quote_qty
        order.updated_ms = now
        order.status = "FILLED" if order.executed_qty >= order.quantity else "PARTIALLY_FILLED"
        fill = Fill(
            trade_id=next(self._trade_seq[kind]),
            order_id=order.order_id,
            client_order_id=order.client_order_id,
            account_id=account.account_id,
            kind=kind,
            symbol=order.symbol,
            side=order.side,
            price=price,
            qty=qty,
            quote_qty=quote_qty,
            commission=commission,
            commission_asset=commission_asset,
            realized_pnl=realized,
            is_maker=is_maker,
            time_ms=now,
        )
        account.fills[(kind, order.symbol)].append(fill)
        account.updated_ms = now
        if not order.is_open:
            account.open_orders.pop((kind, order.order_id), None)
            self._resting[(kind, order.symbol)].pop(order.order_id, None)
            self._unlock(account, pm.market, order)
        self._emit_order(account, order, fill, "TRADE", now)
        return fill

    def _apply_position(
        self, account: Account, symbol: str, side: str, price: Decimal, qty: Decimal, now: int
    ) -> Decimal:
        """Update the one-way position with a fill; return the realised PnL (to 1e-8)."""
        pos = self._position(account, symbol)
        signed = qty if side == "BUY" else -qty
        realized = ZERO
        if pos.qty == 0 or (pos.qty > 0) == (signed > 0):
            total = abs(pos.qty) + qty
            pos.entry_price = (abs(pos.qty) * pos.entry_price + qty * price) / total
            pos.qty += signed
        else:
            closed = min(qty, abs(pos.qty))
            direction = 1 if pos.qty > 0 else -1
            realized = q8(closed * (price - pos.entry_price) * direction)
            pos.qty += signed
            if pos.qty == 0:
                pos.entry_price = ZERO
            elif (pos.qty > 0) != (direction > 0):
                pos.entry_price = price  # flipped: the excess opens at the fill price
        pos.updated_ms = now
        return realized

    def _unlock(self, account: Account, market: Market, order: Order) -> None:
        if order.kind == SPOT and order.locked:
            asset = market.quote if order.side == "BUY" else market.base
            account.spot_locked[asset] -= order.locked
            account.spot_free[asset] += order.locked
            order.locked = ZERO

    def _close(self, account: Account, order: Order, status: str, now: int) -> None:
        order.status = status
        order.updated_ms = now
        account.open_orders.pop((order.kind, order.order_id), None)
        self._resting[(order.kind, order.symbol)].pop(order.order_id, None)
        self._unlock(account, self.catalog.get(order.kind, order.symbol).market, order)
        self._emit_order(
            account, order, None, "CANCELED" if status == "CANCELED" else "EXPIRED", now
        )

    def _emit_order(
        self, account: Account, order: Order, fill: Fill | None, exec_type: str, now: int
    ) -> None:
        if not self.sinks or not self.is_listened(account.account_id, order.kind):
            return
        if order.kind == SPOT:
            event = views.execution_report(order, fill, exec_type, now)
        else:
            event = views.order_trade_update(order, fill, exec_type, now)
        self._emit(account.account_id, order.kind, event)

    def _emit_balances(self, account: Account, kind: str, pm: PaperMarket, now: int) -> None:
        if not self.sinks or not self.is_listened(account.account_id, kind):
            return
        if kind == SPOT:
            event = views.outbound_account_position(account, [pm.market.base, pm.market.quote], now)
        else:
            event = views.futures_account_update(self, account, "ORDER", [pm.symbol], now)
        self._emit(account.account_id, kind, event)

    def find_order(
        self, account: Account, kind: str, p: dict[str, str], missing: tuple[int, str]
    ) -> Order:
        pm = self.market(kind, p.get("symbol"))
        order_id = p.get("orderId")
        client_id = p.get("origClientOrderId")
        if order_id:
            try:
                order = account.orders.get((kind, int(order_id)))
            except ValueError:
                raise BinanceError(
                    -1100,
                    "Illegal characters found in parameter 'orderId'; legal range is '^[0-9]{1,20}$'.",
                ) from None
        elif client_id:
            order = account.by_client_id.get((kind, pm.symbol, client_id))
        else:
            raise BinanceError(
                -1102,
                "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!",
            )
        if order is None or order.symbol != pm.symbol:
            raise err(missing)
        return order

    def cancel_order(self, account: Account, kind: str, p: dict[str, str]) -> Order:
        order = self.find_order(account, kind, p, E.UNKNOWN_ORDER_CANCEL)
        if not order.is_open:
            raise err(E.UNKNOWN_ORDER_CANCEL)
        now = self.stamp_ms()
        self._close(account, order, "CANCELED", now)
        self._emit_balances(account, kind, self.catalog.get(kind, order.symbol), now)
        return order

    def open_orders(self, account: Account, kind: str, symbol: str | None) -> list[Order]:
        if symbol:
            self.market(kind, symbol)
        return [
            o
            for (k, _), o in account.open_orders.items()
            if k == kind and (not symbol or o.symbol == symbol)
        ]

    def my_trades(self, account: Account, kind: str, p: dict[str, str]) -> list[Fill]:
        """Return fills of one symbol: from ``fromId`` up, else the newest, at most ``limit``."""
        pm = self.market(kind, p.get("symbol"))
        limit = min(int(p.get("limit") or 500), 1000)
        fills = account.fills.get((kind, pm.symbol), [])
        order_id = p.get("orderId")
        if order_id:
            fills = [f for f in fills if f.order_id == int(order_id)]
        from_id = p.get("fromId")
        if from_id:
            start = int(from_id)
            return [f for f in fills if f.trade_id >= start][:limit]
        start_time, end_time = p.get("startTime"), p.get("endTime")
        if start_time:
            fills = [f for f in fills if f.time_ms >= int(start_time)]
        if end_time:
            fills = [f for f in fills if f.time_ms <= int(end_time)]
        return fills[:limit] if start_time else fills[-limit:]

    # -- futures account ---------------------------------------------------------------------

    def set_leverage(self, account: Account, symbol: str | None, leverage: str | None) -> int:
        pm = self.market(FUTURES, symbol)
        try:
            value = int(leverage or "")
        except ValueError:
            raise E.mandatory("leverage") from None
        if not 1 <= value <= 125:
            raise BinanceError(-4028, f"Leverage {value} is not valid")
        account.leverage[pm.symbol] = value
        return value

    def set_margin_type(
        self, account: Account, symbol: str | None, margin_type: str | None
    ) -> None:
        pm = self.market(FUTURES, symbol)
        value = (margin_type or "").upper()
        if value == "CROSS":
            value = "CROSSED"
        if value not in ("ISOLATED", "CROSSED"):
            raise E.mandatory("marginType")
        if account.margin_type.get(pm.symbol, "CROSSED") == value:
            raise err(E.NO_NEED_TO_CHANGE_MARGIN)
        pos = account.positions.get(pm.symbol)
        if (pos and pos.qty) or any(
            o.symbol == pm.symbol for (k, _), o in account.open_orders.items() if k == FUTURES
        ):
            raise BinanceError(-4048, "Margin type cannot be changed if there exists position.")
        account.margin_type[pm.symbol] = value

    def unrealized_pnl(self, pos: Position) -> Decimal:
        if not pos.qty:
            return ZERO
        return q8(pos.qty * (self.mark_price(pos.symbol) - pos.entry_price))

    def position_margin(self, account: Account, pos: Position) -> Decimal:
        if not pos.qty:
            return ZERO
        return q8(abs(pos.qty) * self.mark_price(pos.symbol) / account.leverage_of(pos.symbol))

    def open_order_margin(self, account: Account) -> Decimal:
        total = ZERO
        for (kind, _), o in account.open_orders.items():
            if kind == FUTURES and not o.reduce_only:
                total += o.remaining * o.price / account.leverage_of(o.symbol)
        return q8(total)

    def available_balance(self, account: Account) -> Decimal:
        wallet = account.futures_wallet.get("USDT", ZERO)
        upnl = sum((self.unrealized_pnl(p) for p in account.positions.values()), ZERO)
        used = sum((self.position_margin(account, p) for p in account.positions.values()), ZERO)
        return q8(wallet + upnl - used - self.open_order_margin(account), ROUND_DOWN)

    # -- time ----------------------------------------------------------------------------------

    def stamp_ms(self) -> int:
        """Return the time to stamp an order, a trade or an event with (epoch ms)."""
        return self.clock.now_ms() if self.simulated_timestamps else wall_ms()

    def tick(self) -> None:
        """Advance to the simulated now: cross resting limit orders, settle funding."""
        now_sim = self.clock.now_ms()
        for key in [k for k, orders in self._resting.items() if orders]:
            kind, symbol = key
            if key in self.price_overrides:
                continue
            path = self.data.path(kind, symbol)
            current = path.index(now_sim)
            last = self._last_index.get(key, current - 1)
            if current <= last:
                self._last_index[key] = current
                continue
            first = max(last + 1, current - MAX_POINTS_PER_TICK)
            prices = [path.at_index(i) for i in range(first, current + 1)]
            self._last_index[key] = current
            self._match_resting(kind, symbol, prices)
        for key in list(self._last_index):
            if not self._resting.get(key):
                del self._last_index[key]
        self._settle_funding(now_sim)

    def _match_resting(self, kind: str, symbol: str, prices: list[Decimal]) -> None:
        resting = self._resting.get((kind, symbol))
        if not resting:
            return
        pm = self.catalog.get(kind, symbol)
        book = self.book_config(kind, symbol)
        for price in prices:
            best_ask = level_price(price, pm.market, book, "ask", 0)
            best_bid = level_price(price, pm.market, book, "bid", 0)
            for order in list(resting.values()):
                crossed = (order.side == "BUY" and best_ask <= order.price) or (
                    order.side == "SELL" and best_bid >= order.price
                )
                if not crossed:
                    continue
                account = self.accounts[order.account_id]
                chunk = min(order.remaining, level_quantity(order.price, pm.market, book))
                if chunk <= 0:
                    continue
                now = self.stamp_ms()
                if kind == FUTURES and order.reduce_only:
                    pos = account.positions.get(symbol)
                    held = pos.qty if pos else ZERO
                    if held == 0 or (held > 0) == (order.side == "BUY"):
                        self._close(account, order, "EXPIRED", now)
                        continue
                    chunk = min(chunk, abs(held))
                self._execute(account, pm, order, order.price, chunk, is_maker=True, now=now)
                self._emit_balances(account, kind, pm, now)
            if not resting:
                return

    def _settle_funding(self, now_sim: int) -> None:
        last = self._last_funding_ms
        self._last_funding_ms = now_sim
        for symbol, schedule in self.data.funding.items():
            events = schedule.events_between(last, now_sim, limit=100)
            if not events:
                continue
            holders = [
                a for a in self.accounts.values() if (p := a.positions.get(symbol)) and p.qty
            ]
            for _, rate in events:
                mark = self.mark_price(symbol)
                for account in holders:
                    pos = account.positions[symbol]
                    payment = q8(-pos.qty * mark * rate)
                    account.move_futures("USDT", payment, "funding")
                    self._emit(
                        account.account_id,
                        FUTURES,
                        views.futures_account_update(
                            self, account, "FUNDING_FEE", [symbol], self.stamp_ms()
                        ),
                    )


def _decimal_param(p: dict[str, str], name: str) -> Decimal | None:
    raw = p.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = Decimal(raw)
    except ArithmeticError:
        raise BinanceError(
            -1100,
            f"Illegal characters found in parameter '{name}'; legal range is '^([0-9]{{1,20}})(\\.[0-9]{{1,20}})?$'.",
        ) from None
    if not value.is_finite() or value < 0:
        raise BinanceError(
            -1100,
            f"Illegal characters found in parameter '{name}'; legal range is '^([0-9]{{1,20}})(\\.[0-9]{{1,20}})?$'.",
        )
    return value


def _check_futures_filters(
    market: Market, quantity: Decimal, price: Decimal | None, mid: Decimal, reduce_only: bool
) -> None:
    """Raise Binance USDⓈ-M's answers for quantity/price/notional filter failures."""
    is_market = price is None
    step = market.market_step_size if is_market else market.step_size
    min_qty = market.market_min_qty if is_market else market.min_qty
    max_qty = market.market_max_qty if is_market else market.max_qty
    if quantity <= 0:
        raise BinanceError(-4003, "Quantity less than or equal to zero.")
    if step and quantity % step != 0:
        raise BinanceError(-1111, "Precision is over the maximum defined for this asset.")
    if quantity < min_qty:
        raise BinanceError(-4004, "Quantity less than or equal to min quantity.")
    if max_qty and quantity > max_qty:
        raise BinanceError(-4005, "Quantity greater than max quantity.")
    if price is not None:
        if price <= 0:
            raise BinanceError(-4001, "Price less than 0.")
        if market.tick_size and price % market.tick_size != 0:
            raise BinanceError(-1111, "Precision is over the maximum defined for this asset.")
        if price < market.min_price:
            raise BinanceError(-4016, "Limit price can't be higher than .")
        if market.max_price and price > market.max_price:
            raise BinanceError(-4016, f"Limit price can't be higher than {market.max_price}.")
    notional = quantity * (price if price is not None else mid)
    if market.min_notional and notional < market.min_notional and not reduce_only:
        raise BinanceError(
            -4164,
            f"Order's notional must be no smaller than {market.min_notional.normalize()} (unless you choose reduce only).",
        )
