"""Send persisted follower orders concurrently and settle every one into a known result (R-COPY-11).

Each order goes out once through its account's gateway. A rate limit (429/418) means the order
was not executed: wait ``Retry-After`` and send again (a bounded number of times). A timeout, a
network error or a 5xx is an *unknown outcome*: the order is looked up by its client order id,
after a short grace period, before anything is resent; only a lookup that confirms the order is
absent allows one resend with the same client order id. If the lookups themselves keep failing,
the result stays *unknown* and reconciliation resolves it later; nothing is sent blindly.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from copytrade import clock
from copytrade.exchange.protocol import (
    ExchangeGateway,
    GatewayError,
    OrderRequest,
    OrderState,
    RateLimited,
    Rejected,
    Retryable,
    UnknownOutcome,
)

log = logging.getLogger(__name__)

MAX_RATE_LIMIT_RETRIES = 3
MAX_RETRY_AFTER = 5.0
LOOKUP_GRACE = (0.05, 0.2, 0.5, 1.0)  # seconds before each lookup of an unknown outcome
MAX_RESENDS = 1


@dataclass(slots=True)
class SendResult:
    """What became of one order: an exchange state, a final rejection, or still unknown."""

    state: OrderState | None = None
    rejected: Rejected | None = None
    unknown: str | None = None  # why the outcome is still unknown
    acked_at: datetime | None = None
    sent_at: datetime | None = None
    attempts: int = 0


async def resolve(
    gateway: ExchangeGateway,
    symbol: str,
    client_order_id: str,
    grace: Sequence[float] = LOOKUP_GRACE,
) -> tuple[bool, OrderState | None]:
    """Look an order up by client id; return (confirmed, state): confirmed False if lookups failed."""
    for delay in grace:
        await asyncio.sleep(delay)
        try:
            return True, await gateway.order_by_client_id(symbol, client_order_id)
        except GatewayError as exc:
            log.info("lookup of %s failed (%s); trying again", client_order_id, exc)
        except Exception as exc:  # a gateway bug must not stop the other orders
            log.warning("lookup of %s raised %r", client_order_id, exc)
    return False, None


async def send_one(
    gateway: ExchangeGateway,
    request: OrderRequest,
    *,
    first_error: Exception | None = None,
    sent_at: datetime | None = None,
) -> SendResult:
    """Send one order and return its settled result (never raises).

    ``first_error``: the order already went out once (``send_all``'s batch, through
    ``place_many``) and that attempt ended in this error; it is handled exactly as if this call
    had sent it.
    """
    result = SendResult(sent_at=sent_at or clock.now())
    rate_limited = resends = 0
    while True:
        result.attempts += 1
        try:
            if first_error is not None:
                error, first_error = first_error, None
                raise error
            state = await gateway.place_order(request)
        except RateLimited as exc:
            rate_limited += 1
            if rate_limited > MAX_RATE_LIMIT_RETRIES:
                result.rejected = Rejected(str(exc), code="429", reason="rate_limited")
                return result
            await asyncio.sleep(min(exc.retry_after or 0.25 * 2**rate_limited, MAX_RETRY_AFTER))
            continue
        except Rejected as exc:
            result.rejected = exc
            result.acked_at = clock.now()
            return result
        except (UnknownOutcome, Retryable, TimeoutError, OSError, GatewayError) as exc:
            confirmed, state = await resolve(gateway, request.symbol, request.client_order_id)
            if state is not None:
                result.state, result.acked_at = state, clock.now()
                return result
            if not confirmed or resends >= MAX_RESENDS:
                result.unknown = f"{type(exc).__name__}: {exc}"
                return result
            resends += 1  # the exchange confirmed it never saw the order: one resend, same id
            continue
        except Exception as exc:  # a gateway bug: treat as unknown, reconciliation resolves it
            log.exception("place_order %s raised", request.client_order_id)
            result.unknown = f"{type(exc).__name__}: {exc}"
            return result
        result.state, result.acked_at = state, clock.now()
        return result


async def send_all(
    orders: Sequence[tuple[ExchangeGateway, OrderRequest]],
) -> list[SendResult]:
    """Send every order concurrently (one gateway per account) and return results in order.

    Each gateway gets its orders as one ``place_many`` batch, and every batch is started before
    any is awaited: the ccxt gateway signs and writes its market orders on kept-alive
    connections right there, so a fan-out to a thousand accounts creates no task per order.
    Only an order whose one attempt did not end in a plain answer gets a task of its own
    (``send_one``: retries after a rate limit, lookups by client id after a doubt).
    """
    if not orders:
        return []
    batches: dict[int, tuple[ExchangeGateway, list[int]]] = {}
    for i, (gw, _) in enumerate(orders):
        batches.setdefault(id(gw), (gw, []))[1].append(i)
    started = [
        (gw, indexes, gw.place_many([orders[i][1] for i in indexes]))
        for gw, indexes in batches.values()
    ]
    results: list[SendResult | None] = [None] * len(orders)
    tasks: dict[int, asyncio.Future] = {}
    for gw, indexes, placing in started:
        for i, placed in zip(indexes, await placing, strict=True):
            if placed.error is None:
                results[i] = SendResult(
                    placed.state, acked_at=placed.acked_at, sent_at=placed.sent_at, attempts=1
                )
            else:  # settled like any other attempt: lookups, retries, resend
                tasks[i] = asyncio.ensure_future(
                    send_one(gw, orders[i][1], first_error=placed.error, sent_at=placed.sent_at)
                )
    if tasks:
        for i, result in zip(tasks, await asyncio.gather(*tasks.values()), strict=True):
            results[i] = result
    return results  # type: ignore[return-value]


def outcome_of(result: SendResult) -> tuple[str, str | None, str | None, str | None]:
    """Return (intent status, outcome, reason code, reason) for a settled send (R-COPY-7)."""
    if result.rejected is not None:
        exc = result.rejected
        return (
            "done",
            "rejected",
            exc.reason or "rejected",
            f"exchange refused: {exc} (code {exc.code})",
        )
    if result.state is None:
        return "unknown", None, None, f"outcome unknown: {result.unknown}"
    state = result.state
    if state.filled_quantity >= state.quantity and state.filled_quantity > 0:
        return "done", "filled", "filled", "filled"
    if state.status in ("new", "partially_filled"):
        return "acked", None, None, f"order {state.status} at the exchange"
    if state.filled_quantity > 0:
        return (
            "done",
            "partially_filled",
            "partially_filled",
            f"{state.filled_quantity} of {state.quantity} filled; order {state.status}",
        )
    return "done", "rejected", state.status, f"order {state.status} with nothing filled"
