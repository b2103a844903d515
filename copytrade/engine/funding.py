"""Funding fees the exchange charges or pays a copy's futures positions, read and handed over.

Every ``FUNDING_EVERY`` seconds (from the sweep) the engine reads each futures copy account's
funding fees since the last read (``funding_payments``: Binance's income history) and hands them
to ``engine.on_funding(copy_id, payments, venue)``; the drivers post them with
``settlement.funding.funding_transfer`` (one ledger transfer per payment, keyed by the exchange's
income id, so a payment read twice is posted once). Settlement and the metrics count them in the
copy's realised PnL (R-SET-2/3). The first read after a start asks for everything the exchange
keeps (idempotent keys make that safe); later reads overlap the last one by a minute.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timedelta

log = logging.getLogger(__name__)
FUNDING_EVERY = 60.0
OVERLAP = timedelta(minutes=1)


class FundingReader:
    def __init__(self, engine, every: float = FUNDING_EVERY) -> None:
        self.engine = engine
        self.every = every
        self.last_run: float | None = None
        self.since: dict[int, datetime] = {}  # account id → newest payment seen

    def _accounts(self) -> dict[int, int]:
        """Futures copy accounts (active or still closing) → copy id."""
        out = {}
        for ps in self.engine.portfolios.values():
            if ps.mode == "futures":
                out.update({c.account_id: c.copy_id for c in ps.copies if c.account_id})
        for entry in self.engine.closing.values():
            if entry.copy.kind == "futures" and entry.copy.account_id:
                out[entry.copy.account_id] = entry.copy.copy_id
        return out

    async def due(self) -> int:
        """Read and hand over the funding fees if ``every`` has passed; return how many."""
        if self.engine.on_funding is None:
            return 0
        if self.last_run is not None and time.monotonic() - self.last_run < self.every:
            return 0
        self.last_run = time.monotonic()
        return await self.read()

    async def read(self) -> int:
        handed = 0
        for account_id, copy_id in self._accounts().items():
            since = self.since.get(account_id)
            try:
                gateway = self.engine.gateway_for(account_id)
                payments = await gateway.funding_payments(since - OVERLAP if since else None)
            except Exception as exc:  # the next read covers it (since is unchanged)
                log.warning("funding of account %s not read: %r", account_id, exc)
                continue
            if not payments:
                continue
            try:
                await asyncio.to_thread(
                    self.engine.on_funding, copy_id, payments, self.engine.venue
                )
            except Exception:
                log.exception("funding of copy %s not posted; read again next time", copy_id)
                continue
            self.since[account_id] = max(p.at for p in payments)
            handed += len(payments)
        return handed
