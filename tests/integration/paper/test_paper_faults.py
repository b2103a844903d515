"""Faults on demand: each comes back as the ccxt error Binance's real answer maps to, and the gateway
turns it into the platform's error (rate-limited, unknown outcome resolved by client id, …)."""

from __future__ import annotations

from decimal import Decimal

import ccxt.async_support as ccxt
import pytest

from copytrade.exchange.factory import GatewayFactory
from copytrade.exchange.protocol import OrderRequest, RateLimited, UnknownOutcome
from tests.support.paper_exchange import ccxt_client

ORDER_POST = {"paths": ["/api/v3/order"], "methods": ["POST"]}


@pytest.fixture
async def gateway(paper, account):
    async with GatewayFactory("spot", paper.base_url, timeout_ms=1500) as factory:
        yield factory.gateway(account.api_key, account.api_secret, account.account_id)


def buy(client_id: str) -> OrderRequest:
    return OrderRequest("BTCUSDT", "buy", Decimal("0.001"), client_id)


@pytest.mark.parametrize(("kind", "status"), [("rate_limit", 429), ("ban", 418)])
async def test_429_and_418_are_ddos_protection_with_retry_after(
    paper, spot, gateway, account, kind, status
):
    """ccxt's binance maps both 418 and 429 to DDoSProtection (handle_errors checks the status first)."""
    paper.admin.add_fault(kind, account_id=account.account_id, retry_after=3, **ORDER_POST)
    with pytest.raises(ccxt.DDoSProtection) as caught:
        await spot.create_order("BTC/USDT", "market", "buy", "0.001")
    assert str(status) in str(caught.value)
    paper.admin.add_fault(kind, account_id=account.account_id, retry_after=3, **ORDER_POST)
    with pytest.raises(RateLimited) as limited:
        await gateway.place_order(buy("rl-1"))
    assert limited.value.retry_after == 3
    assert await gateway.order_by_client_id("BTCUSDT", "rl-1") is None  # nothing was executed


async def test_5xx_before_executing_is_exchange_not_available_and_nothing_exists(
    paper, spot, gateway, account
):
    paper.admin.add_fault("error_before", account_id=account.account_id, **ORDER_POST)
    with pytest.raises(ccxt.ExchangeNotAvailable):
        await spot.create_order(
            "BTC/USDT", "market", "buy", "0.001", None, {"clientOrderId": "eb-raw"}
        )
    paper.admin.add_fault("error_before", account_id=account.account_id, **ORDER_POST)
    request = buy("eb-1")
    with pytest.raises(UnknownOutcome):
        await gateway.place_order(request)
    assert await gateway.resolve_unknown(request) is None


async def test_5xx_after_executing_is_unknown_outcome_resolved_by_client_id(
    paper, spot, gateway, account
):
    paper.admin.add_fault("error_after", account_id=account.account_id, **ORDER_POST)
    with pytest.raises(ccxt.ExchangeNotAvailable):
        await spot.create_order(
            "BTC/USDT", "market", "buy", "0.001", None, {"clientOrderId": "ea-raw"}
        )
    found = await spot.fetch_order(None, "BTC/USDT", {"origClientOrderId": "ea-raw"})
    assert found["status"] == "closed"  # it was executed although the answer was an error

    paper.admin.add_fault("error_after", account_id=account.account_id, **ORDER_POST)
    request = buy("ea-1")
    with pytest.raises(UnknownOutcome):
        await gateway.place_order(request)
    state = await gateway.resolve_unknown(request)
    assert state is not None and state.status == "filled" and state.client_order_id == "ea-1"


async def test_binance_unknown_execution_answer_is_request_timeout(paper, spot, account):
    """Binance's own "execution status unknown" (-1007, HTTP 503) maps to RequestTimeout."""
    paper.admin.add_fault(
        "error_after", account_id=account.account_id, body="binance", **ORDER_POST
    )
    with pytest.raises(ccxt.RequestTimeout):
        await spot.create_order(
            "BTC/USDT", "market", "buy", "0.001", None, {"clientOrderId": "u-raw"}
        )
    assert (await spot.fetch_order(None, "BTC/USDT", {"origClientOrderId": "u-raw"}))[
        "status"
    ] == "closed"


async def test_timeout_after_executing_is_request_timeout_and_resolved(paper, gateway, account):
    client = ccxt_client("spot", paper.base_url, account.api_key, account.api_secret, timeout=1000)
    try:
        await client.load_markets()
        paper.admin.add_fault(
            "timeout_after", account_id=account.account_id, delay=2.5, **ORDER_POST
        )
        with pytest.raises(ccxt.RequestTimeout):
            await client.create_order(
                "BTC/USDT", "market", "buy", "0.001", None, {"clientOrderId": "to-raw"}
            )
    finally:
        await client.close()
    paper.admin.add_fault("timeout_after", account_id=account.account_id, delay=2.5, **ORDER_POST)
    request = buy("to-1")
    with pytest.raises(UnknownOutcome):
        await gateway.place_order(request)
    state = await gateway.resolve_unknown(request)
    assert state is not None and state.status == "filled"


async def test_slow_response_still_succeeds(paper, spot, account):
    paper.admin.add_fault("slow", account_id=account.account_id, delay=0.3, **ORDER_POST)
    order = await spot.create_order("BTC/USDT", "market", "buy", "0.001")
    assert order["status"] == "closed"


async def test_faults_of_one_account_leave_others_alone(paper, spot, account):
    other = paper.admin.create_account(spot={"USDT": "100"})
    paper.admin.add_fault("rate_limit", account_id=other.account_id, count=None)
    try:
        assert (await spot.create_order("BTC/USDT", "market", "buy", "0.001"))["status"] == "closed"
    finally:
        paper.admin.clear_faults(other.account_id)
    assert paper.admin.faults() == [] or all(
        f["account_id"] != other.account_id for f in paper.admin.faults()
    )


async def test_admin_refuses_unknown_fault_kind(paper):
    from copytrade.paper.client import AdminError

    with pytest.raises(AdminError, match="kind: 'explode' is not one of"):
        paper.admin.add_fault("explode")
