"""Build one gateway per account, all sharing one aiohttp session and one loaded market set.

Building a ccxt client is cheap once markets are loaded; loading markets is not (an exchangeInfo
round trip and parsing), so the factory loads them once per kind and hands them to every client
with ``set_markets``.
"""

from __future__ import annotations

import logging
import re
import ssl
from functools import cache

import aiohttp
import ccxt.async_support as ccxt

from copytrade.domain.markets import Market
from copytrade.exchange.binance_fastpath import SigningKey
from copytrade.exchange.ccxt_gateway import FUTURES, SPOT, CcxtGateway
from copytrade.exchange.errors import translate
from copytrade.exchange.urls import paper_urls, stream_urls

_CCXT_LOG = logging.getLogger("copytrade.exchange.ccxt")


class _RedactHeaders(logging.Filter):
    """Drop headers (X-MBX-APIKEY) and signatures from ccxt's debug log of requests."""

    _SIGNATURE = re.compile(r"signature=[0-9a-fA-F]+")

    def _clean(self, value: object) -> object:
        if isinstance(value, dict):
            return "<headers>"
        if isinstance(value, str | bytes) and "signature=" in str(value):
            return self._SIGNATURE.sub("signature=***", str(value))
        return value

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(self._clean(a) for a in record.args)
        if isinstance(record.msg, str) and "signature=" in record.msg:
            record.msg = self._SIGNATURE.sub("signature=***", record.msg)
        return True


_CCXT_LOG.addFilter(_RedactHeaders())


@cache
def shared_ssl_context() -> ssl.SSLContext:
    """Return one verifying SSL context (certifi's CA file, as ccxt uses) for every client."""
    import certifi

    return ssl.create_default_context(cafile=certifi.where())


def ccxt_config(
    kind: str,
    api_key: str | None,
    secret: str | None,
    session: aiohttp.ClientSession | None,
    timeout_ms: int,
    ssl_context: ssl.SSLContext | None = None,
) -> dict:
    """Return the ccxt constructor config: keys, shared session, no retries, our logger."""
    options: dict = {
        "fetchMarkets": {"types": ["spot"] if kind == SPOT else ["linear"]},
        "fetchMargins": False,
        "fetchCurrencies": False,
        "maxRetriesOnFailure": 0,
        "warnOnFetchOpenOrdersWithoutSymbol": False,
        "adjustForTimeDifference": False,
    }
    config: dict = {
        "enableRateLimit": True,
        "timeout": timeout_ms,
        "options": options,
        "logger": _CCXT_LOG,
    }
    if api_key:
        config["apiKey"] = api_key
        config["secret"] = secret
    if session is not None:
        config["session"] = session
    if ssl_context is not None:
        # ccxt otherwise builds an SSL context (loading the CA file, ~30 ms) per client.
        config["ssl_context"] = ssl_context
    return config


def new_client(
    kind: str,
    base_url: str | None,
    api_key: str | None = None,
    secret: str | None = None,
    session: aiohttp.ClientSession | None = None,
    timeout_ms: int = 10_000,
    ssl_context: ssl.SSLContext | None = None,
) -> ccxt.binance:
    """Return an unmodified ccxt client for spot (binance) or USDⓈ-M (binanceusdm).

    ``base_url`` None means Binance itself; otherwise only ``urls['api']`` changes.
    """
    cls = ccxt.binance if kind == SPOT else ccxt.binanceusdm
    exchange = cls(
        ccxt_config(kind, api_key, secret, session, timeout_ms, ssl_context or shared_ssl_context())
    )
    exchange.has["fetchCurrencies"] = False
    if base_url is not None:
        exchange.urls["api"] = {**exchange.urls["api"], **paper_urls(base_url)}
    return exchange


class GatewayFactory:
    """Make gateways for many accounts of one venue and kind.

    ``base_url`` is the paper exchange's URL, or None for Binance. Use as an async context
    manager, or call ``start()`` and ``close()``.
    """

    def __init__(
        self,
        kind: str,
        base_url: str | None = None,
        timeout_ms: int = 10_000,
        connection_limit: int = 0,
    ) -> None:
        if kind not in (SPOT, FUTURES):
            raise ValueError(f"kind: {kind!r} is not spot or futures")
        self.kind = kind
        self.base_url = base_url
        self.timeout_ms = timeout_ms
        self.connection_limit = connection_limit
        self.session: aiohttp.ClientSession | None = None
        self.markets: dict[str, Market] = {}
        self._loader: ccxt.binance | None = None
        self._gateways: list[CcxtGateway] = []

    async def __aenter__(self) -> GatewayFactory:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Open the shared session and load the markets once."""
        connector = aiohttp.TCPConnector(
            limit=self.connection_limit, ttl_dns_cache=300, enable_cleanup_closed=True
        )
        self.session = aiohttp.ClientSession(connector=connector, trust_env=False)
        loader = new_client(
            self.kind, self.base_url, session=self.session, timeout_ms=self.timeout_ms
        )
        try:
            await loader.load_markets()
        except ccxt.BaseError as exc:
            raise translate(
                exc,
                loader,
                "spot" if self.kind == SPOT else "linear",
                outcome_unknown_on_failure=False,
            ) from None
        finally:
            await loader.close()
        self._loader = loader  # closed, but its parsed markets are shared by every client
        domain_kind = "spot" if self.kind == SPOT else "futures"
        for market in loader.markets.values():
            if self.kind == FUTURES and not market.get("linear"):
                continue
            if self.kind == SPOT and not market.get("spot"):
                continue
            self.markets[market["id"]] = Market.from_exchange_info(
                market["info"],
                domain_kind,
                taker_fee=_fee(market.get("taker")),
                maker_fee=_fee(market.get("maker")),
            )

    def gateway(
        self, api_key: str, secret: str, label: str = "", *, client_rate_limit: bool = True
    ) -> CcxtGateway:
        """Return a gateway for one account (its own ccxt client and rate limiter, built when
        first needed; market orders and leverage are signed with the key alone).

        ``client_rate_limit=False`` turns off ccxt's client-side leaky bucket: for an account
        that sends one order per leader fill it only adds sleeps, and the exchange's own 429/418
        answers are handled by the caller (the engine's dispatcher).
        """
        if self.session is None or self._loader is None:
            raise RuntimeError("GatewayFactory.start() first")
        loader = self._loader

        def build_client() -> ccxt.binance:
            exchange = new_client(
                self.kind, self.base_url, api_key, secret, self.session, self.timeout_ms
            )
            exchange.enableRateLimit = client_rate_limit
            exchange.set_markets_from_exchange(loader)
            return exchange

        # Every client of this factory has the loader's endpoint URLs (same kind and base URL).
        key = (
            SigningKey(api_key, secret, loader.urls["api"], self.timeout_ms, loader.id)
            if api_key
            else None
        )
        stream = stream_urls(self.base_url)["spot" if self.kind == SPOT else "futures"]
        gateway = CcxtGateway(build_client, key, self.kind, self.markets, stream, label)
        self._gateways.append(gateway)
        return gateway

    async def close(self) -> None:
        """Close every gateway made here and the shared session."""
        import asyncio

        gateways, self._gateways = self._gateways, []
        await asyncio.gather(*(g.close() for g in gateways), return_exceptions=True)
        if self.session is not None:
            await self.session.close()
            self.session = None


def _fee(value: object) -> str | None:
    # ccxt's market fees are floats; their repr is the exact decimal Binance published (0.001).
    return None if value is None else repr(value)
