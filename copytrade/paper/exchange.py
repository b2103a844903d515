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
from dataclasses import replace
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, ROUND_UP, Decimal

from copytrade import clock as platform_clock
from copytrade.domain.markets import FilterFailure, Market
from copytrade.domain.money import UNIT, ZERO, to_decimal
from copytrade.paper import errors as E
from copytrade.paper import filters, risk, views
from copytrade.paper.accounts import (
    Account,
    AlgoOrder,
    Fill,
    Order,
    Position,
    new_credentials,
)
from copytrade.paper.book import BookConfig, level_price, level_quantity, sweep
from copytrade.paper.candles import Window
from copytrade.paper.catalog import (
    ALGO_TYPES,
    FUTURES,
    ORDER_TYPES,
    SPOT,
    TIME_IN_FORCE,
    Catalog,
    PaperMarket,
)
from copytrade.paper.errors import BinanceError, err
from copytrade.paper.market_data import MarketData
from copytrade.paper.prices import SimClock
from copytrade.paper.risk import FuturesFigures, PositionFigures

LIMIT_TYPES = ("LIMIT", "LIMIT_MAKER", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT")
SPOT_STOP_TYPES = ("STOP_LOSS", "STOP_LOSS_LIMIT", "TAKE_PROFIT", "TAKE_PROFIT_LIMIT")
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
        # Orders waiting for a trigger: spot stop orders and USDⓈ-M algo orders, by id.
        self._waiting: dict[tuple[str, str], dict[int, Order | AlgoOrder]] = defaultdict(dict)
        self._algo_seq = itertools.count(9_000_001)
        self._algo_of_order: dict[int, AlgoOrder] = {}  # actual (futures) order id → its algo
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
                views.futures_account_update(account, "DEPOSIT", [], now),
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

    def with_pinned_price(self, kind: str, symbol: str, w: Window) -> Window:
        """Return market figures with an admin-pinned price as the last trade, if one is pinned."""
        pinned = self.price_overrides.get((kind, symbol))
        if pinned is None:
            return w
        return replace(w, close=pinned, high=max(w.high, pinned), low=min(w.low, pinned))

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
        if otype not in ORDER_TYPES[kind]:
            raise E.mandatory("type") if not otype else BinanceError(-1116, "Invalid orderType.")
        if kind == FUTURES and otype in ALGO_TYPES:
            raise err(E.USE_ALGO_ENDPOINT)
        if otype not in pm.entry["orderTypes"]:
            name = otype.replace("_", " ").lower().capitalize()
            raise BinanceError(-2010, f"{name} orders are not supported for this symbol.")
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
        limit = otype in LIMIT_TYPES
        stop = otype in SPOT_STOP_TYPES
        price = _decimal_param(p, "price") if limit else ZERO
        stop_price = _decimal_param(p, "stopPrice") if stop else None
        if stop and stop_price is None:
            raise E.mandatory("stopPrice")
        tif = (p.get("timeInForce") or "").upper()
        if otype == "LIMIT_MAKER":
            tif = "GTC"  # Binance's LIMIT_MAKER takes no timeInForce and reports GTC
        if limit:
            if price is None:
                raise E.mandatory("price")
            if tif not in TIME_IN_FORCE[kind]:
                raise E.mandatory("timeInForce") if not tif else err(E.INVALID_TIF)
        mid = self.price(kind, pm.symbol)
        quote_order_qty = _decimal_param(p, "quoteOrderQty") if kind == SPOT else None
        quantity = _decimal_param(p, "quantity")
        if quantity is None and quote_order_qty is not None and otype == "MARKET":
            quantity = self._quantity_for_quote(kind, market, side, quote_order_qty, mid)
        if quantity is None:
            raise E.mandatory("quantity")
        stp = self._self_trade_prevention(pm, p.get("selfTradePreventionMode"))
        iceberg = _decimal_param(p, "icebergQty")
        reduce_only = (p.get("reduceOnly") or "").lower() == "true"
        if kind == SPOT:
            try:
                market.check_order(quantity, price if limit else mid, market_order=not limit)
            except FilterFailure as exc:
                raise BinanceError(exc.code, f"Filter failure: {exc.filter_type}") from None
            if limit:
                filters.check_spot_percent_price(pm, side, price, mid)
            if stop:
                try:
                    market.check_order(quantity, stop_price, market_order=False)
                except FilterFailure as exc:
                    raise BinanceError(exc.code, f"Filter failure: {exc.filter_type}") from None
                if _stop_reached(otype, side, stop_price, mid):
                    raise err(E.WOULD_TRIGGER_SPOT)
            if iceberg is not None:
                filters.check_iceberg(pm, otype, tif, quantity, iceberg)
        else:
            if iceberg is not None:
                raise err(E.param_not_required("icebergQty"))
            if (p.get("positionSide") or "BOTH").upper() != "BOTH":
                raise err(E.POSITION_SIDE_MISMATCH)  # one-way mode only (dualSidePosition false)
            if reduce_only:
                quantity = self._reduce_only_quantity(account, pm.symbol, side, quantity)
            filters.check_futures_order(
                pm,
                quantity,
                price if limit else None,
                self.mark_price(pm.symbol),
                mid,
                reduce_only,
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
            time_in_force=tif if limit else ("GTC" if kind == FUTURES else ""),
            quantity=quantity,
            price=price or ZERO,
            created_ms=now,
            updated_ms=now,
            reduce_only=reduce_only,
            quote_order_qty=quote_order_qty or ZERO,
            iceberg_qty=iceberg or ZERO,
            self_trade_prevention=stp,
            stop_price=stop_price or ZERO,
            working=not stop,
            working_ms=-1 if stop else now,
        )
        if stop:
            return self._park_stop(account, pm, order, now), []
        book = self.book_config(kind, pm.symbol)
        taker = sweep(mid, market, book, side.lower(), quantity, price if limit else None)
        if taker and otype == "LIMIT_MAKER":
            raise err(E.WOULD_TAKE)
        if taker and tif == "GTX":
            raise err(E.POST_ONLY_REJECTED)
        if tif == "FOK" and sum(q for _, q in taker) < quantity:
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
        if order.is_open and (not limit or tif in ("IOC", "FOK")):
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

    def _park_stop(self, account: Account, pm: PaperMarket, order: Order, now: int) -> Order:
        """Register a spot stop order that waits for its trigger, with what it locks meanwhile.

        As on Binance, a sell locks its quantity and a limit buy quantity × price at placement;
        a market buy (STOP_LOSS/TAKE_PROFIT) needs its cost only when it triggers.
        """
        if order.side == "SELL" or order.is_limit:
            self._reserve_spot(account, pm.market, order, [])
        self._register(account, order)
        self._waiting[(SPOT, order.symbol)][order.order_id] = order
        self._emit_order(account, order, None, "NEW", now)
        self._emit_balances(account, SPOT, pm, now)
        return order

    def _activate_spot_stop(self, order: Order, price: Decimal) -> None:
        """A spot stop reached its price: it works now, as a market or limit order at ``price``."""
        account = self.accounts[order.account_id]
        pm = self.catalog.get(SPOT, order.symbol)
        now = self.stamp_ms()
        self._waiting[(SPOT, order.symbol)].pop(order.order_id, None)
        order.working, order.working_ms, order.updated_ms = True, now, now
        book = self.book_config(SPOT, order.symbol)
        limit_price = order.price if order.is_limit else None
        taker = sweep(price, pm.market, book, order.side.lower(), order.remaining, limit_price)
        if order.side == "BUY" and not order.is_limit:
            need = sum((fp * fq for fp, fq in taker), ZERO)
            if account.spot_free[pm.market.quote] < need:
                self._close(account, order, "EXPIRED", now)  # no funds when it triggered
                return
            account.spot_free[pm.market.quote] -= need
            account.spot_locked[pm.market.quote] += need
            order.locked = need
        if order.time_in_force == "FOK" and sum(q for _, q in taker) < order.remaining:
            taker = []
        for fp, fq in taker:
            self._execute(account, pm, order, fp, fq, is_maker=False, now=now)
        if order.is_open and (not order.is_limit or order.time_in_force in ("IOC", "FOK")):
            self._close(account, order, "EXPIRED", now)
        elif order.is_open:
            self._resting[(SPOT, order.symbol)][order.order_id] = order
        self._emit_balances(account, SPOT, pm, now)

    # -- USDⓈ-M conditional (algo) orders ----------------------------------------------------

    def place_algo_order(self, account: Account, p: dict[str, str]) -> AlgoOrder:
        """Validate and park a conditional order of ``POST /fapi/v1/algoOrder``."""
        pm = self.market(FUTURES, p.get("symbol"))
        if (p.get("algoType") or "").upper() != "CONDITIONAL":
            raise E.mandatory("algoType") if not p.get("algoType") else err(E.INVALID_ALGO_TYPE)
        otype = (p.get("type") or "").upper()
        if otype not in ALGO_TYPES:
            raise E.mandatory("type") if not otype else BinanceError(-1116, "Invalid orderType.")
        side = (p.get("side") or "").upper()
        if side not in ("BUY", "SELL"):
            raise E.mandatory("side") if not side else BinanceError(-1117, "Invalid side.")
        if (p.get("positionSide") or "BOTH").upper() != "BOTH":
            raise err(E.POSITION_SIDE_MISMATCH)
        client_id = p.get("clientAlgoId") or f"paper_{secrets.token_hex(8)}"
        if not CLIENT_ID_RE.match(client_id):
            raise BinanceError(
                -1100,
                "Illegal characters found in parameter 'clientAlgoId'; legal range is "
                "'^[\\.A-Z\\:/a-z0-9_-]{1,36}$'.",
            )
        if any(a.client_algo_id == client_id and a.is_open for a in account.algo_orders.values()):
            raise err(E.DUPLICATE_CLIENT_ID_FUTURES)
        close_position = (p.get("closePosition") or "").lower() == "true"
        reduce_only = (p.get("reduceOnly") or "").lower() == "true" or close_position
        limit = otype in ("STOP", "TAKE_PROFIT")
        price = _decimal_param(p, "price") if limit else ZERO
        if limit and price is None:
            raise E.mandatory("price")
        tif = (p.get("timeInForce") or "GTC").upper()
        if tif not in TIME_IN_FORCE[FUTURES]:
            raise err(E.INVALID_TIF)
        working_type = (p.get("workingType") or "CONTRACT_PRICE").upper()
        if working_type not in ("CONTRACT_PRICE", "MARK_PRICE"):
            raise BinanceError(-1100, "Illegal characters found in parameter 'workingType'.")
        quantity = _decimal_param(p, "quantity")
        if quantity is None and not close_position:
            raise E.mandatory("quantity")
        mark, last = self.mark_price(pm.symbol), self.price(FUTURES, pm.symbol)
        reference = mark if working_type == "MARK_PRICE" else last
        callback = activate = trigger = ZERO
        if otype == "TRAILING_STOP_MARKET":
            callback = _decimal_param(p, "callbackRate") or ZERO
            if not Decimal("0.1") <= callback <= 10:
                raise BinanceError(
                    -1100,
                    "Illegal characters found in parameter 'callbackRate'; legal range is "
                    "'0.1-10'.",
                )
            activate = _decimal_param(p, "activatePrice") or ZERO
            if activate:
                filters.check_futures_price(pm, activate, mark, percent=False)
        else:
            trigger = _decimal_param(p, "triggerPrice")
            if trigger is None:
                raise E.mandatory("triggerPrice")
            filters.check_futures_price(pm, trigger, mark, percent=False)
            if _stop_reached(otype, side, trigger, reference):
                raise err(E.WOULD_TRIGGER_FUTURES)
        if quantity is not None:
            filters.check_futures_order(
                pm, quantity, price if limit else None, mark, trigger or last, reduce_only
            )
        now = self.stamp_ms()
        algo = AlgoOrder(
            algo_id=next(self._algo_seq),
            client_algo_id=client_id,
            account_id=account.account_id,
            symbol=pm.symbol,
            side=side,
            order_type=otype,
            quantity=quantity or ZERO,
            price=price or ZERO,
            trigger_price=trigger,
            time_in_force=tif,
            working_type=working_type,
            reduce_only=reduce_only,
            close_position=close_position,
            created_ms=now,
            updated_ms=now,
            callback_rate=callback,
            activate_price=activate,
            self_trade_prevention=self._self_trade_prevention(pm, p.get("selfTradePreventionMode")),
        )
        account.algo_orders[algo.algo_id] = algo
        self._waiting[(FUTURES, pm.symbol)][algo.algo_id] = algo
        return algo

    def find_algo_order(self, account: Account, p: dict[str, str]) -> AlgoOrder:
        algo_id, client_id = p.get("algoId"), p.get("clientAlgoId")
        if algo_id:
            if not algo_id.isdigit():
                raise BinanceError(-1100, "Illegal characters found in parameter 'algoId'.")
            algo = account.algo_orders.get(int(algo_id))
        elif client_id:
            matches = [a for a in account.algo_orders.values() if a.client_algo_id == client_id]
            algo = matches[-1] if matches else None
        else:
            raise BinanceError(
                -1102, "Param 'clientAlgoId' or 'algoId' must be sent, but both were empty/null!"
            )
        if algo is None:
            raise err(E.ORDER_NOT_FOUND)
        return algo

    def cancel_algo_order(self, account: Account, p: dict[str, str]) -> AlgoOrder:
        try:
            algo = self.find_algo_order(account, p)
        except BinanceError as exc:
            if exc.code == E.ORDER_NOT_FOUND[0]:
                raise err(E.UNKNOWN_ORDER_CANCEL) from None
            raise
        if not algo.is_open:
            raise err(E.UNKNOWN_ORDER_CANCEL)
        algo.status, algo.updated_ms = "CANCELED", self.stamp_ms()
        self._waiting[(FUTURES, algo.symbol)].pop(algo.algo_id, None)
        return algo

    def open_algo_orders(self, account: Account, symbol: str | None) -> list[AlgoOrder]:
        if symbol:
            self.market(FUTURES, symbol)
        return [
            a
            for a in account.algo_orders.values()
            if a.is_open and (not symbol or a.symbol == symbol)
        ]

    def _trigger_algo(self, algo: AlgoOrder, price: Decimal) -> None:
        """Place the actual order of a triggered conditional order (EXPIRED if it is refused)."""
        account = self.accounts[algo.account_id]
        now = self.stamp_ms()
        self._waiting[(FUTURES, algo.symbol)].pop(algo.algo_id, None)
        algo.updated_ms = algo.trigger_ms = now
        quantity = algo.quantity
        if algo.close_position:
            pos = account.positions.get(algo.symbol)
            quantity = abs(pos.qty) if pos else ZERO
        params = {
            "symbol": algo.symbol,
            "side": algo.side,
            "type": "LIMIT" if algo.order_type in ("STOP", "TAKE_PROFIT") else "MARKET",
            "quantity": f"{quantity:f}",
            "newClientOrderId": algo.client_algo_id,
            "selfTradePreventionMode": algo.self_trade_prevention,
        }
        if params["type"] == "LIMIT":
            params.update(price=f"{algo.price:f}", timeInForce=algo.time_in_force)
        if algo.reduce_only:
            params["reduceOnly"] = "true"
        try:
            if not quantity:
                raise err(E.REDUCE_ONLY_REJECTED)
            order, _ = self.place_order(account, FUTURES, params)
        except BinanceError:
            algo.status = "EXPIRED"  # e.g. a reduce-only whose position is gone, no margin
            return
        algo.actual_order_id = order.order_id
        if order.is_open:  # resting in the book: FINISHED when it is filled or cancelled
            algo.status = "TRIGGERED"
            self._algo_of_order[order.order_id] = algo
        else:
            algo.status = "FINISHED"

    def _check_triggers(self, kind: str, symbol: str, price: Decimal) -> None:
        """Trigger the waiting orders of ``symbol`` that ``price`` (a replayed point) reaches."""
        waiting = self._waiting.get((kind, symbol))
        if not waiting:
            return
        for item in list(waiting.values()):
            if isinstance(item, Order):
                if _stop_reached(item.type, item.side, item.stop_price, price):
                    self._activate_spot_stop(item, price)
                continue
            reference = self.mark_price(symbol) if item.working_type == "MARK_PRICE" else price
            if item.order_type == "TRAILING_STOP_MARKET":
                if _trailing_reached(item, reference):
                    self._trigger_algo(item, reference)
            elif _stop_reached(item.order_type, item.side, item.trigger_price, reference):
                self._trigger_algo(item, reference)

    def _reserve_spot(self, account: Account, market: Market, order: Order, taker: list) -> None:
        """Check the spot balance and lock what a resting remainder needs."""
        if order.side == "BUY":
            # Binance locks quantity × limit price; a market buy needs what the sweep costs.
            if order.is_limit:
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
        self,
        account: Account,
        market: Market,
        order: Order,
        taker: list,
        mid: Decimal,
        exclude: Order | None = None,
    ) -> None:
        """Refuse a futures order whose added exposure needs more margin than is available."""
        pos = account.positions.get(market.symbol)
        held = pos.qty if pos else ZERO
        signed = order.quantity if order.side == "BUY" else -order.quantity
        if order.reduce_only:
            return  # cut to the position before the sweep (_reduce_only_quantity)
        increase = (
            max(abs(held + signed) - abs(held), ZERO)
            if (held == 0 or (held > 0) == (signed > 0))
            else max(abs(signed) - abs(held), ZERO)
        )
        if increase == 0:
            return
        px = order.price if order.is_limit else (taker[-1][0] if taker else mid)
        required = increase * px / account.leverage_of(market.symbol)
        available = self.available_balance(account)
        if exclude is not None and exclude.is_open and not exclude.reduce_only:
            # an order being modified frees the margin its old remainder held
            available += exclude.remaining * exclude.price / account.leverage_of(exclude.symbol)
        if required > available:
            raise err(E.MARGIN_INSUFFICIENT)

    def _reduce_only_quantity(
        self, account: Account, symbol: str, side: str, quantity: Decimal
    ) -> Decimal:
        """Return a reduce-only order's quantity cut to the position it reduces.

        Binance never lets a reduce-only order open or flip a position: against no position, or
        on the side that would increase it, it answers -2022; a larger quantity than the
        position executes only the position's size.
        """
        pos = account.positions.get(symbol)
        held = pos.qty if pos else ZERO
        if held == 0 or (held > 0) == (side == "BUY"):
            raise err(E.REDUCE_ONLY_REJECTED)
        return min(quantity, abs(held))

    def _self_trade_prevention(self, pm: PaperMarket, raw: str | None) -> str:
        """Return the order's STP mode: the symbol's default, or an allowed one (else -1100).

        Paper orders only ever trade against the synthetic book, never another account's order,
        so the mode is recorded and echoed but never triggers.
        """
        if pm.kind == SPOT:
            allowed = ["NONE", *pm.entry.get("allowedSelfTradePreventionModes", [])]
            default = pm.entry.get("defaultSelfTradePreventionMode", "NONE")
        else:
            allowed, default = ["NONE", "EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"], "NONE"
        if not raw:
            return default
        if raw.upper() not in allowed:
            raise BinanceError(
                -1100,
                "Illegal characters found in parameter 'selfTradePreventionMode'; legal range is "
                f"'{', '.join(allowed)}'.",
            )
        return raw.upper()

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
                release = min(qty * order.price if order.is_limit else quote_qty, order.locked)
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
            self._finish_algo(order, now)
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

    def _finish_algo(self, order: Order, now: int) -> None:
        """An algo order's actual order is done (filled, cancelled, expired): FINISHED."""
        algo = self._algo_of_order.pop(order.order_id, None)
        if algo is not None:
            algo.status, algo.updated_ms = "FINISHED", now

    def _close(self, account: Account, order: Order, status: str, now: int) -> None:
        order.status = status
        order.updated_ms = now
        account.open_orders.pop((order.kind, order.order_id), None)
        self._resting[(order.kind, order.symbol)].pop(order.order_id, None)
        self._waiting[(order.kind, order.symbol)].pop(order.order_id, None)
        self._unlock(account, self.catalog.get(order.kind, order.symbol).market, order)
        self._finish_algo(order, now)
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
            event = views.futures_account_update(
                account, "ORDER", [self.position_figures(account, pm.symbol)], now
            )
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

    def open_order(self, account: Account, kind: str, p: dict[str, str]) -> Order:
        """Return one open order (``GET /fapi/v1/openOrder``); a done one does not exist here."""
        order = self.find_order(account, kind, p, E.ORDER_NOT_FOUND)
        if not order.is_open:
            raise err(E.ORDER_NOT_FOUND)
        return order

    def modify_order(self, account: Account, p: dict[str, str]) -> Order:
        """Change an open futures LIMIT order's price and quantity in place (``PUT order``).

        As on Binance the order keeps its id; a new price that crosses the book trades at once
        as taker, the rest rests at the new price.
        """
        order = self.find_order(account, FUTURES, p, E.ORDER_NOT_FOUND)
        if not order.is_open:
            raise err(E.ORDER_NOT_FOUND)
        if order.type != "LIMIT":
            raise BinanceError(-1116, "Invalid orderType.")
        side = (p.get("side") or "").upper()
        if not side:
            raise E.mandatory("side")
        if side != order.side:
            raise BinanceError(-1117, "Invalid side.")
        price = _decimal_param(p, "price")
        quantity = _decimal_param(p, "quantity")
        if price is None:
            raise E.mandatory("price")
        if quantity is None:
            raise E.mandatory("quantity")
        if price == order.price and quantity == order.quantity:
            raise err(E.NO_NEED_TO_MODIFY)
        if quantity <= order.executed_qty:
            raise err(E.QUANTITY_BELOW_EXECUTED)
        pm = self.market(FUTURES, order.symbol)
        mid = self.price(FUTURES, order.symbol)
        filters.check_futures_order(
            pm, quantity, price, self.mark_price(order.symbol), mid, order.reduce_only
        )
        remaining = replace(order, quantity=quantity - order.executed_qty, price=price)
        remaining.executed_qty = ZERO
        self._check_margin(account, pm.market, remaining, [], mid, exclude=order)
        now = self.stamp_ms()
        self._resting[(FUTURES, order.symbol)].pop(order.order_id, None)
        order.price, order.quantity, order.updated_ms = price, quantity, now
        self._emit_order(account, order, None, "AMENDMENT", now)
        book = self.book_config(FUTURES, order.symbol)
        taker = sweep(mid, pm.market, book, side.lower(), order.remaining, price)
        if taker and order.time_in_force == "GTX":
            self._close(account, order, "EXPIRED", now)  # post-only: would take, so expires
            return order
        for fp, fq in taker:
            self._execute(account, pm, order, fp, fq, is_maker=False, now=now)
        if order.is_open:
            self._resting[(FUTURES, order.symbol)][order.order_id] = order
        self._emit_balances(account, FUTURES, pm, now)
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
        if not 1 <= value <= risk.MAX_LEVERAGE:
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

    def max_notional(self, account: Account, symbol: str) -> Decimal:
        return risk.max_notional(account.leverage_of(symbol))

    def position_figures(self, account: Account, symbol: str) -> PositionFigures:
        """Return a position's figures: margins from the brackets, liquidation, break-even."""
        pos = account.positions.get(symbol) or Position(symbol)
        mark = self.mark_price(symbol)
        others = [p for p in account.positions.values() if p.qty and p.symbol != symbol]
        liquidation = risk.liquidation_price(
            pos.qty,
            pos.entry_price,
            account.futures_wallet.get("USDT", ZERO),
            sum((risk.maint_margin(p.qty * self.mark_price(p.symbol)) for p in others), ZERO),
            sum((self.unrealized_pnl(p) for p in others), ZERO),
            mark,
        )
        return PositionFigures(
            symbol=symbol,
            qty=pos.qty,
            entry_price=pos.entry_price,
            break_even_price=risk.break_even_price(
                pos.qty, pos.entry_price, account.futures_taker_fee
            ),
            mark_price=mark,
            unrealized_pnl=self.unrealized_pnl(pos),
            initial_margin=self.position_margin(account, pos),
            maint_margin=risk.maint_margin(pos.qty * mark),
            liquidation_price=liquidation,
            leverage=account.leverage_of(symbol),
            isolated=account.margin_type.get(symbol) == "ISOLATED",
            max_notional=self.max_notional(account, symbol),
            updated_ms=pos.updated_ms,
        )

    def futures_figures(self, account: Account, now: int) -> FuturesFigures:
        """Return the futures wallet's totals with the figures of every open position."""
        positions = [
            self.position_figures(account, p.symbol) for p in account.positions.values() if p.qty
        ]
        return FuturesFigures(
            wallet=account.futures_wallet.get("USDT", ZERO),
            unrealized_pnl=sum((p.unrealized_pnl for p in positions), ZERO),
            position_margin=sum((p.initial_margin for p in positions), ZERO),
            open_order_margin=self.open_order_margin(account),
            maint_margin=sum((p.maint_margin for p in positions), ZERO),
            available=self.available_balance(account),
            positions=positions,
            updated_ms=account.updated_ms or now,
        )

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
        """Return the time to stamp an order, a trade or an event with (epoch ms): the wall clock
        as the platform's (``copytrade.clock``, shifted when a rehearsal sets an offset)."""
        if self.simulated_timestamps:
            return self.clock.now_ms()
        return int(platform_clock.now().timestamp() * 1000)

    def tick(self) -> None:
        """Advance to the simulated now: cross resting limit orders, settle funding."""
        now_sim = self.clock.now_ms()
        active = {k for k, v in self._resting.items() if v} | {
            k for k, v in self._waiting.items() if v
        }
        for key in active:
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
            if not self._resting.get(key) and not self._waiting.get(key):
                del self._last_index[key]
        self._settle_funding(now_sim)

    def _match_resting(self, kind: str, symbol: str, prices: list[Decimal]) -> None:
        pm = self.catalog.get(kind, symbol)
        book = self.book_config(kind, symbol)
        for price in prices:
            self._check_triggers(kind, symbol, price)
            resting = self._resting.get((kind, symbol))
            if not resting:
                continue
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
                    account.income.append(
                        {
                            "symbol": symbol,
                            "incomeType": "FUNDING_FEE",
                            "income": views.plain(payment),
                            "asset": "USDT",
                            "info": "FUNDING_FEE",
                            "time": self.stamp_ms(),
                            "tranId": len(account.income) + 1,
                            "tradeId": "",
                        }
                    )
                    self._emit(
                        account.account_id,
                        FUTURES,
                        views.futures_account_update(
                            account,
                            "FUNDING_FEE",
                            [self.position_figures(account, symbol)],
                            self.stamp_ms(),
                        ),
                    )


def _stop_reached(order_type: str, side: str, trigger: Decimal, price: Decimal) -> bool:
    """Return True when ``price`` reaches a stop (loss) or take-profit trigger, as Binance reads
    them: a stop buys on a rise and sells on a fall; a take-profit buys on a fall, sells on a rise."""
    if order_type.startswith("TAKE_PROFIT"):
        return price <= trigger if side == "BUY" else price >= trigger
    return price >= trigger if side == "BUY" else price <= trigger


def _trailing_reached(algo: AlgoOrder, price: Decimal) -> bool:
    """Track a trailing stop's best price since activation; True once the price retraces
    ``callbackRate`` % from it (a sell from the peak, a buy from the trough)."""
    if algo.activate_price and not algo.extreme:
        active = (
            price >= algo.activate_price if algo.side == "SELL" else price <= algo.activate_price
        )
        if not active:
            return False
    if not algo.extreme:
        algo.extreme = price
    if algo.side == "SELL":
        algo.extreme = max(algo.extreme, price)
        return price <= algo.extreme * (1 - algo.callback_rate / 100)
    algo.extreme = min(algo.extreme, price)
    return price >= algo.extreme * (1 + algo.callback_rate / 100)


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
