"""Wire the engine to real gateways: one ccxt gateway per exchange account, secrets by reference.

``ExchangeAccount.api_key_id`` is the API key (public); ``credentials_ref`` says where the secret
lives: ``env:NAME`` (an environment variable), ``file:/path`` (a file holding the secret), or,
for tests and the demo, a name looked up in a dict given to ``GatewayDirectory``. Secrets are
never stored in the database and never printed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from copytrade.domain.markets import Market
from models import ExchangeAccount

SecretSource = Mapping[str, str] | Callable[[str], str | None]


def resolve_secret(ref: str, extra: SecretSource | None = None) -> str:
    """Return the secret named by ``ref``: ``extra`` first (a mapping, or a callable such as a
    Prefect Secret block loader), then ``env:NAME`` or ``file:PATH``."""
    if callable(extra):
        found = extra(ref)
        if found:
            return found
    elif extra and ref in extra:
        return extra[ref]
    scheme, _, name = ref.partition(":")
    if scheme == "env" and name in os.environ:
        return os.environ[name]
    if scheme == "file" and Path(name).is_file():
        return Path(name).read_text().strip()
    raise LookupError(f"credentials_ref {ref!r}: no secret found there (env:NAME or file:PATH)")


class GatewayDirectory:
    """Gateways by exchange account id, built lazily from one shared factory per market kind."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        base_url: str | None,
        *,
        secrets: SecretSource | None = None,
        timeout_ms: int = 10_000,
        kinds: tuple[str, ...] = ("spot", "futures"),
    ) -> None:
        self.sf = session_factory
        self.base_url = base_url
        self.secrets = secrets
        self.timeout_ms = timeout_ms
        self.kinds = kinds
        self.factories: dict = {}
        self._accounts: dict[int, tuple[str, str, str]] = {}
        self._gateways: dict[int, object] = {}

    async def start(self) -> None:
        from copytrade.exchange.factory import GatewayFactory

        for kind in self.kinds:
            factory = GatewayFactory(kind, self.base_url, timeout_ms=self.timeout_ms)
            self.factories[kind] = factory  # kept first, so ``close`` closes a failed start too
            await factory.start()
        self.reload_accounts()

    def reload_accounts(self) -> None:
        with self.sf() as session:
            self._accounts = {
                a.id: (a.market, a.api_key_id, a.credentials_ref)
                for a in session.scalars(select(ExchangeAccount))
            }

    @property
    def markets_by_kind(self) -> dict[str, dict[str, Market]]:
        return {kind: f.markets for kind, f in self.factories.items()}

    def __call__(self, account_id: int):
        gateway = self._gateways.get(account_id)
        if gateway is None:
            if account_id not in self._accounts:
                self.reload_accounts()
            kind, key, ref = self._accounts[account_id]
            secret = resolve_secret(ref, self.secrets)
            # One order per account per leader fill: a client-side rate limiter only adds
            # sleeps here; the exchange's 429/418 answers are handled by the dispatcher.
            gateway = self.factories[kind].gateway(
                key, secret, label=f"account-{account_id}", client_rate_limit=False
            )
            self._gateways[account_id] = gateway
        return gateway

    async def close(self) -> None:
        for factory in self.factories.values():
            await factory.close()
        self.factories.clear()
        self._gateways.clear()


def gateway_lookup(directory: GatewayDirectory) -> Callable[[int], object]:
    return directory
