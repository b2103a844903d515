"""Binance's error answers: an HTTP status, a numeric code and the exact message Binance sends.

ccxt maps many of these by message or code, so the wording is Binance's own.
"""

from __future__ import annotations


class BinanceError(Exception):
    """An error answer: ``{"code": code, "msg": msg}`` with HTTP ``status``."""

    def __init__(self, code: int, msg: str, status: int = 400) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.status = status

    def body(self) -> dict:
        return {"code": self.code, "msg": self.msg}


class CancelReplaceFailed(BinanceError):
    """A failed ``cancelReplace``: Binance adds what happened to each half as ``data``."""

    def __init__(self, code: int, msg: str, data: dict) -> None:
        super().__init__(code, msg)
        self.data = data

    def body(self) -> dict:
        return {"code": self.code, "msg": self.msg, "data": self.data}


def mandatory(name: str) -> BinanceError:
    return BinanceError(
        -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed."
    )


def bad_value(name: str) -> BinanceError:
    return BinanceError(
        -1100, f"Illegal characters found in parameter '{name}'; legal range is ''."
    )


INVALID_SYMBOL = (-1121, "Invalid symbol.")
UNKNOWN_ORDER_CANCEL = (-2011, "Unknown order sent.")
ORDER_NOT_FOUND = (-2013, "Order does not exist.")
INSUFFICIENT_BALANCE = (-2010, "Account has insufficient balance for requested action.")
MARGIN_INSUFFICIENT = (-2019, "Margin is insufficient.")
DUPLICATE_ORDER = (-2010, "Duplicate order sent.")
DUPLICATE_CLIENT_ID_FUTURES = (-4116, "ClientOrderId is duplicated.")
REDUCE_ONLY_REJECTED = (-2022, "ReduceOnly Order is rejected.")
API_KEY_FORMAT = (-2014, "API-key format invalid.")
INVALID_API_KEY = (-2015, "Invalid API-key, IP, or permissions for action.")
BAD_SIGNATURE = (-1022, "Signature for this request is not valid.")
OUTSIDE_RECV_WINDOW = (-1021, "Timestamp for this request is outside of the recvWindow.")
AHEAD_OF_SERVER = (-1021, "Timestamp for this request was 1000ms ahead of the server's time.")
TOO_MANY_REQUESTS = (
    -1003,
    "Too many requests; current limit of IP is 6000 requests per minute. Please use WebSocket "
    "Streams for live updates to avoid polling the API.",
)
IP_BANNED = (
    -1003,
    "Way too many requests; IP banned until {until}. Please use WebSocket Streams for live updates to avoid bans.",
)
UNKNOWN_EXECUTION = (
    -1007,
    "Timeout waiting for response from backend server. Send status unknown; execution status unknown.",
)
NO_NEED_TO_CHANGE_MARGIN = (-4046, "No need to change margin type.")
INVALID_LISTEN_KEY = (-1125, "This listenKey does not exist.")
INVALID_TIF = (-1115, "Invalid timeInForce.")
WOULD_TAKE = (-2010, "Order would immediately match and take.")
POST_ONLY_REJECTED = (
    -5022,
    "Due to the order could not be executed as maker, the Post Only order will be rejected.",
)
NO_NEED_TO_MODIFY = (-5027, "No need to modify the order.")
QUANTITY_BELOW_EXECUTED = (-4003, "Quantity less than or equal to the executed quantity.")
BATCH_INVALID = (-1130, "Data sent for parameter 'batchOrders' is not valid.")
WOULD_TRIGGER_SPOT = (-2010, "Order would trigger immediately.")
WOULD_TRIGGER_FUTURES = (-2021, "Order would immediately trigger.")
INVALID_ALGO_TYPE = (
    -1100,
    "Illegal characters found in parameter 'algoType'; legal range is 'CONDITIONAL'.",
)
USE_ALGO_ENDPOINT = (
    -4120,
    "Order type not supported for this endpoint. Please use the Algo Order API endpoints instead.",
)
POSITION_SIDE_MISMATCH = (-4061, "Order's position side does not match user's setting.")


def param_not_required(name: str) -> tuple[int, str]:
    return (-1106, f"Parameter '{name}' sent when not required.")


def err(pair: tuple[int, str], status: int = 400) -> BinanceError:
    return BinanceError(pair[0], pair[1], status)
