"""Translate ccxt errors into the platform's exchange errors, once, at the gateway boundary.

ccxt picks Binance's per-market error table (spot, linear) by the URL's host, so against the paper
exchange (or any proxy) only the shared table applies and e.g. futures' ``-2019 Margin is
insufficient`` arrives as a bare ``ExchangeError``. The translation therefore reads Binance's
``{"code", "msg"}`` from the error text and looks the code up in ccxt's own table for the market
type first: the result is what ccxt would raise against Binance itself.
"""

from __future__ import annotations

import re

import ccxt.async_support as ccxt

from copytrade.exchange.protocol import (
    AuthenticationFailed,
    GatewayError,
    RateLimited,
    Rejected,
    Retryable,
    UnknownOutcome,
)

_BINANCE_ERROR = re.compile(r'\{\s*"code"\s*:\s*(-?\d+)\s*,\s*"msg"\s*:\s*"((?:[^"\\]|\\.)*)"')


def binance_error(message: str) -> tuple[str | None, str | None]:
    """Return (code, msg) of the Binance error body inside a ccxt error message, if any."""
    found = _BINANCE_ERROR.search(message or "")
    return (found.group(1), found.group(2)) if found else (None, None)


def ccxt_class_for(
    exchange: ccxt.Exchange | None, market_type: str, exc: Exception
) -> type[Exception]:
    """Return the ccxt error class Binance's answer maps to for ``market_type`` (spot | linear).

    ``exchange`` None (no client built: the error had no answer) leaves the class as raised.
    """
    code, msg = binance_error(str(exc))
    if code is None or exchange is None:
        return type(exc)
    tables = exchange.exceptions
    if isinstance(exc, ccxt.DDoSProtection | ccxt.RateLimitExceeded):
        return type(exc)  # 418/429 are decided by the status before any code
    for table in (tables.get(market_type, {}), tables):
        exact = table.get("exact", {})
        if code in exact:
            return exact[code]
        if msg in exact:
            return exact[msg]
    return type(exc)


def translate(
    exc: Exception,
    exchange: ccxt.Exchange | None,
    market_type: str,
    *,
    outcome_unknown_on_failure: bool,
) -> GatewayError:
    """Return the platform error for a ccxt error.

    ``outcome_unknown_on_failure`` is true for requests that change state (place, cancel): a
    timeout, network error or 5xx then means the change may or may not have happened.
    """
    code, msg = binance_error(str(exc))
    cls = (
        ccxt_class_for(exchange, market_type, exc) if isinstance(exc, ccxt.BaseError) else type(exc)
    )
    text = _redact(f"{cls.__name__}: {msg or str(exc)}")
    if issubclass(cls, ccxt.DDoSProtection | ccxt.RateLimitExceeded):
        return RateLimited(text, retry_after=_retry_after(exchange))
    if issubclass(cls, ccxt.AuthenticationError | ccxt.PermissionDenied | ccxt.AccountSuspended):
        return AuthenticationFailed(text, code=code, reason="auth")
    if issubclass(cls, ccxt.InvalidNonce):
        return Retryable(text)  # refused for its timestamp: nothing was executed
    if issubclass(cls, ccxt.InsufficientFunds):
        return Rejected(text, code=code, reason="insufficient_funds")
    if issubclass(cls, ccxt.OrderNotFound):
        return Rejected(text, code=code, reason="not_found")
    if issubclass(
        cls, ccxt.InvalidOrder | ccxt.BadRequest | ccxt.BadSymbol | ccxt.ArgumentsRequired
    ):
        return Rejected(text, code=code, reason="invalid_order")
    if issubclass(cls, ccxt.NetworkError | ccxt.ExchangeNotAvailable | ccxt.OperationFailed) or (
        isinstance(exc, TimeoutError | OSError)
    ):
        return UnknownOutcome(text) if outcome_unknown_on_failure else Retryable(text)
    if issubclass(cls, ccxt.ExchangeError):
        return Rejected(text, code=code, reason="rejected")
    return UnknownOutcome(text) if outcome_unknown_on_failure else Retryable(text)


def _retry_after(exchange: ccxt.Exchange | None) -> float | None:
    headers = getattr(exchange, "last_response_headers", None) or {}
    for name, value in headers.items():
        if name.lower() == "retry-after":
            try:
                return float(value)
            except ValueError:
                return None
    return None


_SECRETISH = re.compile(
    r"(signature=)[0-9a-fA-F]+|(X-MBX-APIKEY['\"]?\s*[:=]\s*['\"]?)[A-Za-z0-9]+"
)


def _redact(text: str) -> str:
    """Remove signatures and API keys from an error text before it is logged or stored."""
    return _SECRETISH.sub(lambda m: (m.group(1) or m.group(2)) + "***", text)
