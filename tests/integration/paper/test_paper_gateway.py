"""The ccxt gateway against the paper exchange: the protocol, error translation, the fill stream."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import aiohttp
import ccxt.pro as ccxtpro
import orjson
import pytest

from copytrade.exchange.factory import GatewayFactory
from copytrade.exchange.protocol import AuthenticationFailed, OrderRequest, Rejected, UnknownOutcome
from tests.support.paper_exchange import point_at_paper


@pytest.fixture
async def spot_factory(paper):
    async with GatewayFactory("spot", paper.base_url) as factory:
        yield factory


@pytest.fixture
async def futures_factory(paper):
    async with GatewayFactory("futures", paper.base_url) as factory:
        yield factory


async def test_factory_shares_one_session_and_one_market_set(paper, spot_factory):
    a = paper.admin.create_account(spot={"USDT": "100"})
    b = paper.admin.create_account(spot={"USDT": "100"})
    ga, gb = (
        spot_factory.gateway(a.api_key, a.api_secret),
        spot_factory.gateway(b.api_key, b.api_secret),
    )
    assert ga.exchange is not gb.exchange  # one client (and rate limiter) per account
    assert ga.exchange.session is gb.exchange.session is spot_factory.session
    assert ga.markets is gb.markets  # one parsed market set (domain filters)
    assert ga.exchange.markets is gb.exchange.markets  # and one ccxt market set

    btc = ga.market("BTCUSDT")
    assert (btc.step_size, btc.tick_size, btc.min_notional) == (
        Decimal("0.00001"),
        Decimal("0.01"),
        Decimal(5),
    )
    assert a.api_key not in repr(ga) and a.api_secret not in repr(a)


async def test_spot_place_lookup_cancel_balances_trades(paper, spot_factory, account):
    g = spot_factory.gateway(account.api_key, account.api_secret)
    state = await g.place_order(OrderRequest("BTCUSDT", "buy", Decimal("0.01"), "gw-1"))
    assert state.status == "filled" and state.client_order_id == "gw-1"
    assert state.filled_quantity == Decimal("0.01") and len(state.trades) == 1
    fee = state.trades[0].fee
    assert state.trades[0].fee_asset == "BTC"
    balances = await g.balances()
    assert balances["BTC"] == Decimal("0.01") - fee
    assert balances["USDT"] == Decimal(10000) - state.filled_quantity * state.average_price

    resting = await g.place_order(
        OrderRequest("BTCUSDT", "sell", Decimal("0.005"), "gw-2", "limit", Decimal("20000"))
    )
    assert resting.status == "new"
    assert (await g.order_by_client_id("BTCUSDT", "gw-2")).order_id == resting.order_id
    assert (await g.cancel_order("BTCUSDT", "gw-2")).status == "canceled"
    # cancelling again returns the final state instead of failing
    assert (await g.cancel_order("BTCUSDT", "gw-2")).status == "canceled"
    assert await g.order_by_client_id("BTCUSDT", "nope") is None

    trades = await g.my_trades("BTCUSDT")
    assert [t.trade_id for t in trades] == [state.trades[0].trade_id]
    assert trades[0].price == state.trades[0].price and trades[0].fee == fee


async def test_spot_errors_translated(paper, spot_factory, account):
    g = spot_factory.gateway(account.api_key, account.api_secret)
    with pytest.raises(Rejected) as caught:
        await g.place_order(OrderRequest("BTCUSDT", "buy", Decimal("5"), "big"))
    assert caught.value.reason == "insufficient_funds"
    with pytest.raises(Rejected) as caught:
        await g.place_order(OrderRequest("BTCUSDT", "buy", Decimal("0.000015"), "offstep"))
    assert caught.value.reason == "invalid_order" and caught.value.code == "-1013"
    with pytest.raises(Rejected) as caught:
        await g.place_order(OrderRequest("BTCUSDT", "buy", Decimal("0.0001"), "tiny"))
    assert caught.value.reason == "invalid_order"
    bad = spot_factory.gateway(account.api_key, "0" * 64)
    with pytest.raises(AuthenticationFailed) as auth:
        await bad.balances()
    assert "0" * 64 not in str(auth.value) and account.api_key not in str(auth.value)


async def test_leverage_takes_the_lean_path_with_ccxts_effect_and_errors(
    paper, futures_factory, account
):
    """set_leverage is one signed POST on the account's kept-alive pool (no ccxt request, the
    first order reuses its connection); what the exchange keeps and every error are those of
    ccxt's own set_leverage (R-COPY-11: only orders are unknown outcomes, not leverage)."""
    g = futures_factory.gateway(account.api_key, account.api_secret)
    unified = g._unified("ONDOUSDT")

    async def through_ccxt(leverage: int):
        return await g._call(g.exchange.set_leverage(leverage, unified), changes_state=False)

    async def leverage_now() -> int:
        [row] = await g.exchange.fapiPrivateGetSymbolConfig({"symbol": "ONDOUSDT"})
        return int(row["leverage"])

    requests = paper.server.requests
    await g.set_leverage("ONDOUSDT", 7)
    assert await leverage_now() == 7
    assert len(g._lean.pool.idle) == 1  # the connection the first order will take
    await g.place_order(OrderRequest("ONDOUSDT", "buy", Decimal("10"), "lev-1"))
    assert len(g._lean.pool.idle) == 1  # ... and did: still one
    assert paper.server.requests - requests == 3  # leverage, order, the symbolConfig read

    def caught(exc: BaseException) -> tuple:
        return type(exc), getattr(exc, "reason", None)

    for leverage in (0, 126):  # refused before anything is sent, as ccxt does
        with pytest.raises(Rejected) as lean:
            await g.set_leverage("ONDOUSDT", leverage)
        with pytest.raises(Rejected) as plain:
            await through_ccxt(leverage)
        assert caught(lean.value) == caught(plain.value)
    for kind in ("rate_limit", "error_after"):  # the exchange's errors, translated alike
        outcomes = []
        for call in (lambda: g.set_leverage("ONDOUSDT", 3), lambda: through_ccxt(3)):
            paper.admin.add_fault(kind, path="/fapi/v1/leverage", count=1)
            with pytest.raises(Exception) as exc:
                await call()
            outcomes.append(caught(exc.value))
        assert outcomes[0] == outcomes[1], kind
    with pytest.raises(Rejected) as unknown:
        await g.set_leverage("NOPEUSDT", 3)
    assert unknown.value.reason == "invalid_order"
    bad = futures_factory.gateway(account.api_key, "0" * 64)
    with pytest.raises(AuthenticationFailed) as auth:
        await bad.set_leverage("ONDOUSDT", 3)
    assert "0" * 64 not in str(auth.value)
    assert await leverage_now() == 3  # error_after: applied, then answered 503 (both paths)


async def test_futures_protocol_and_errors(paper, futures_factory, account):
    g = futures_factory.gateway(account.api_key, account.api_secret)
    await g.set_leverage("ONDOUSDT", 3)
    await g.set_margin_mode("ONDOUSDT", "isolated")
    await g.set_margin_mode("ONDOUSDT", "isolated")  # already set: not an error
    state = await g.place_order(OrderRequest("ONDOUSDT", "sell", Decimal("100"), "short-1"))
    assert state.status == "filled"
    [position] = await g.positions()
    # Binance's /fapi/v3/positionRisk (ccxt's default) carries no leverage, so the gateway's
    # Position.leverage is not asserted here (it reads 0, as it would against Binance).
    assert position.symbol == "ONDOUSDT" and position.quantity == Decimal(-100)
    closing = await g.place_order(
        OrderRequest("ONDOUSDT", "buy", Decimal("100"), "short-1-close", reduce_only=True)
    )
    assert closing.status == "filled"
    assert await g.positions() == []
    trades = await g.my_trades("ONDOUSDT")
    assert len(trades) == 2 and trades[1].realised_pnl is not None
    wallet = await g.wallet()
    expected = Decimal(5000) + sum(t.realised_pnl for t in trades) - sum(t.fee for t in trades)
    assert wallet["USDT"]["wallet"] == expected

    with pytest.raises(Rejected) as caught:  # -2019: InsufficientFunds in ccxt's linear table
        await g.place_order(OrderRequest("BTCUSDT", "buy", Decimal("10"), "too-big"))
    assert caught.value.reason == "insufficient_funds" and caught.value.code == "-2019"
    with pytest.raises(Rejected) as caught:  # -4164 min notional
        await g.place_order(OrderRequest("ONDOUSDT", "buy", Decimal("1"), "too-small"))
    assert caught.value.reason == "invalid_order" and caught.value.code == "-4164"
    with pytest.raises(Rejected) as caught:  # reduce-only without a position
        await g.place_order(OrderRequest("ONDOUSDT", "sell", Decimal("10"), "ro", reduce_only=True))
    assert caught.value.code == "-2022"


async def _collect(gateway, n: int, timeout: float = 10.0) -> list:
    fills = []
    iterator = gateway.fills()

    async def take() -> None:
        async for trade in iterator:
            fills.append(trade)
            if len(fills) >= n:
                return

    await asyncio.wait_for(take(), timeout)
    return fills


@pytest.mark.parametrize("kind", ["spot", "futures"])
async def test_stream_delivers_every_fill(paper, spot_factory, futures_factory, account, kind):
    factory = spot_factory if kind == "spot" else futures_factory
    symbol, qty = (
        ("BTCUSDT", Decimal("0.001")) if kind == "spot" else ("1000PEPEUSDT", Decimal("1000"))
    )
    g = factory.gateway(account.api_key, account.api_secret)
    await g.start_stream()
    states = await asyncio.gather(
        *(g.place_order(OrderRequest(symbol, "buy", qty, f"s-{kind}-{i}")) for i in range(20))
    )
    expected = {t.trade_id for s in states for t in s.trades} if kind == "spot" else None
    fills = await _collect(g, 20)
    assert len({f.trade_id for f in fills}) == 20
    assert {f.client_order_id for f in fills} == {f"s-{kind}-{i}" for i in range(20)}
    if expected is not None:
        assert {f.trade_id for f in fills} == expected
    rest = await g.my_trades(symbol)
    assert {t.trade_id for t in rest} == {f.trade_id for f in fills}


async def test_stream_survives_drop_and_backfills(paper, futures_factory, account):
    g = futures_factory.gateway(account.api_key, account.api_secret)
    await g.start_stream()
    await g.place_order(OrderRequest("1000PEPEUSDT", "buy", Decimal("1000"), "d-0"))
    paper.admin.add_fault("drop_stream", account_id=account.account_id)
    # Sent while the stream is down: only the REST backfill after reconnecting can deliver it.
    await g.place_order(OrderRequest("1000PEPEUSDT", "buy", Decimal("1000"), "d-1"))
    await g.place_order(OrderRequest("1000PEPEUSDT", "buy", Decimal("1000"), "d-2"))
    fills = await _collect(g, 3)
    assert len({f.trade_id for f in fills}) == 3
    assert g._stream.reconnects >= 1


async def test_stream_drops_duplicates_and_tolerates_reordering(paper, spot_factory, account):
    g = spot_factory.gateway(account.api_key, account.api_secret)
    await g.start_stream()
    paper.admin.add_fault("duplicate_events", account_id=account.account_id, count=4)
    paper.admin.add_fault("reorder_events", account_id=account.account_id, count=2)
    for i in range(5):
        await g.place_order(OrderRequest("BTCUSDT", "buy", Decimal("0.001"), f"dup-{i}"))
    fills = await _collect(g, 5)
    await asyncio.sleep(0.3)
    assert len(fills) == 5 and len({f.trade_id for f in fills}) == 5
    assert g._stream._queue.empty()


async def test_raw_stream_really_duplicates_and_reorders(paper, account):
    """Seen from a plain websocket: the faults change what Binance-shaped events arrive."""
    async with aiohttp.ClientSession() as session:
        headers = {"X-MBX-APIKEY": account.api_key}
        async with session.post(f"{paper.base_url}/fapi/v1/listenKey", headers=headers) as response:
            key = (await response.json())["listenKey"]
        async with session.ws_connect(f"{paper.ws_url}/fws/ws/{key}") as ws:
            paper.admin.add_fault("duplicate_events", account_id=account.account_id, count=1)
            paper.admin.deposit(account.account_id, "USDT", "1", wallet="futures")
            first, second = (
                orjson.loads((await ws.receive()).data),
                orjson.loads((await ws.receive()).data),
            )
            assert first == second and first["e"] == "ACCOUNT_UPDATE"
            paper.admin.add_fault("reorder_events", account_id=account.account_id, count=1)
            paper.admin.deposit(account.account_id, "USDT", "1", wallet="futures")
            paper.admin.deposit(account.account_id, "USDT", "2", wallet="futures")
            a, b = orjson.loads((await ws.receive()).data), orjson.loads((await ws.receive()).data)
            assert [a["a"]["B"][0]["wb"], b["a"]["B"][0]["wb"]] == ["5004", "5002"]


@pytest.mark.parametrize("kind", ["spot", "futures"])
async def test_ccxt_pro_watch_my_trades_sees_every_fill(paper, account, kind):
    """ccxt.pro works against the paper exchange too: spot via the WebSocket API, futures via listenKey."""
    cls, symbol, qty = (
        (ccxtpro.binance, "BTC/USDT", "0.001")
        if kind == "spot"
        else (ccxtpro.binanceusdm, "1000PEPE/USDT:USDT", "1000")
    )
    client = point_at_paper(
        cls({"apiKey": account.api_key, "secret": account.api_secret}), paper.base_url
    )
    client.options["fetchMarkets"] = {"types": ["spot" if kind == "spot" else "linear"]}
    try:
        await client.load_markets()
        seen: dict[str, dict] = {}

        async def watch() -> None:
            while len(seen) < 3:
                for trade in await client.watch_my_trades(symbol):
                    seen[trade["id"]] = trade

        watcher = asyncio.create_task(watch())
        await asyncio.sleep(0.5)
        orders = [await client.create_order(symbol, "market", "buy", qty) for _ in range(3)]
        await asyncio.wait_for(watcher, 10)
        assert {t["order"] for t in seen.values()} == {o["id"] for o in orders}
    finally:
        await client.close()


async def test_leader_bot_replays_real_fills_and_ma_cross_trades(paper):
    """The demo's leader really trades: the replay fills on the real candles of the fills' times."""
    from copytrade.config import get_settings
    from copytrade.paper.leader_bot import replay_leader, run_ma_cross

    data_dir = get_settings().data_dir
    seen = []
    report = await replay_leader(
        paper.base_url,
        paper.admin_token,
        data_dir,
        limit=6,
        max_wait=0.1,
        on_fill=lambda f, s: seen.append((f, s)),
    )
    assert report.sent == 6 and report.filled == 6
    assert all(status == "filled" for _, status in seen)
    report = await run_ma_cross(
        paper.base_url,
        paper.admin_token,
        data_dir / "market" / "spot" / "ETH_BTC-5m.csv",
        "ETHUSDT",
        max_trades=2,
        max_wait=0.05,
    )
    assert report.sent == 2 and report.filled == 2


async def test_api_key_and_signatures_never_reach_the_log(spot_factory, account, caplog):
    """ccxt logs every request and answer at DEBUG; the gateway's logger strips keys and signatures."""
    import logging

    caplog.set_level(logging.DEBUG)
    g = spot_factory.gateway(account.api_key, account.api_secret)
    await g.place_order(OrderRequest("BTCUSDT", "buy", Decimal("0.001"), "log-1"))
    await g.balances()
    assert "Request" in caplog.text  # ccxt did log the requests
    assert account.api_key not in caplog.text and account.api_secret not in caplog.text
    assert "signature=" not in caplog.text.replace("signature=***", "")


async def test_place_many_answers_every_order_of_a_batch_in_order_R_COPY_11(paper, spot_factory):
    """The exchange port's batch placement on the ccxt adapter: each order gets a placement
    (state, or the error its single attempt ended in; nothing retried), first through new
    connections, then on the kept-alive ones the first batch left open."""
    account = paper.admin.create_account(spot={"USDT": "1000"})
    g = spot_factory.gateway(account.api_key, account.api_secret)
    first = await g.place_many(
        [
            OrderRequest("BTCUSDT", "buy", Decimal("0.001"), "pm-1"),
            OrderRequest("NOPEUSDT", "buy", Decimal("1"), "pm-2"),
        ]
    )
    assert first[0].error is None and first[0].state.status == "filled"
    assert first[0].state.client_order_id == "pm-1" and first[0].acked_at >= first[0].sent_at
    assert isinstance(first[1].error, Rejected) and first[1].state is None
    second = await g.place_many(
        [
            OrderRequest("BTCUSDT", "buy", Decimal("0.001"), "pm-3"),
            OrderRequest("BTCUSDT", "sell", Decimal("0.0005"), "pm-4"),
            OrderRequest("BTCUSDT", "buy", Decimal("1"), "pm-5"),  # 100,000 USDT: not there
        ]
    )
    assert [p.state.client_order_id for p in second[:2]] == ["pm-3", "pm-4"]
    assert all(p.state.status == "filled" for p in second[:2])
    assert isinstance(second[2].error, Rejected) and second[2].error.reason == "insufficient_funds"
    assert await g.order_by_client_id("BTCUSDT", "pm-5") is None  # refused, never booked


async def test_market_orders_and_leverage_never_build_the_accounts_ccxt_client_R_COPY_11(
    paper, account
):
    """A follower's ccxt client costs ≈ 2.2 ms and ≈ 0.26 MB to build: a shard of thousands of
    copies must not build one per copy at start. Market orders, batches and leverage are signed
    with the account's key alone; a timeout (no answer) is still an unknown outcome without a
    client; an error answer builds it and is translated exactly as before."""
    async with GatewayFactory("futures", paper.base_url, timeout_ms=1000) as factory:
        g = factory.gateway(account.api_key, account.api_secret)
        assert g._exchange is None
        await g.set_leverage("ONDOUSDT", 5)
        state = await g.place_order(OrderRequest("ONDOUSDT", "buy", Decimal("10"), "lazy-1"))
        assert state.status == "filled"
        batch = await g.place_many(
            [OrderRequest("ONDOUSDT", "buy", Decimal("10"), f"lazy-b{i}") for i in range(3)]
        )
        assert [p.state.status for p in batch] == ["filled"] * 3
        paper.admin.add_fault(
            "timeout_after",
            account_id=account.account_id,
            delay=2.5,
            paths=["/fapi/v1/order"],
            methods=["POST"],
        )
        timed_out = OrderRequest("ONDOUSDT", "buy", Decimal("10"), "lazy-t")
        with pytest.raises(UnknownOutcome):
            await g.place_order(timed_out)
        assert g._exchange is None  # nothing built yet

        with pytest.raises(Rejected) as refused:  # far beyond the 5,000 USDT margin
            await g.place_order(OrderRequest("ONDOUSDT", "buy", Decimal("100000"), "lazy-big"))
        assert refused.value.reason == "insufficient_funds" and refused.value.code == "-2019"
        assert g._exchange is not None  # the error answer needed ccxt's handlers
        resolved = await g.resolve_unknown(timed_out)  # lookups go through ccxt
        assert resolved is not None and resolved.status == "filled"
