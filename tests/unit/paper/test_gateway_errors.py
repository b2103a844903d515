"""ccxt errors → the platform's errors, as ccxt maps Binance's answers on Binance's own URLs."""

from __future__ import annotations

import ccxt.async_support as ccxt
import pytest

from copytrade.exchange.errors import binance_error, translate
from copytrade.exchange.protocol import (
    AuthenticationFailed,
    RateLimited,
    Rejected,
    Retryable,
    UnknownOutcome,
)

SPOT = ccxt.binance()
USDM = ccxt.binanceusdm()


def body(code: int, msg: str) -> str:
    return f'binance {{"code":{code},"msg":"{msg}"}}'


@pytest.mark.parametrize(
    ("exc", "exchange", "market_type", "placing", "expected", "reason"),
    [
        (
            ccxt.ExchangeError(body(-2019, "Margin is insufficient.")),
            USDM,
            "linear",
            True,
            Rejected,
            "insufficient_funds",
        ),
        (
            ccxt.ExchangeError(body(-4164, "Order's notional must be no smaller than 5")),
            USDM,
            "linear",
            True,
            Rejected,
            "invalid_order",
        ),
        (
            ccxt.InsufficientFunds(
                "binance Account has insufficient balance for requested action."
            ),
            SPOT,
            "spot",
            True,
            Rejected,
            "insufficient_funds",
        ),
        (
            ccxt.InvalidOrder(body(-1013, "Filter failure: LOT_SIZE")),
            SPOT,
            "spot",
            True,
            Rejected,
            "invalid_order",
        ),
        (
            ccxt.AuthenticationError(
                body(-2015, "Invalid API-key, IP, or permissions for action.")
            ),
            SPOT,
            "spot",
            False,
            AuthenticationFailed,
            "auth",
        ),
        (
            ccxt.OrderNotFound(body(-2013, "Order does not exist.")),
            SPOT,
            "spot",
            False,
            Rejected,
            "not_found",
        ),
        (
            ccxt.DDoSProtection("binance 429 Too Many Requests"),
            SPOT,
            "spot",
            True,
            RateLimited,
            None,
        ),
        (
            ccxt.RequestTimeout("binance POST http://x/api/v3/order"),
            SPOT,
            "spot",
            True,
            UnknownOutcome,
            None,
        ),
        (
            ccxt.ExchangeNotAvailable("binance 503 Service Unavailable"),
            SPOT,
            "spot",
            True,
            UnknownOutcome,
            None,
        ),
        (
            ccxt.ExchangeNotAvailable("binance 503 Service Unavailable"),
            SPOT,
            "spot",
            False,
            Retryable,
            None,
        ),
        (
            ccxt.InvalidNonce(
                body(-1021, "Timestamp for this request is outside of the recvWindow.")
            ),
            SPOT,
            "spot",
            True,
            Retryable,
            None,
        ),
    ],
)
def test_translation(exc, exchange, market_type, placing, expected, reason):
    error = translate(exc, exchange, market_type, outcome_unknown_on_failure=placing)
    assert type(error) is expected
    if reason:
        assert error.reason == reason


def test_binance_body_parsed_and_signatures_redacted():
    assert binance_error(body(-1013, "Filter failure: NOTIONAL")) == (
        "-1013",
        "Filter failure: NOTIONAL",
    )
    assert binance_error("plain text") == (None, None)
    error = translate(
        ccxt.RequestTimeout(
            "binance GET http://x/api/v3/order?symbol=BTCUSDT&timestamp=1&signature=abcdef0123"
        ),
        SPOT,
        "spot",
        outcome_unknown_on_failure=False,
    )
    assert "abcdef0123" not in str(error) and "signature=***" in str(error)
