"""Signed requests as Binance checks them: HMAC-SHA256 over query + body, timestamp, recvWindow."""

from __future__ import annotations

import pytest

from copytrade.paper.accounts import Account
from copytrade.paper.auth import params_of, sign, split_signature, verify_signed
from copytrade.paper.errors import BinanceError

SECRET = "s" * 64
ACCOUNT = Account("acc-1", "a", "k" * 64, SECRET.encode())
lookup = {ACCOUNT.api_key: ACCOUNT}.get
NOW = 1_700_000_000_000


def signed(payload: str) -> str:
    return f"{payload}&signature={sign(SECRET, payload)}"


def test_valid_get_and_post_are_accepted():
    query = "symbol=BTCUSDT&orderId=1&timestamp=1700000000000"
    account, params = verify_signed(ACCOUNT.api_key, signed(query), "", lookup, NOW)
    assert account is ACCOUNT and params["orderId"] == "1"
    body = "symbol=BTCUSDT&side=BUY&quantity=0.001&newClientOrderId=a%2Fb&timestamp=1700000000000"
    _, params = verify_signed(ACCOUNT.api_key, "", signed(body), lookup, NOW)
    assert params["newClientOrderId"] == "a/b"  # decoded after the signature check on raw text


def test_signature_covers_query_and_body_concatenated():
    query, body = "symbol=BTCUSDT", "side=BUY&timestamp=1700000000000"
    total_signature = sign(SECRET, query + body)
    _, params = verify_signed(
        ACCOUNT.api_key, query, f"{body}&signature={total_signature}", lookup, NOW
    )
    assert params == {"symbol": "BTCUSDT", "side": "BUY", "timestamp": "1700000000000"}


@pytest.mark.parametrize(
    ("key", "payload", "code", "status"),
    [
        (None, signed("timestamp=1700000000000"), -2014, 401),
        ("x" * 64, signed("timestamp=1700000000000"), -2015, 401),
        ("k" * 64, "timestamp=1700000000000&signature=" + "0" * 64, -1022, 400),
        ("k" * 64, signed("timestamp=1699999990000"), -1021, 400),  # older than recvWindow 5 s
        ("k" * 64, signed("timestamp=1700000002000"), -1021, 400),  # 2 s ahead of the server
        ("k" * 64, signed("timestamp=1699999990000&recvWindow=70000"), -1131, 400),
        ("k" * 64, "timestamp=1700000000000", -1102, 400),  # no signature
    ],
)
def test_refusals_use_binance_codes(key, payload, code, status):
    with pytest.raises(BinanceError) as caught:
        verify_signed(key, payload, "", lookup, NOW)
    assert (caught.value.code, caught.value.status) == (code, status)


def test_a_tampered_parameter_breaks_the_signature():
    payload = signed("symbol=BTCUSDT&quantity=0.001&timestamp=1700000000000")
    with pytest.raises(BinanceError) as caught:
        verify_signed(ACCOUNT.api_key, payload.replace("0.001", "1"), "", lookup, NOW)
    assert caught.value.code == -1022


def test_split_signature_and_params():
    assert split_signature("a=1&signature=ff&b=2") == ("a=1&b=2", "ff")
    assert split_signature("a=1") == ("a=1", None)
    assert params_of("a=1&b=x+y", "c=%2F") == {"a": "1", "b": "x y", "c": "/"}
