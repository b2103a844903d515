"""The HTTP + websocket server: Binance's spot ``/api/v3`` and USDⓈ-M ``/fapi`` routes, admin routes.

Handlers are thin: authenticate, apply armed faults, call the engine, answer in Binance's shape.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hmac
import logging
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from copytrade.domain.money import to_decimal
from copytrade.paper import candles, views
from copytrade.paper import errors as E
from copytrade.paper.accounts import Account
from copytrade.paper.auth import api_key_account, check_timestamp, params_of, verify_signed
from copytrade.paper.book import BookConfig
from copytrade.paper.catalog import FUTURES, SPOT
from copytrade.paper.errors import BinanceError
from copytrade.paper.exchange import PaperExchange, wall_ms
from copytrade.paper.faults import AFTER, BEFORE, Faults
from copytrade.paper.market_data import load_reference
from copytrade.paper.prices import SimClock, parse_time_ms
from copytrade.paper.stream import StreamHub, Subscriber

log = logging.getLogger("copytrade.paper")
DEFAULT_START = "2025-01-27T00:00:00Z"
TICK_SECONDS = 0.1
DAY_MS = 86_400_000
FREEZE_EVERY_TICKS = 100  # 10 s

Handler = Callable[[str, Account, dict], object]


_JSON = b"application/json"


async def _send(
    send, status: int, body: bytes, extra: list | None = None, content_type: bytes = _JSON
) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    if extra:
        headers += extra
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive) -> str:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks).decode()


def _api_key(scope: dict) -> str | None:
    for name, value in scope["headers"]:
        if name == b"x-mbx-apikey":
            return value.decode()
    return None


class RestRouter:
    """ASGI front: exact (method, path) lookup for the Binance REST routes, else the Starlette app."""

    def __init__(self, routes: dict[tuple[str, str], Callable], fallback) -> None:
        self.routes = routes
        self.fallback = fallback
        self.paths = {path for _, path in routes}

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            handler = self.routes.get((scope["method"], scope["path"]))
            if handler is not None:
                return await handler(scope, receive, send)
            if scope["path"] in self.paths:
                body = orjson.dumps({"code": -1000, "msg": "Method not allowed."})
                return await _send(send, 405, body)
        await self.fallback(scope, receive, send)


def json_response(body: object, status: int = 200, headers: dict | None = None) -> Response:
    return Response(
        orjson.dumps(body), status_code=status, media_type="application/json", headers=headers
    )


def error_response(exc: BinanceError) -> Response:
    return json_response(exc.body(), exc.status)


class PaperServer:
    """One paper exchange with its stream hub, faults and admin token, as a Starlette app."""

    def __init__(
        self,
        data_dir: Path,
        admin_token: str,
        start: str = DEFAULT_START,
        speed: float = 1.0,
        book: BookConfig | None = None,
    ) -> None:
        catalog, data = load_reference(Path(data_dir).resolve())
        self.exchange = PaperExchange(
            catalog,
            data,
            SimClock(parse_time_ms(start), speed),
            book,
        )
        self.faults = Faults()
        self.hub = StreamHub(self.faults)
        self.exchange.sinks.append(self.hub.publish)
        self.exchange.is_listened = self.hub.has_subscribers
        self._admin_token = admin_token.encode()
        self.requests = 0

    # -- plumbing --------------------------------------------------------------------------------
    # REST endpoints are plain ASGI callables dispatched from a dict (RestRouter): no Starlette
    # Request or route matching on the hot path.

    async def _apply(
        self, scope: dict, send, account: Account | None, run: Callable[[], object]
    ) -> None:
        """Run ``run`` between the armed before/after faults of this request and answer."""
        if self.faults:
            path, method = scope["path"], scope["method"]
            account_id = account.account_id if account else None
            fault = self.faults.take(BEFORE, account_id, path, method)
            if fault is not None:
                retry = [(b"retry-after", str(fault.retry_after).encode())]
                if fault.kind == "rate_limit":
                    body = {"code": E.TOO_MANY_REQUESTS[0], "msg": E.TOO_MANY_REQUESTS[1]}
                    return await _send(send, 429, orjson.dumps(body), retry)
                if fault.kind == "ban":
                    until = wall_ms() + fault.retry_after * 1000
                    body = {"code": -1003, "msg": E.IP_BANNED[1].format(until=until)}
                    return await _send(send, 418, orjson.dumps(body), retry)
                if fault.kind == "error_before":
                    return await self._server_error(send, fault.status or 503, fault.body)
                if fault.kind == "slow":
                    await asyncio.sleep(fault.delay)
            try:
                result = run()
            except BinanceError as exc:
                return await _send(send, exc.status, orjson.dumps(exc.body()))
            fault = self.faults.take(AFTER, account_id, path, method)
            if fault is not None:
                if fault.kind == "error_after":
                    return await self._server_error(send, fault.status or 503, fault.body)
                if fault.kind == "timeout_after":
                    await asyncio.sleep(fault.delay)
            return await _send(send, 200, orjson.dumps(result))
        try:
            result = run()
        except BinanceError as exc:
            return await _send(send, exc.status, orjson.dumps(exc.body()))
        await _send(send, 200, orjson.dumps(result))

    @staticmethod
    async def _server_error(send, status: int, body: str) -> None:
        if body == "binance":
            payload = {"code": E.UNKNOWN_EXECUTION[0], "msg": E.UNKNOWN_EXECUTION[1]}
            return await _send(send, status, orjson.dumps(payload))
        await _send(send, status, b"Service Unavailable", content_type=b"text/plain")

    def public(self, fn: Callable[[dict], object]) -> Callable:
        async def endpoint(scope: dict, receive, send) -> None:
            self.requests += 1
            query = scope["query_string"].decode()
            await self._apply(scope, send, None, lambda: fn(params_of(query, "")))

        return endpoint

    def signed(self, kind: str, fn: Handler) -> Callable:
        async def endpoint(scope: dict, receive, send) -> None:
            self.requests += 1
            query = scope["query_string"].decode()
            body = await _read_body(receive) if scope["method"] != "GET" else ""
            try:
                account, params = verify_signed(
                    _api_key(scope), query, body, self.exchange.account_by_key, wall_ms()
                )
            except BinanceError as exc:
                return await _send(send, exc.status, orjson.dumps(exc.body()))
            await self._apply(scope, send, account, lambda: fn(kind, account, params))

        return endpoint

    def keyed(self, kind: str, fn: Handler) -> Callable:
        """An endpoint that needs the API key but no signature (listenKey management)."""

        async def endpoint(scope: dict, receive, send) -> None:
            self.requests += 1
            query = scope["query_string"].decode()
            body = await _read_body(receive) if scope["method"] != "GET" else ""
            try:
                account = api_key_account(_api_key(scope), self.exchange.account_by_key)
            except BinanceError as exc:
                return await _send(send, exc.status, orjson.dumps(exc.body()))
            await self._apply(
                scope, send, account, lambda: fn(kind, account, params_of(query, body))
            )

        return endpoint

    # -- market data -----------------------------------------------------------------------------

    def _time(self, _: dict) -> dict:
        return {"serverTime": wall_ms()}

    def _exchange_info(self, kind: str) -> Callable[[dict], dict]:
        return lambda _: self.exchange.catalog.exchange_info(kind, wall_ms())

    def _depth(self, kind: str) -> Callable[[dict], dict]:
        def handler(p: dict) -> dict:
            limit = int(p.get("limit") or 100)
            bids, asks = self.exchange.depth(kind, p.get("symbol"), limit)
            fmt = views.s8 if kind == SPOT else views.plain
            body: dict = {"lastUpdateId": wall_ms()}
            if kind == FUTURES:
                body["E"] = body["T"] = wall_ms()
            body["bids"] = [[fmt(px), fmt(q)] for px, q in bids]
            body["asks"] = [[fmt(px), fmt(q)] for px, q in asks]
            return body

        return handler

    def _symbols(self, kind: str, p: dict) -> list[str]:
        if p.get("symbol"):
            return [self.exchange.market(kind, p["symbol"]).symbol]
        if p.get("symbols"):
            return [self.exchange.market(kind, s).symbol for s in orjson.loads(p["symbols"])]
        return list(self.exchange.catalog.of(kind))

    def _ticker_price(self, kind: str) -> Callable[[dict], object]:
        fmt = views.s8 if kind == SPOT else views.plain

        def handler(p: dict) -> object:
            rows = []
            for symbol in self._symbols(kind, p):
                row = {"symbol": symbol, "price": fmt(self.exchange.price(kind, symbol))}
                if kind == FUTURES:
                    row["time"] = wall_ms()
                rows.append(row)
            return rows[0] if p.get("symbol") else rows

        return handler

    def _ticker_24hr(self, kind: str) -> Callable[[dict], object]:
        def handler(p: dict) -> object:
            sim = self.exchange.clock.now_ms()
            rows = []
            for symbol in self._symbols(kind, p):
                pm = self.exchange.market(kind, symbol)
                w = candles.window(self.exchange.data.path(kind, symbol), sim - DAY_MS + 1, sim)
                w = self.exchange.with_pinned_price(kind, symbol, w)
                bids, asks = self.exchange.depth(kind, symbol, 1)
                rows.append(views.ticker_24hr(pm, w, bids[0], asks[0]))
            return rows[0] if p.get("symbol") else rows

        return handler

    def _klines(self, kind: str) -> Callable[[dict], object]:
        def handler(p: dict) -> list:
            pm = self.exchange.market(kind, p.get("symbol"))
            interval = candles.interval_ms(p.get("interval"))
            rows = candles.klines(
                self.exchange.data.path(kind, pm.symbol),
                interval,
                self.exchange.clock.now_ms(),
                _limit(p, 500, 1500 if kind == FUTURES else 1000),
                _int_param(p, "startTime"),
                _int_param(p, "endTime"),
            )
            return [views.kline(pm, w) for w in rows]

        return handler

    def _agg_trades(self, kind: str) -> Callable[[dict], object]:
        def handler(p: dict) -> list:
            pm = self.exchange.market(kind, p.get("symbol"))
            rows = candles.points(
                self.exchange.data.path(kind, pm.symbol),
                self.exchange.clock.now_ms(),
                _limit(p, 500, 1000),
                from_id=_int_param(p, "fromId"),
                start=_int_param(p, "startTime"),
                end=_int_param(p, "endTime"),
            )
            return [views.agg_trade(pm, row) for row in rows]

        return handler

    def _book_ticker(self, kind: str) -> Callable[[dict], object]:
        fmt = views.s8 if kind == SPOT else views.plain

        def handler(p: dict) -> object:
            rows = []
            for symbol in self._symbols(kind, p):
                bids, asks = self.exchange.depth(kind, symbol, 1)
                rows.append(
                    {
                        "symbol": symbol,
                        "bidPrice": fmt(bids[0][0]),
                        "bidQty": fmt(bids[0][1]),
                        "askPrice": fmt(asks[0][0]),
                        "askQty": fmt(asks[0][1]),
                    }
                )
            return rows[0] if p.get("symbol") else rows

        return handler

    def _premium_index(self, p: dict) -> object:
        rows = []
        for symbol in self._symbols(FUTURES, p):
            schedule = self.exchange.data.funding.get(symbol)
            sim = self.exchange.clock.now_ms()
            upcoming = (
                schedule.events_between(sim, sim + schedule.span, limit=1) if schedule else []
            )
            rate = upcoming[0][1] if upcoming else Decimal(0)
            mark = self.exchange.mark_price(symbol)
            rows.append(
                {
                    "symbol": symbol,
                    "markPrice": views.plain(mark),
                    "indexPrice": views.plain(mark),
                    "estimatedSettlePrice": views.plain(mark),
                    "lastFundingRate": views.plain(rate),
                    "interestRate": "0.00010000",
                    "nextFundingTime": wall_ms()
                    + (upcoming[0][0] - sim if upcoming else 8 * 3_600_000),
                    "time": sim,  # the exchange's time, the clock its trades carry
                }
            )
        return rows[0] if p.get("symbol") else rows

    # -- trading -----------------------------------------------------------------------------------

    def _new_order(self, kind: str, account: Account, p: dict) -> dict:
        order, fills = self.exchange.place_order(account, kind, p)
        if kind == SPOT:
            return views.spot_order(
                order, fills=fills, response_type=(p.get("newOrderRespType") or "FULL").upper()
            )
        return self._futures_view(order)

    def _futures_view(self, order, *, query: bool = False) -> dict:
        return views.futures_order(order, self.exchange.catalog.futures[order.symbol], query=query)

    def _query_order(self, kind: str, account: Account, p: dict) -> dict:
        order = self.exchange.find_order(account, kind, p, E.ORDER_NOT_FOUND)
        return (
            views.spot_order(order, query=True)
            if kind == SPOT
            else self._futures_view(order, query=True)
        )

    def _cancel_replace(self, kind: str, account: Account, p: dict) -> dict:
        """``POST /api/v3/order/cancelReplace``: cancel one order, then place a new one.

        STOP_ON_FAILURE: a failed cancel places nothing (−2022); ALLOW_FAILURE places the new
        order anyway. A new order refused after a cancel answers −2021 (partially failed).
        """
        mode = (p.get("cancelReplaceMode") or "").upper()
        if mode not in ("STOP_ON_FAILURE", "ALLOW_FAILURE"):
            raise E.mandatory("cancelReplaceMode")
        target = {
            "symbol": p.get("symbol", ""),
            "orderId": p.get("cancelOrderId", ""),
            "origClientOrderId": p.get("cancelOrigClientOrderId", ""),
        }
        new_params = {
            k: v
            for k, v in p.items()
            if k not in ("cancelReplaceMode", "cancelOrderId", "cancelOrigClientOrderId")
        }
        body: dict = {}
        try:
            body["cancelResponse"] = views.spot_cancel(
                self.exchange.cancel_order(account, SPOT, target)
            )
            body["cancelResult"] = "SUCCESS"
        except BinanceError as exc:
            body["cancelResult"], body["cancelResponse"] = "FAILURE", exc.body()
            if mode == "STOP_ON_FAILURE":
                body["newOrderResult"], body["newOrderResponse"] = "NOT_ATTEMPTED", None
                raise E.CancelReplaceFailed(-2022, "Order cancel-replace failed.", body) from None
        try:
            body["newOrderResponse"] = self._new_order(SPOT, account, new_params)
            body["newOrderResult"] = "SUCCESS"
        except BinanceError as exc:
            body["newOrderResult"], body["newOrderResponse"] = "FAILURE", exc.body()
            code = -2021 if body["cancelResult"] == "SUCCESS" else -2022
            message = (
                "Order cancel-replace partially failed."
                if code == -2021
                else ("Order cancel-replace failed.")
            )
            raise E.CancelReplaceFailed(code, message, body) from None
        return {
            "cancelResult": body["cancelResult"],
            "newOrderResult": body["newOrderResult"],
            "cancelResponse": body["cancelResponse"],
            "newOrderResponse": body["newOrderResponse"],
        }

    def _open_order(self, kind: str, account: Account, p: dict) -> dict:
        return self._futures_view(self.exchange.open_order(account, kind, p), query=True)

    def _modify_order(self, kind: str, account: Account, p: dict) -> dict:
        return self._futures_view(self.exchange.modify_order(account, p))

    def _batch_orders(self, kind: str, account: Account, p: dict) -> list:
        """Up to 5 orders, each answered on its own: the order, or its ``{code, msg}``."""
        try:
            batch = orjson.loads(p.get("batchOrders") or "")
        except orjson.JSONDecodeError:
            raise E.err(E.BATCH_INVALID) from None
        if not isinstance(batch, list) or not 1 <= len(batch) <= 5:
            raise E.err(E.BATCH_INVALID)
        answers: list = []
        for item in batch:
            if not isinstance(item, dict):
                answers.append(E.err(E.BATCH_INVALID).body())
                continue
            params = {k: _param_text(v) for k, v in item.items()}
            try:
                answers.append(self._new_order(kind, account, params))
            except BinanceError as exc:
                answers.append(exc.body())
        return answers

    def _algo_view(self, algo, *, query: bool = False) -> dict:
        pm = self.exchange.catalog.futures[algo.symbol]
        return views.futures_algo_order(algo, pm, query=query)

    def _new_algo_order(self, kind: str, account: Account, p: dict) -> dict:
        return self._algo_view(self.exchange.place_algo_order(account, p))

    def _query_algo_order(self, kind: str, account: Account, p: dict) -> dict:
        return self._algo_view(self.exchange.find_algo_order(account, p), query=True)

    def _cancel_algo_order(self, kind: str, account: Account, p: dict) -> dict:
        algo = self.exchange.cancel_algo_order(account, p)
        return {
            "algoId": algo.algo_id,
            "clientAlgoId": algo.client_algo_id,
            "code": "200",
            "msg": "success",
        }

    def _open_algo_orders(self, kind: str, account: Account, p: dict) -> list:
        algos = self.exchange.open_algo_orders(account, p.get("symbol"))
        return [self._algo_view(a, query=True) for a in algos]

    def _cancel_all_algo(self, kind: str, account: Account, p: dict) -> dict:
        symbol = self.exchange.market(FUTURES, p.get("symbol")).symbol
        for algo in self.exchange.open_algo_orders(account, symbol):
            self.exchange.cancel_algo_order(account, {"algoId": str(algo.algo_id)})
        return {"code": 200, "msg": "The operation of cancel all open order is done."}

    def _symbol_config(self, kind: str, account: Account, p: dict) -> list:
        ex = self.exchange
        symbols = (
            [ex.market(FUTURES, p["symbol"]).symbol]
            if p.get("symbol")
            else list(ex.catalog.futures)
        )
        return [
            {
                "symbol": s,
                "marginType": account.margin_type.get(s, "CROSSED"),
                "isAutoAddMargin": "false",
                "leverage": account.leverage_of(s),
                "maxNotionalValue": views.fixed(ex.max_notional(account, s), 0),
            }
            for s in symbols
        ]

    def _cancel_order(self, kind: str, account: Account, p: dict) -> dict:
        order = self.exchange.cancel_order(account, kind, p)
        return views.spot_cancel(order) if kind == SPOT else self._futures_view(order)

    def _open_orders(self, kind: str, account: Account, p: dict) -> list:
        orders = self.exchange.open_orders(account, kind, p.get("symbol"))
        fmt = (
            (lambda o: views.spot_order(o, query=True))
            if kind == SPOT
            else (lambda o: self._futures_view(o, query=True))
        )
        return [fmt(o) for o in orders]

    def _cancel_all(self, kind: str, account: Account, p: dict) -> object:
        orders = self.exchange.open_orders(
            account, kind, p.get("symbol") or self.exchange.market(kind, None).symbol
        )
        done = [
            self.exchange.cancel_order(
                account, kind, {"symbol": o.symbol, "orderId": str(o.order_id)}
            )
            for o in orders
        ]
        if kind == SPOT:
            return [views.spot_cancel(o) for o in done]
        return {"code": 200, "msg": "The operation of cancel all open order is done."}

    def _all_orders(self, kind: str, account: Account, p: dict) -> list:
        pm = self.exchange.market(kind, p.get("symbol"))
        orders = [o for (k, _), o in account.orders.items() if k == kind and o.symbol == pm.symbol]
        if p.get("orderId"):
            orders = [o for o in orders if o.order_id >= int(p["orderId"])]
        limit = min(int(p.get("limit") or 500), 1000)
        fmt = (
            (lambda o: views.spot_order(o, query=True))
            if kind == SPOT
            else (lambda o: self._futures_view(o, query=True))
        )
        return [fmt(o) for o in orders[-limit:]]

    def _my_trades(self, kind: str, account: Account, p: dict) -> list:
        fills = self.exchange.my_trades(account, kind, p)
        return (
            [views.spot_trade(f) for f in fills]
            if kind == SPOT
            else [views.futures_trade(f, self.exchange.catalog.futures[f.symbol]) for f in fills]
        )

    def _spot_account(self, kind: str, account: Account, p: dict) -> dict:
        return views.spot_account(account, wall_ms())

    def _futures_account(self, version: int) -> Handler:
        return lambda kind, account, p: views.futures_account(
            account, self.exchange.futures_figures(account, wall_ms()), version=version
        )

    def _futures_balance(self, kind: str, account: Account, p: dict) -> list:
        body = views.futures_account(account, self.exchange.futures_figures(account, wall_ms()))
        a = body["assets"][0]
        return [
            {
                "accountAlias": "paper",
                "asset": "USDT",
                "balance": a["walletBalance"],
                "crossWalletBalance": a["crossWalletBalance"],
                "crossUnPnl": a["crossUnPnl"],
                "availableBalance": a["availableBalance"],
                "maxWithdrawAmount": a["maxWithdrawAmount"],
                "marginAvailable": True,
                "updateTime": a["updateTime"],
            }
        ]

    def _position_risk(self, version: int) -> Handler:
        def handler(kind: str, account: Account, p: dict) -> list:
            ex, now = self.exchange, wall_ms()
            if p.get("symbol"):
                symbols = [ex.market(FUTURES, p["symbol"]).symbol]
            else:
                symbols = [s for s, pos in account.positions.items() if pos.qty]
            return [
                views.position_risk(
                    ex.market(FUTURES, s), ex.position_figures(account, s), now, version=version
                )
                for s in symbols
            ]

        return handler

    def _leverage(self, kind: str, account: Account, p: dict) -> dict:
        value = self.exchange.set_leverage(account, p.get("symbol"), p.get("leverage"))
        cap = self.exchange.max_notional(account, p["symbol"])
        return {"leverage": value, "maxNotionalValue": views.fixed(cap, 0), "symbol": p["symbol"]}

    def _margin_type(self, kind: str, account: Account, p: dict) -> dict:
        self.exchange.set_margin_type(account, p.get("symbol"), p.get("marginType"))
        return {"code": 200, "msg": "success"}

    def _leverage_bracket(self, kind: str, account: Account, p: dict) -> object:
        ex = self.exchange
        symbols = (
            [ex.market(FUTURES, p["symbol"]).symbol]
            if p.get("symbol")
            else list(ex.catalog.futures)
        )
        rows = [views.leverage_brackets(s) for s in symbols]
        return rows[0] if p.get("symbol") else rows  # Binance: an object for one symbol

    def _income(self, kind: str, account: Account, p: dict) -> list:
        """Income history, oldest first: funding fees (``incomeType``, ``startTime``, ``limit``)."""
        rows = account.income
        if p.get("incomeType"):
            rows = [r for r in rows if r["incomeType"] == p["incomeType"]]
        if p.get("symbol"):
            rows = [r for r in rows if r["symbol"] == p["symbol"]]
        if p.get("startTime"):
            rows = [r for r in rows if r["time"] >= int(p["startTime"])]
        return rows[: min(int(p.get("limit") or 100), 1000)]

    def _listen_key(self, kind: str, account: Account, p: dict) -> dict:
        return {"listenKey": self.hub.listen_key(account.account_id, kind)}

    def _keepalive(self, kind: str, account: Account, p: dict) -> dict:
        key = p.get("listenKey")
        if key and key not in self.hub.listen_keys:
            raise E.err(E.INVALID_LISTEN_KEY)
        return (
            {}
            if kind == SPOT
            else {"listenKey": key or self.hub.listen_key(account.account_id, kind)}
        )

    def _close_key(self, kind: str, account: Account, p: dict) -> dict:
        if p.get("listenKey"):
            self.hub.close_listen_key(p["listenKey"])
        return {}

    # -- websockets --------------------------------------------------------------------------------

    async def _ws_listen_key(self, websocket: WebSocket) -> None:
        key = (
            websocket.path_params.get("listen_key") or websocket.query_params.get("listenKey") or ""
        )
        owner = self.hub.listen_keys.get(key)
        await websocket.accept()
        if owner is None:
            await websocket.send_text(
                orjson.dumps({"e": "listenKeyExpired", "E": wall_ms(), "listenKey": key}).decode()
            )
            await websocket.close(code=1008)
            return
        await self._serve_subscriber(Subscriber(websocket, owner[0], owner[1]))

    async def _serve_subscriber(self, sub: Subscriber, reader: Callable | None = None) -> None:
        self.hub.add(sub)
        pump = asyncio.create_task(self.hub.pump(sub))
        try:
            while True:
                message = await sub.websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            self.hub.remove(sub)
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pump

    async def _ws_api(self, websocket: WebSocket) -> None:
        """Binance's spot WebSocket API, the part ccxt.pro uses: user-data subscription by signature."""
        await websocket.accept()
        sub: Subscriber | None = None
        pump: asyncio.Task | None = None
        try:
            while True:
                text = await websocket.receive_text()
                try:
                    request = orjson.loads(text)
                except orjson.JSONDecodeError:
                    continue
                rid = request.get("id")
                method = request.get("method")
                params = request.get("params") or {}
                if method == "userDataStream.subscribe.signature":
                    try:
                        account = self._ws_verify(params)
                    except BinanceError as exc:
                        await websocket.send_text(
                            orjson.dumps(
                                {"id": rid, "status": exc.status, "error": exc.body()}
                            ).decode()
                        )
                        continue
                    if sub is None:
                        sub = Subscriber(websocket, account.account_id, SPOT, subscription_id=0)
                        self.hub.add(sub)
                        pump = asyncio.create_task(self.hub.pump(sub))
                    await websocket.send_text(
                        orjson.dumps(
                            {"id": rid, "status": 200, "result": {"subscriptionId": 0}}
                        ).decode()
                    )
                elif method == "userDataStream.unsubscribe" and sub is not None:
                    self.hub.remove(sub)
                    await websocket.send_text(
                        orjson.dumps({"id": rid, "status": 200, "result": {}}).decode()
                    )
                elif method == "ping":
                    await websocket.send_text(
                        orjson.dumps({"id": rid, "status": 200, "result": {}}).decode()
                    )
                else:
                    error = {
                        "code": -1000,
                        "msg": f"Unsupported method {method!r} on the paper exchange.",
                    }
                    await websocket.send_text(
                        orjson.dumps({"id": rid, "status": 400, "error": error}).decode()
                    )
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            if sub is not None:
                self.hub.remove(sub)
            if pump is not None:
                pump.cancel()

    def _ws_verify(self, params: dict) -> Account:
        account = api_key_account(params.get("apiKey"), self.exchange.account_by_key)
        signature = str(params.get("signature") or "")
        payload = "&".join(f"{k}={params[k]}" for k in sorted(params) if k != "signature")
        expected = hmac.new(account.secret, payload.encode(), "sha256").hexdigest()
        if not hmac.compare_digest(expected, signature):
            raise E.err(E.BAD_SIGNATURE)
        check_timestamp({k: str(v) for k, v in params.items()}, wall_ms())
        return account

    # -- admin -----------------------------------------------------------------------------------

    def admin(self, fn: Callable) -> Callable:
        async def endpoint(request: Request) -> Response:
            token = request.headers.get("x-admin-token", "").encode()
            if not hmac.compare_digest(token, self._admin_token):
                return json_response(
                    {"error": "admin token missing or wrong (header X-Admin-Token)"}, 401
                )
            raw = await request.body()
            try:
                data = orjson.loads(raw) if raw else {}
                if not isinstance(data, dict):
                    raise ValueError("body: must be a JSON object")
                result = fn(request, data)
                if asyncio.iscoroutine(result):
                    result = await result
            except KeyError as exc:
                return json_response({"error": f"{exc.args[0]}: missing (required)"}, 400)
            except (ValueError, TypeError, orjson.JSONDecodeError) as exc:
                return json_response({"error": str(exc)}, 400)
            except BinanceError as exc:
                return json_response({"error": exc.msg, "code": exc.code}, 400)
            return json_response(result)

        return endpoint

    def _account_view(self, account: Account, secret: bool = False) -> dict:
        ex = self.exchange
        body = {
            "account_id": account.account_id,
            "name": account.name,
            "api_key": account.api_key,
            "fees": {
                "spot_maker_fee": str(account.spot_maker_fee),
                "spot_taker_fee": str(account.spot_taker_fee),
                "futures_maker_fee": str(account.futures_maker_fee),
                "futures_taker_fee": str(account.futures_taker_fee),
            },
            "spot": {
                a: {
                    "free": str(account.spot_free.get(a, 0)),
                    "locked": str(account.spot_locked.get(a, 0)),
                }
                for a in sorted(set(account.spot_free) | set(account.spot_locked))
            },
            "futures": {a: str(v) for a, v in account.futures_wallet.items()},
            "positions": {
                s: {
                    "quantity": str(p.qty),
                    "entry_price": str(p.entry_price),
                    "unrealized_pnl": str(ex.unrealized_pnl(p)),
                    "leverage": account.leverage_of(s),
                }
                for s, p in account.positions.items()
                if p.qty
            },
            "open_orders": len(account.open_orders),
            "fills": sum(len(v) for v in account.fills.values()),
        }
        if secret:
            body["api_secret"] = account.secret.decode()
        return body

    def _admin_create_account(self, request: Request, data: dict) -> dict:
        account = self.exchange.create_account(
            name=data.get("name"),
            spot={k: _amount(v, f"spot.{k}") for k, v in (data.get("spot") or {}).items()},
            futures={k: _amount(v, f"futures.{k}") for k, v in (data.get("futures") or {}).items()},
            fees={k: _amount(v, f"fees.{k}") for k, v in (data.get("fees") or {}).items()},
            api_key=data.get("api_key"),
            api_secret=data.get("api_secret"),
        )
        return self._account_view(account, secret=True)

    def _admin_list_accounts(self, request: Request, data: dict) -> dict:
        return {
            "accounts": [
                {"account_id": a.account_id, "name": a.name}
                for a in self.exchange.accounts.values()
            ]
        }

    def _admin_get_account(self, request: Request, data: dict) -> dict:
        return self._account_view(self._admin_account(request))

    def _admin_account(self, request: Request) -> Account:
        account_id = request.path_params["account_id"]
        account = self.exchange.accounts.get(account_id)
        if account is None:
            raise ValueError(f"account_id: {account_id!r} does not exist")
        return account

    def _admin_deposit(self, request: Request, data: dict) -> dict:
        account = self._admin_account(request)
        wallet = data.get("wallet", SPOT)
        asset = data["asset"]
        if not isinstance(asset, str) or not asset:
            raise ValueError(f"asset: {asset!r} must be an asset name such as USDT")
        self.exchange.deposit(account, wallet, asset, _amount(data["amount"], "amount"))
        return self._account_view(account)

    def _admin_journal(self, request: Request, data: dict) -> dict:
        account = self._admin_account(request)
        return {"journal": [[w, a, r, str(v)] for w, a, r, v in account.journal]}

    async def _admin_add_fault(self, request: Request, data: dict) -> dict:
        account_id = data.get("account_id")
        if account_id is not None and account_id not in self.exchange.accounts:
            raise ValueError(f"account_id: {account_id!r} does not exist")
        fault = self.faults.add(data)
        if fault.kind == "drop_stream":
            dropped = await self.hub.drop(account_id)
            return {"fault": fault.as_dict(), "dropped": dropped}
        return {"fault": fault.as_dict()}

    def _admin_list_faults(self, request: Request, data: dict) -> dict:
        return {"faults": [f.as_dict() for f in self.faults.list()]}

    def _admin_clear_faults(self, request: Request, data: dict) -> dict:
        return {
            "cleared": self.faults.clear(
                data.get("account_id") or request.query_params.get("account_id")
            )
        }

    def _admin_clock(self, request: Request, data: dict) -> dict:
        clock = self.exchange.clock
        if request.method == "POST":
            speed = data.get("speed")
            if speed is not None and (
                isinstance(speed, bool) or not isinstance(speed, int | float) or speed < 0
            ):
                raise ValueError(f"speed: {speed!r} must be a number ≥ 0")
            if "time" in data:
                target = parse_time_ms(str(data["time"]))
                # forward_only: several bots pace one clock; none may send it back in time
                if not data.get("forward_only") or target > clock.now_ms():
                    clock.set(target, speed)
            elif "advance_seconds" in data:
                seconds = _amount(data["advance_seconds"], "advance_seconds")
                if seconds < 0:
                    raise ValueError(f"advance_seconds: {seconds} must be ≥ 0")
                clock.advance(int(seconds * 1000))
                if speed is not None:
                    clock.speed = float(speed)
            elif speed is not None:
                clock.set(clock.now_ms(), float(speed))
            self.exchange.tick()
        now = clock.now_ms()
        return {
            "sim_time_ms": now,
            "sim_time": _iso(now),
            "speed": clock.speed,
            "server_time_ms": wall_ms(),
        }

    def _admin_price(self, request: Request, data: dict) -> dict:
        kind = data.get("kind", SPOT)
        if kind not in (SPOT, FUTURES):
            raise ValueError(f"kind: {kind!r} is not spot or futures")
        symbol = data["symbol"]
        if not isinstance(symbol, str):
            raise ValueError(f"symbol: {symbol!r} must be a string")
        self.exchange.market(kind, symbol)
        price = data.get("price")
        self.exchange.set_price(kind, symbol, None if price is None else _amount(price, "price"))
        return {"kind": kind, "symbol": symbol, "price": str(self.exchange.price(kind, symbol))}

    def _admin_book(self, request: Request, data: dict) -> dict:
        config = BookConfig.from_dict(data)
        if (
            config.levels < 1
            or config.level_notional_multiple <= 0
            or config.spread_bps < 0
            or config.step_bps < 0
        ):
            raise ValueError(
                "book: levels ≥ 1, level_notional_multiple > 0, spread_bps and step_bps ≥ 0"
            )
        if data.get("symbol"):
            kind = data.get("kind", SPOT)
            self.exchange.market(kind, data["symbol"])
            self.exchange.book_overrides[(kind, data["symbol"])] = config
        else:
            self.exchange.book = config
        return {"book": config.as_dict()}

    def _admin_markets(self, request: Request, data: dict) -> dict:
        return {
            kind: {s: pm.price_source for s, pm in self.exchange.catalog.of(kind).items()}
            for kind in (SPOT, FUTURES)
        }

    def _admin_health(self, request: Request, data: dict) -> dict:
        return {
            "accounts": len(self.exchange.accounts),
            "requests": self.requests,
            "events_sent": self.hub.sent,
            "subscribers": sum(len(s) for s in self.hub.subscribers.values()),
            "sim_time": _iso(self.exchange.clock.now_ms()),
        }

    # -- app -------------------------------------------------------------------------------------

    async def _ticker(self) -> None:
        ticks = 0
        while True:
            await asyncio.sleep(TICK_SECONDS)
            ticks += 1
            if ticks % FREEZE_EVERY_TICKS == 0:
                # Orders, fills and journals are kept for the server's life, so the heap grows
                # with every order (60,000 orders: a 120 ms full collection). Freezing what has
                # survived so far keeps full passes to the last interval's objects.
                gc.freeze()
            try:
                self.exchange.tick()
                self.hub.flush_held()
            except Exception:  # the market must keep ticking whatever one tick hit
                log.exception("paper exchange tick failed")

    def rest_routes(self) -> dict[tuple[str, str], Callable]:
        """Return the Binance REST routes as {(method, path): ASGI endpoint}."""
        pub, sig, key = self.public, self.signed, self.keyed
        r: dict[tuple[str, str], Callable] = {}
        for prefix, kind in (("/api/v3", SPOT), ("/fapi/v1", FUTURES)):
            r[("GET", f"{prefix}/ping")] = pub(lambda p: {})
            r[("GET", f"{prefix}/time")] = pub(self._time)
            r[("GET", f"{prefix}/exchangeInfo")] = pub(self._exchange_info(kind))
            r[("GET", f"{prefix}/depth")] = pub(self._depth(kind))
            r[("GET", f"{prefix}/ticker/price")] = pub(self._ticker_price(kind))
            r[("GET", f"{prefix}/ticker/24hr")] = pub(self._ticker_24hr(kind))
            r[("GET", f"{prefix}/ticker/bookTicker")] = pub(self._book_ticker(kind))
            r[("GET", f"{prefix}/klines")] = pub(self._klines(kind))
            r[("GET", f"{prefix}/aggTrades")] = pub(self._agg_trades(kind))
            r[("POST", f"{prefix}/order")] = sig(kind, self._new_order)
            r[("GET", f"{prefix}/order")] = sig(kind, self._query_order)
            r[("DELETE", f"{prefix}/order")] = sig(kind, self._cancel_order)
            r[("GET", f"{prefix}/openOrders")] = sig(kind, self._open_orders)
            r[("GET", f"{prefix}/allOrders")] = sig(kind, self._all_orders)
        r[("DELETE", "/api/v3/openOrders")] = sig(SPOT, self._cancel_all)
        r[("POST", "/api/v3/order/cancelReplace")] = sig(SPOT, self._cancel_replace)
        r[("DELETE", "/fapi/v1/allOpenOrders")] = sig(FUTURES, self._cancel_all)
        r[("GET", "/api/v3/account")] = sig(SPOT, self._spot_account)
        r[("GET", "/api/v3/myTrades")] = sig(SPOT, self._my_trades)
        r[("POST", "/api/v3/userDataStream")] = key(SPOT, self._listen_key)
        r[("PUT", "/api/v3/userDataStream")] = key(SPOT, self._keepalive)
        r[("DELETE", "/api/v3/userDataStream")] = key(SPOT, self._close_key)
        r[("GET", "/fapi/v1/premiumIndex")] = pub(self._premium_index)
        r[("GET", "/fapi/v1/openOrder")] = sig(FUTURES, self._open_order)
        r[("PUT", "/fapi/v1/order")] = sig(FUTURES, self._modify_order)
        r[("POST", "/fapi/v1/batchOrders")] = sig(FUTURES, self._batch_orders)
        r[("GET", "/fapi/v1/symbolConfig")] = sig(FUTURES, self._symbol_config)
        r[("POST", "/fapi/v1/algoOrder")] = sig(FUTURES, self._new_algo_order)
        r[("GET", "/fapi/v1/algoOrder")] = sig(FUTURES, self._query_algo_order)
        r[("DELETE", "/fapi/v1/algoOrder")] = sig(FUTURES, self._cancel_algo_order)
        r[("GET", "/fapi/v1/openAlgoOrders")] = sig(FUTURES, self._open_algo_orders)
        r[("DELETE", "/fapi/v1/algoOpenOrders")] = sig(FUTURES, self._cancel_all_algo)
        r[("GET", "/fapi/v1/userTrades")] = sig(FUTURES, self._my_trades)
        r[("POST", "/fapi/v1/leverage")] = sig(FUTURES, self._leverage)
        r[("POST", "/fapi/v1/marginType")] = sig(FUTURES, self._margin_type)
        r[("GET", "/fapi/v1/leverageBracket")] = sig(FUTURES, self._leverage_bracket)
        r[("GET", "/fapi/v1/income")] = sig(FUTURES, self._income)
        r[("GET", "/fapi/v1/positionSide/dual")] = sig(
            FUTURES, lambda k, a, p: {"dualSidePosition": False}
        )
        r[("GET", "/fapi/v1/multiAssetsMargin")] = sig(
            FUTURES, lambda k, a, p: {"multiAssetsMargin": False}
        )
        r[("POST", "/fapi/v1/listenKey")] = key(FUTURES, self._listen_key)
        r[("PUT", "/fapi/v1/listenKey")] = key(FUTURES, self._keepalive)
        r[("DELETE", "/fapi/v1/listenKey")] = key(FUTURES, self._close_key)
        for version in (2, 3):
            r[("GET", f"/fapi/v{version}/account")] = sig(FUTURES, self._futures_account(version))
            r[("GET", f"/fapi/v{version}/balance")] = sig(FUTURES, self._futures_balance)
            r[("GET", f"/fapi/v{version}/positionRisk")] = sig(
                FUTURES, self._position_risk(version)
            )
        # A plain ccxt.binance loads COIN-M markets too (none here) and, with an API key,
        # currencies and margin pairs; answer them empty so it works unchanged.
        r[("GET", "/dapi/v1/exchangeInfo")] = pub(
            lambda p: {
                "timezone": "UTC",
                "serverTime": wall_ms(),
                "rateLimits": [],
                "exchangeFilters": [],
                "symbols": [],
            }
        )
        for path in ("capital/config/getall", "margin/allPairs", "margin/isolated/allPairs"):
            r[("GET", f"/sapi/v1/{path}")] = sig(SPOT, lambda k, a, p: [])
        return r

    def routes(self) -> list:
        """Return the Starlette routes: websockets and admin."""
        adm = self.admin
        return [
            WebSocketRoute("/ws/{listen_key}", self._ws_listen_key),
            WebSocketRoute("/fws/ws/{listen_key}", self._ws_listen_key),
            WebSocketRoute("/fws/private/ws", self._ws_listen_key),
            WebSocketRoute("/fws/private/ws/{listen_key}", self._ws_listen_key),
            WebSocketRoute("/ws-api/v3", self._ws_api),
            Route("/admin/health", adm(self._admin_health), methods=["GET"]),
            Route("/admin/accounts", adm(self._admin_create_account), methods=["POST"]),
            Route("/admin/accounts", adm(self._admin_list_accounts), methods=["GET"]),
            Route("/admin/accounts/{account_id}", adm(self._admin_get_account), methods=["GET"]),
            Route(
                "/admin/accounts/{account_id}/deposit", adm(self._admin_deposit), methods=["POST"]
            ),
            Route(
                "/admin/accounts/{account_id}/journal", adm(self._admin_journal), methods=["GET"]
            ),
            Route("/admin/faults", adm(self._admin_add_fault), methods=["POST"]),
            Route("/admin/faults", adm(self._admin_list_faults), methods=["GET"]),
            Route("/admin/faults", adm(self._admin_clear_faults), methods=["DELETE"]),
            Route("/admin/clock", adm(self._admin_clock), methods=["GET", "POST"]),
            Route("/admin/prices", adm(self._admin_price), methods=["POST"]),
            Route("/admin/book", adm(self._admin_book), methods=["POST"]),
            Route("/admin/markets", adm(self._admin_markets), methods=["GET"]),
        ]

    def app(self) -> RestRouter:
        @asynccontextmanager
        async def lifespan(app: Starlette):
            # The reference data (price paths, markets) is tens of thousands of long-lived
            # objects: every full pass of the cyclic collector walked them (≈ 50 ms each, in the
            # middle of a burst of orders). Frozen, the collector skips them; unfrozen at stop,
            # so a test process that runs many servers frees them as usual.
            gc.collect()
            gc.freeze()
            task = asyncio.create_task(self._ticker())
            try:
                yield
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                await self.hub.drop(None)
                gc.unfreeze()

        app = Starlette(routes=self.routes(), lifespan=lifespan)
        app.state.paper = self
        return RestRouter(self.rest_routes(), app)


def _param_text(value: object) -> str:
    """A batch item's JSON value as the form parameter Binance reads it as."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _int_param(p: dict, name: str) -> int | None:
    raw = p.get(name)
    if raw is None or raw == "":
        return None
    if not raw.lstrip("-").isdigit():
        raise BinanceError(
            -1100,
            f"Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}$'.",
        )
    return int(raw)


def _limit(p: dict, default: int, most: int) -> int:
    value = _int_param(p, "limit")
    if value is None:
        return default
    if value <= 0:
        raise BinanceError(
            -1100, "Illegal characters found in parameter 'limit'; legal range is '^[0-9]{1,20}$'."
        )
    return min(value, most)


def _amount(value: object, field: str) -> Decimal:
    if isinstance(value, float):
        raise ValueError(f"{field}: {value!r} is a float; send amounts as strings or integers")
    return to_decimal(value, field)


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}Z"
