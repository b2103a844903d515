"""Admin clients of the paper exchange (sync and async): accounts, deposits, faults, clock, prices."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import httpx

ADMIN_HEADER = "X-Admin-Token"


class AdminError(RuntimeError):
    """The admin endpoint refused a request (the message names the field and the rule)."""


@dataclass(frozen=True, slots=True)
class PaperAccount:
    """A paper account as created: id and credentials (the secret is never printed by the CLI)."""

    account_id: str
    api_key: str
    api_secret: str

    def __repr__(self) -> str:  # keep secrets out of logs and test output
        return f"PaperAccount({self.account_id!r}, api_key={self.api_key[:6]}…)"


def _account_body(
    name: str | None,
    spot: dict[str, Decimal | str | int] | None,
    futures: dict[str, Decimal | str | int] | None,
    fees: dict[str, Decimal | str] | None,
) -> dict:
    return {
        "name": name,
        "spot": {k: str(v) for k, v in (spot or {}).items()},
        "futures": {k: str(v) for k, v in (futures or {}).items()},
        "fees": {k: str(v) for k, v in (fees or {}).items()},
    }


def _check(response: httpx.Response) -> dict:
    if response.status_code >= 400:
        try:
            detail = response.json().get("error", response.text)
        except ValueError:
            detail = response.text
        raise AdminError(
            f"paper admin {response.request.method} {response.request.url.path}: {detail}"
        )
    return response.json()


class AdminClient:
    """Blocking admin client (CLI, tests, benchmarks)."""

    def __init__(self, base_url: str, token: str, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.base_url, headers={ADMIN_HEADER: token}, timeout=timeout
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def create_account(
        self,
        name: str | None = None,
        spot: dict | None = None,
        futures: dict | None = None,
        fees: dict | None = None,
    ) -> PaperAccount:
        data = _check(
            self._http.post("/admin/accounts", json=_account_body(name, spot, futures, fees))
        )
        return PaperAccount(data["account_id"], data["api_key"], data["api_secret"])

    def account(self, account_id: str) -> dict:
        return _check(self._http.get(f"/admin/accounts/{account_id}"))

    def journal(self, account_id: str) -> list:
        return _check(self._http.get(f"/admin/accounts/{account_id}/journal"))["journal"]

    def deposit(
        self, account_id: str, asset: str, amount: Decimal | str, wallet: str = "spot"
    ) -> dict:
        body = {"asset": asset, "amount": str(amount), "wallet": wallet}
        return _check(self._http.post(f"/admin/accounts/{account_id}/deposit", json=body))

    def add_fault(self, kind: str, **spec: object) -> dict:
        return _check(self._http.post("/admin/faults", json={"kind": kind, **spec}))

    def faults(self) -> list:
        return _check(self._http.get("/admin/faults"))["faults"]

    def clear_faults(self, account_id: str | None = None) -> int:
        params = {"account_id": account_id} if account_id else None
        return _check(self._http.delete("/admin/faults", params=params))["cleared"]

    def clock(self) -> dict:
        return _check(self._http.get("/admin/clock"))

    def set_clock(
        self,
        time: str | None = None,
        speed: float | None = None,
        advance_seconds: float | None = None,
    ) -> dict:
        body: dict = {}
        if time is not None:
            body["time"] = time
        if speed is not None:
            body["speed"] = speed
        if advance_seconds is not None:
            body["advance_seconds"] = str(advance_seconds)
        return _check(self._http.post("/admin/clock", json=body))

    def set_price(self, symbol: str, price: Decimal | str | None, kind: str = "spot") -> dict:
        body = {"symbol": symbol, "kind": kind, "price": None if price is None else str(price)}
        return _check(self._http.post("/admin/prices", json=body))

    def set_book(self, **config: object) -> dict:
        return _check(
            self._http.post(
                "/admin/book",
                json={k: str(v) if not isinstance(v, int) else v for k, v in config.items()},
            )
        )

    def health(self) -> dict:
        return _check(self._http.get("/admin/health"))


class AsyncAdminClient:
    """Async admin client (for code already on an event loop: the engine's tests, the leader bot)."""

    def __init__(self, base_url: str, token: str, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.AsyncClient(
            base_url=self.base_url, headers={ADMIN_HEADER: token}, timeout=timeout
        )

    async def close(self) -> None:
        await self._http.aclose()

    async def create_account(
        self,
        name: str | None = None,
        spot: dict | None = None,
        futures: dict | None = None,
        fees: dict | None = None,
    ) -> PaperAccount:
        response = await self._http.post(
            "/admin/accounts", json=_account_body(name, spot, futures, fees)
        )
        data = _check(response)
        return PaperAccount(data["account_id"], data["api_key"], data["api_secret"])

    async def account(self, account_id: str) -> dict:
        return _check(await self._http.get(f"/admin/accounts/{account_id}"))

    async def deposit(
        self, account_id: str, asset: str, amount: Decimal | str, wallet: str = "spot"
    ) -> dict:
        body = {"asset": asset, "amount": str(amount), "wallet": wallet}
        return _check(await self._http.post(f"/admin/accounts/{account_id}/deposit", json=body))

    async def add_fault(self, kind: str, **spec: object) -> dict:
        return _check(await self._http.post("/admin/faults", json={"kind": kind, **spec}))

    async def clear_faults(self, account_id: str | None = None) -> int:
        params = {"account_id": account_id} if account_id else None
        return _check(await self._http.delete("/admin/faults", params=params))["cleared"]

    async def clock(self) -> dict:
        return _check(await self._http.get("/admin/clock"))

    async def set_clock(
        self,
        time: str | None = None,
        speed: float | None = None,
        advance_seconds: float | None = None,
        forward_only: bool = False,
    ) -> dict:
        body: dict = {}
        if time is not None:
            body["time"] = time
            if forward_only:
                body["forward_only"] = True
        if speed is not None:
            body["speed"] = speed
        if advance_seconds is not None:
            body["advance_seconds"] = str(advance_seconds)
        return _check(await self._http.post("/admin/clock", json=body))

    async def set_price(self, symbol: str, price: Decimal | str | None, kind: str = "spot") -> dict:
        body = {"symbol": symbol, "kind": kind, "price": None if price is None else str(price)}
        return _check(await self._http.post("/admin/prices", json=body))
