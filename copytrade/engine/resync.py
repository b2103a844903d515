"""Re-sync a drifted follower to the leader's proportional position (R-X-2).

Target per symbol = leader position × copy equity / leader equity, rounded down to the lot step
(the same proportion as ratio sizing; a fixed-amount copy is brought to its recorded exposure at
the leader's proportion of it, i.e. flat when the leader is flat, otherwise left unchanged). The
follower's current position is the exchange's (futures ``positions()``), so a manual close or a
missed fill is seen; the difference goes out as one order per symbol, persisted first with
``kind='resync'`` and a fresh client order id, then recorded like every other order.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from copytrade.domain.money import ZERO
from copytrade.engine.core import CopyEngine


@dataclass(frozen=True, slots=True)
class Drift:
    copy_id: int
    symbol: str
    current: Decimal
    target: Decimal

    @property
    def delta(self) -> Decimal:
        return self.target - self.current


async def measure_drift(
    engine: CopyEngine, copy_id: int, symbols: list[str] | None = None
) -> list[Drift]:
    """Return the copy's drift per symbol (only symbols where current ≠ target)."""
    ps, index = engine._find(copy_id)
    copy = ps.copies[index]
    markets = engine.markets(ps)
    current: dict[str, Decimal] = {s: p.quantity for s, p in copy.positions.items()}
    if ps.mode == "futures" and copy.account_id is not None:
        exchange_positions = await engine.gateway_for(copy.account_id).positions()
        current = {s: ZERO for s in current} | {p.symbol: p.quantity for p in exchange_positions}
        for symbol, qty in current.items():  # adopt what the exchange holds
            copy.position(symbol).quantity = qty
    wanted = set(symbols) if symbols else set(current) | set(ps.leader_positions)
    out = []
    for symbol in sorted(wanted):
        market = markets.get(symbol)
        if market is None:
            continue
        leader = ps.leader_positions.get(symbol, ZERO)
        if copy.settings.ratio_mode:
            raw = leader * copy.equity() / ps.leader_equity
        else:
            raw = current.get(symbol, ZERO) if leader else ZERO
        target = market.round_amount(abs(raw)) * (1 if raw >= 0 else -1)
        if copy.settings.symbols is not None and symbol not in copy.settings.symbols:
            target = ZERO if current.get(symbol, ZERO) else target
        have = current.get(symbol, ZERO)
        if target != have:
            out.append(Drift(copy_id, symbol, have, target))
    return out


async def resync(engine: CopyEngine, copy_id: int, symbols: list[str] | None = None) -> list:
    """Send the correcting orders of one copy; return the intents (kind ``resync``)."""
    ps, index = engine._find(copy_id)
    copy = ps.copies[index]
    drifts = await measure_drift(engine, copy_id, symbols)
    orders = []
    for d in drifts:
        market = engine.markets(ps)[d.symbol]
        qty = market.round_amount(abs(d.delta))
        if qty <= 0:
            continue
        side = "buy" if d.delta > 0 else "sell"
        # Reducing (towards zero without crossing) may be reduce-only on futures.
        reduces = abs(d.target) < abs(d.current) and (
            d.target == 0 or (d.target > 0) == (d.current > 0)
        )
        orders.append((copy, index, d.symbol, side, qty, ps.mode == "futures" and reduces))
    if not orders:
        return []
    async with ps.lock:
        intents = engine._persist_extra(ps, orders, "resync")
        results = await engine._send(intents)
        engine.record(ps, intents, results)
    return intents
