"""The ccxt gateway's lean order path: one signed POST per market order on a kept-alive connection.

Profiled (benchmarks/copy_latency.py, 100 concurrent market orders against the paper exchange):
ccxt's ``create_order`` costs ≈0.62 ms of client CPU per order (market lookups, precision
rounding, parameter merging, ``parse_order``); ccxt's implicit endpoint method
``fapiPrivatePostOrder`` ≈0.40 ms (``fetch2``/``sign``/``fetch`` plumbing); the same signed POST
on aiohttp ≈0.24 ms; on a minimal keep-alive HTTP/1.1 client (``http1.Pool``, one per account)
≈0.13 ms. At 1,000 followers on two cores that difference is the latency budget. ``begin`` and
``finish`` split one order in two so that a fan-out signs and writes every order synchronously
(no task, timer or coroutine per order) and then waits for all answers at once
(``CcxtGateway.place_many``); the query string is formatted directly (its values are Binance's
plain charset) and signed with a pre-keyed HMAC.

What it keeps from ccxt, so the semantics do not change: the account's API key, secret, endpoint
URLs and timeout as its ccxt client has them (``SigningKey``, taken from the factory's ccxt
client, so the account's own client is only built when something needs it), Binance's request format and HMAC-SHA256 signature (the
same query string ccxt's ``sign`` builds), ccxt's own error mapping (``handle_errors`` and
``handle_http_status_code`` raise the exception ccxt would raise for that answer, translated once
by ``copytrade.exchange.errors``) and the gateway's order parser. Timeouts and network errors are
unknown outcomes, resolved by client order id before any resend (R-COPY-11). The caller has
already rounded and checked the quantity against the market's filters (R-COPY-6). Only market
orders take this path; the gateway sends everything else through ccxt.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import quote, urlsplit

import ccxt.async_support as ccxt
import orjson

from copytrade import clock
from copytrade.exchange.errors import translate
from copytrade.exchange.http1 import Connection, Pool, Response
from copytrade.exchange.protocol import OrderRequest, OrderState

_FORM = "application/x-www-form-urlencoded"
_PLAIN = re.compile(r"[A-Za-z0-9._-]+")  # needs no percent-encoding in a query string

OrderParser = Callable[[dict, str | None], OrderState]
# The account's ccxt client: built on the first call, or (build=False) None while it is not.
ClientOf = Callable[..., ccxt.Exchange | None]


def _plain(value) -> str:
    return format(value.normalize(), "f")


def _q(value: str) -> str:
    return value if _PLAIN.fullmatch(value) else quote(value, safe="")


def timestamp() -> str:
    """Binance's ``timestamp`` parameter: now in milliseconds."""
    return str(int(time.time() * 1000))


class Pending:
    """A market order written on a kept-alive connection, its answer not yet read."""

    __slots__ = ("request", "body", "sent", "conn", "waiter")

    def __init__(self, request, body, sent: float, conn: Connection, waiter) -> None:
        self.request, self.body, self.sent, self.conn, self.waiter = (
            request,
            body,
            sent,
            conn,
            waiter,
        )

    def sent_at(self) -> datetime:
        return clock.at_wall(self.sent)

    def acked_at(self) -> datetime:
        return clock.at_wall(self.waiter.result().received)


@dataclass(frozen=True, slots=True)
class SigningKey:
    """What the lean path signs and addresses with, known before the account's ccxt client is
    built: building one costs ≈ 2.2 ms of CPU and ≈ 0.26 MB (ccxt's ``describe`` and implicit
    endpoint methods), which for a shard of 5,000 followers was 11 s of start-up and 1.3 GB."""

    api_key: str = field(repr=False)
    secret: str = field(repr=False)
    api_urls: Mapping[str, str] = field(repr=False)  # ccxt's ``urls["api"]``
    timeout_ms: int
    exchange_id: str


class LeanOrders:
    """One account's lean path: order URL, API key, pre-keyed HMAC, timeout, keep-alive pool."""

    __slots__ = (
        "exchange_id",
        "client",
        "futures",
        "parse",
        "url",
        "path",
        "headers",
        "raw_headers",
        "mac",
        "timeout",
        "market_type",
        "tail",
        "pool",
        "leverage_url",
    )

    def __init__(
        self,
        key: SigningKey,
        client: ClientOf,
        futures: bool,
        parse: OrderParser,
    ) -> None:
        self.exchange_id = key.exchange_id
        self.client = client  # read for error answers only (ccxt's error tables and handlers)
        self.futures = futures
        self.parse = parse
        base = key.api_urls["fapiPrivate" if futures else "private"]
        self.url = f"{base}/order"
        self.path = urlsplit(self.url).path
        self.headers = {"X-MBX-APIKEY": key.api_key, "Content-Type": _FORM}
        self.raw_headers = f"X-MBX-APIKEY: {key.api_key}\r\nContent-Type: {_FORM}\r\n".encode()
        self.mac = hmac.new(key.secret.encode(), digestmod=hashlib.sha256)
        self.timeout = key.timeout_ms / 1000
        self.market_type = "linear" if futures else "spot"
        self.tail = f"&newOrderRespType={'RESULT' if futures else 'FULL'}"
        self.pool = Pool(self.url)
        self.leverage_url = f"{base}/leverage" if futures else None

    def close(self) -> None:
        """Close the kept-alive connections."""
        self.pool.close()

    def body(self, request: OrderRequest, stamp: str) -> bytes:
        """The signed form body of a market order (the query string ccxt's ``sign`` builds)."""
        query = (
            f"symbol={_q(request.symbol)}&side={request.side.upper()}&type=MARKET"
            f"&quantity={_plain(request.quantity)}&newClientOrderId={_q(request.client_order_id)}"
            f"{self.tail}"
        )
        if request.reduce_only and self.futures:
            query += "&reduceOnly=true"
        return self._signed(f"{query}&timestamp={stamp}")

    def _signed(self, query: str) -> bytes:
        data = query.encode()
        mac = self.mac.copy()
        mac.update(data)
        return data + b"&signature=" + mac.hexdigest().encode()

    async def set_leverage(self, symbol: str, leverage: int) -> dict:
        """USDⓈ-M ``POST /fapi/v1/leverage`` as ccxt's ``set_leverage`` sends it, on the same
        kept-alive pool as the orders: a copy's first order then finds its connection open.

        Through ccxt and aiohttp, the 5,000 followers' first leverage calls of
        ``benchmarks/scale_out.py`` cost ~1 ms of engine CPU each and 5,000 more connections
        (engine CPU per follower order over the run: 0.49 -> 0.43 ms). Not a state change
        whose doubt matters: failures are plain errors, as through ccxt.
        """
        if not 1 <= leverage <= 125:  # ccxt's own check, with its error
            raise self._plain_error(
                ccxt.BadRequest(f"{self.exchange_id} leverage should be between 1 and 125")
            )
        body = self._signed(f"symbol={_q(symbol)}&leverage={int(leverage)}&timestamp={timestamp()}")
        path = urlsplit(self.leverage_url).path
        try:
            try:
                response = await self.pool.post(path, body, self.raw_headers, self.timeout)
            except (OSError, EOFError, TimeoutError) as exc:
                self._network_error(exc, self.leverage_url)
            return self._checked(response, body, self.leverage_url)
        except ccxt.BaseError as exc:
            raise self._plain_error(exc) from None

    def begin(self, request: OrderRequest, stamp: str) -> Pending | None:
        """Sign and write a market order now on an idle connection; None when there is none."""
        body = self.body(request, stamp)
        sent = time.time()
        started = self.pool.begin(self.pool.request(self.path, body, self.raw_headers))
        if started is None:
            return None
        return Pending(request, body, sent, *started)

    def finish(self, pending: Pending) -> OrderState:
        """The result of a ``begin`` once its answer is in (or its time is up), as ``post``'s."""
        try:
            try:
                response = self.pool.finish(pending.conn, pending.waiter)
            except (OSError, EOFError, TimeoutError) as exc:
                self._network_error(exc)
            return self._answer(pending.request, response, pending.body)
        except ccxt.BaseError as exc:
            raise self._translated(exc) from None

    async def post(self, request: OrderRequest) -> OrderState:
        """Send one market order and wait for its answer (opening a connection if needed)."""
        body = self.body(request, timestamp())
        try:
            try:
                response = await self.pool.post(self.path, body, self.raw_headers, self.timeout)
            except (OSError, EOFError, TimeoutError) as exc:
                self._network_error(exc)
            return self._answer(request, response, body)
        except ccxt.BaseError as exc:
            raise self._translated(exc) from None

    def _network_error(self, exc: BaseException, url: str | None = None):
        url = url or self.url
        if isinstance(exc, TimeoutError):
            raise ccxt.RequestTimeout(f"{self.exchange_id} POST {url} timed out") from exc
        raise ccxt.NetworkError(f"{self.exchange_id} POST {url} {type(exc).__name__}") from exc

    # A timeout or a dropped connection needs no client to translate (no answer, no code): a
    # burst of timeouts must not build thousands of clients. An error answer has built it.
    def _translated(self, exc: ccxt.BaseError) -> Exception:
        client = self.client(build=False)
        return translate(exc, client, self.market_type, outcome_unknown_on_failure=True)

    def _plain_error(self, exc: ccxt.BaseError) -> Exception:
        client = self.client(build=False)
        return translate(exc, client, self.market_type, outcome_unknown_on_failure=False)

    def _answer(self, request: OrderRequest, r: Response, body: bytes) -> OrderState:
        """Read an order answer; error answers raise what ccxt would raise for them."""
        if r.status < 400:
            try:
                return self.parse(orjson.loads(r.body), request.side)
            except (ValueError, KeyError) as exc:  # a 200 we cannot read: the order may exist
                raise ccxt.NetworkError(f"unreadable answer: {r.body[:200]!r}") from exc
        self._raise_error(r, body, self.url)

    def _checked(self, r: Response, body: bytes, url: str) -> dict:
        """A JSON answer; error answers raise what ccxt would raise for them."""
        if r.status < 400:
            try:
                return orjson.loads(r.body)
            except ValueError as exc:
                raise ccxt.NetworkError(f"unreadable answer: {r.body[:200]!r}") from exc
        self._raise_error(r, body, url)

    def _raise_error(self, r: Response, body: bytes, url: str):
        exchange = self.client()
        status, reason, headers = r.status, r.reason, r.headers
        text = r.body.decode("utf-8", "replace")
        exchange.last_response_headers = dict(headers)
        try:
            parsed = orjson.loads(text)
        except ValueError:
            parsed = None
        exchange.handle_errors(
            status, reason, url, "POST", headers, text, parsed, self.headers, body.decode()
        )
        exchange.handle_http_status_code(status, reason, url, "POST", text)
        raise ccxt.ExchangeError(f"{exchange.id} {status} {text[:200]}")
