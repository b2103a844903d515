"""Signed requests as Binance checks them: API key, HMAC-SHA256 signature, timestamp, recvWindow.

The signature covers ``totalParams``: the query string concatenated with the request body, both
without the ``signature`` parameter, exactly as sent (no re-encoding).
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import unquote_plus

from copytrade.paper import errors as E
from copytrade.paper.accounts import Account
from copytrade.paper.errors import BinanceError, err

MAX_RECV_WINDOW = 60_000
DEFAULT_RECV_WINDOW = 5_000


def split_signature(raw: str) -> tuple[str, str | None]:
    """Return ``raw`` without its ``signature=`` parameter, and the signature (or None)."""
    if "signature=" not in raw:
        return raw, None
    kept, signature = [], None
    for part in raw.split("&"):
        if part.startswith("signature="):
            signature = part[10:]
        else:
            kept.append(part)
    return "&".join(kept), signature


def params_of(query: str, body: str) -> dict[str, str]:
    """Return the request's parameters (query and form body together; body wins)."""
    params: dict[str, str] = {}
    for raw in (query, body):
        if not raw:
            continue
        for part in raw.split("&"):
            if not part:
                continue
            key, _, value = part.partition("=")
            if "%" in part or "+" in part:
                key, value = unquote_plus(key), unquote_plus(value)
            params[key] = value
    return params


def api_key_account(api_key: str | None, lookup) -> Account:
    """Return the account of an API key or raise Binance's answer for a missing/unknown key."""
    if not api_key:
        raise err(E.API_KEY_FORMAT, 401)
    account = lookup(api_key)
    if account is None:
        raise err(E.INVALID_API_KEY, 401)
    return account


def verify_signed(
    api_key: str | None, query: str, body: str, lookup, server_ms: int
) -> tuple[Account, dict[str, str]]:
    """Authenticate a signed request; return its account and parameters."""
    account = api_key_account(api_key, lookup)
    query_rest, sig_q = split_signature(query)
    body_rest, sig_b = split_signature(body)
    signature = sig_q or sig_b
    if not signature:
        raise E.mandatory("signature")
    expected = hmac.new(
        account.secret, (query_rest + body_rest).encode(), hashlib.sha256
    ).hexdigest()
    if not hmac.compare_digest(expected, signature.lower()):
        raise err(E.BAD_SIGNATURE)
    params = params_of(query_rest, body_rest)
    check_timestamp(params, server_ms)
    return account, params


def check_timestamp(params: dict[str, str], server_ms: int) -> None:
    """Refuse a request outside its recvWindow or more than 1 s ahead of the server."""
    raw = params.get("timestamp")
    if not raw:
        raise E.mandatory("timestamp")
    try:
        timestamp = int(raw)
        recv_window = int(params.get("recvWindow") or DEFAULT_RECV_WINDOW)
    except ValueError:
        raise BinanceError(
            -1100,
            "Illegal characters found in parameter 'timestamp'; legal range is '^[0-9]{1,20}$'.",
        ) from None
    if recv_window > MAX_RECV_WINDOW or recv_window <= 0:
        raise BinanceError(-1131, "recvWindow must be less than 60000")
    if timestamp > server_ms + 1000:
        raise err(E.AHEAD_OF_SERVER)
    if server_ms - timestamp > recv_window:
        raise err(E.OUTSIDE_RECV_WINDOW)


def sign(secret: str, payload: str) -> str:
    """Return the HMAC-SHA256 hex signature of ``payload`` (for the admin client and tests)."""
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
