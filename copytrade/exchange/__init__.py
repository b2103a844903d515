"""Exchange access: the gateway protocol and its ccxt implementation (Binance or the paper exchange)."""

from copytrade.exchange.protocol import (
    AuthenticationFailed,
    ExchangeGateway,
    GatewayError,
    OrderRequest,
    OrderState,
    Placement,
    Position,
    RateLimited,
    Rejected,
    Retryable,
    Trade,
    UnknownOutcome,
)

__all__ = [
    "AuthenticationFailed",
    "ExchangeGateway",
    "GatewayError",
    "OrderRequest",
    "OrderState",
    "Placement",
    "Position",
    "RateLimited",
    "Rejected",
    "Retryable",
    "Trade",
    "UnknownOutcome",
]
