"""Endpoints of Binance and of the paper exchange, in ccxt's ``urls['api']`` shape.

Pointing ccxt at the paper exchange is only this change of ``urls['api']``; the client is not
patched.
"""

from __future__ import annotations

BINANCE_WS = {
    "spot": "wss://ws-api.binance.com:443/ws-api/v3",  # WebSocket API (user data by signature)
    "futures": "wss://fstream.binance.com/ws",  # listenKey streams: <base>/<listenKey>
}


def paper_urls(base_url: str) -> dict:
    """Return ccxt ``urls['api']`` entries that send spot and USDⓈ-M calls to ``base_url``."""
    http = base_url.rstrip("/")
    ws = "ws" + http[len("http") :]
    return {
        "public": f"{http}/api/v3",
        "private": f"{http}/api/v3",
        "v1": f"{http}/api/v1",
        "sapi": f"{http}/sapi/v1",
        "sapiV2": f"{http}/sapi/v2",
        "sapiV3": f"{http}/sapi/v3",
        "sapiV4": f"{http}/sapi/v4",
        "fapiPublic": f"{http}/fapi/v1",
        "fapiPublicV2": f"{http}/fapi/v2",
        "fapiPublicV3": f"{http}/fapi/v3",
        "fapiPrivate": f"{http}/fapi/v1",
        "fapiPrivateV2": f"{http}/fapi/v2",
        "fapiPrivateV3": f"{http}/fapi/v3",
        "fapiData": f"{http}/futures/data",
        # COIN-M is not simulated; its exchangeInfo answers with no symbols so that a plain
        # ccxt.binance (which loads spot, linear and inverse) works unchanged.
        "dapiPublic": f"{http}/dapi/v1",
        "dapiPrivate": f"{http}/dapi/v1",
        # ccxt.pro: spot user data through the WebSocket API, futures through listenKey streams
        # (ccxt rewrites ".../ws" to ".../private/ws?listenKey=…" for USDⓈ-M).
        "ws": {
            "spot": f"{ws}/ws",
            "margin": f"{ws}/ws",
            "linear": f"{ws}/fws/ws",
            "ws-api": {"spot": f"{ws}/ws-api/v3", "linear": f"{ws}/ws-fapi/v1"},
        },
    }


def stream_urls(base_url: str | None) -> dict[str, str]:
    """Return the gateway stream reader's websocket bases (Binance's when ``base_url`` is None)."""
    if base_url is None:
        return dict(BINANCE_WS)
    ws = "ws" + base_url.rstrip("/")[len("http") :]
    return {"spot": f"{ws}/ws-api/v3", "futures": f"{ws}/fws/ws"}
