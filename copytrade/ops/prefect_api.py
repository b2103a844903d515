"""The few calls of Prefect's REST API that the local stack needs, over plain HTTP.

``copytrade/`` imports no Prefect (only ``flows/`` does), so the stack talks to the server the way
the UI does. The paths are those of Prefect 3's server API (``/api/...``).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx

ACTIVE_STATES = ["SCHEDULED", "PENDING", "RUNNING", "CANCELLING", "PAUSED"]
EXECUTING_STATES = ["PENDING", "RUNNING", "CANCELLING"]
RETRY_STATUS = {429, 502, 503}
RETRY_DELAYS: tuple[float | None, ...] = (0.5, 1, 2, 4, 8, None)


class PrefectAPI:
    """A thin client of one Prefect server (``api_url`` ends in ``/api``)."""

    def __init__(self, api_url: str, timeout: float = 10.0) -> None:
        self.api_url = api_url.rstrip("/")
        self._http = httpx.Client(base_url=self.api_url, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> PrefectAPI:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send a request, retrying what Prefect's own client retries: 429, 502, 503.

        On SQLite the server answers 503 when its database is locked for a moment (busy
        scheduler, worker and flow runs all writing); the request is safe to repeat.
        """
        for delay in RETRY_DELAYS:
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TransportError:
                if delay is None:
                    raise
            else:
                if response.status_code not in RETRY_STATUS or delay is None:
                    return response
            time.sleep(delay)
        raise AssertionError("unreachable")  # the last delay is None

    def healthy(self) -> bool:
        try:
            return self._http.get("/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def work_pool(self, name: str) -> dict[str, Any] | None:
        resp = self._request("GET", f"/work_pools/{name}")
        if resp.status_code == 404:
            return None
        resp.raise_for_status()
        return resp.json()

    def set_variable(self, name: str, value: Any) -> None:
        """Create or overwrite the Prefect variable ``name``."""
        resp = self._request("PATCH", f"/variables/name/{name}", json={"value": value})
        if resp.status_code == 404:
            resp = self._request("POST", "/variables/", json={"name": name, "value": value})
        resp.raise_for_status()

    def variable(self, name: str) -> Any:
        resp = self._request("GET", f"/variables/name/{name}")
        if resp.status_code == 404:
            return None
        resp.raise_for_status()
        return resp.json()["value"]

    def deployments(self, names: list[str] | None = None) -> list[dict[str, Any]]:
        body: dict[str, Any] = {"limit": 200}
        if names is not None:
            body["deployments"] = {"name": {"any_": names}}
        resp = self._request("POST", "/deployments/filter", json=body)
        resp.raise_for_status()
        return resp.json()

    def flow_runs(
        self,
        *,
        deployment_id: str | None = None,
        work_pool: str | None = None,
        states: list[str] | None = None,
    ) -> list[dict[str, Any]]:
        body: dict[str, Any] = {"limit": 200, "sort": "EXPECTED_START_TIME_DESC"}
        if deployment_id:
            body["deployments"] = {"id": {"any_": [deployment_id]}}
        if work_pool:
            body["work_pools"] = {"name": {"any_": [work_pool]}}
        if states:
            body["flow_runs"] = {"state": {"type": {"any_": states}}}
        resp = self._request("POST", "/flow_runs/filter", json=body)
        resp.raise_for_status()
        return resp.json()

    def create_flow_run(self, deployment_id: str, tags: list[str] | None = None) -> dict[str, Any]:
        # The idempotency key makes a retried request return the run the first one created.
        body = {"tags": tags or [], "idempotency_key": f"copytrade-{uuid.uuid4()}"}
        resp = self._request("POST", f"/deployments/{deployment_id}/create_flow_run", json=body)
        resp.raise_for_status()
        return resp.json()

    def flow_run(self, flow_run_id: str) -> dict[str, Any]:
        resp = self._request("GET", f"/flow_runs/{flow_run_id}")
        resp.raise_for_status()
        return resp.json()

    def artifacts(self, key: str, flow_run_id: str | None = None) -> list[dict[str, Any]]:
        """Return the artifacts stored under ``key`` (of one flow run if given), newest first."""
        body: dict[str, Any] = {"artifacts": {"key": {"any_": [key]}}, "sort": "CREATED_DESC"}
        if flow_run_id:
            body["artifacts"]["flow_run_id"] = {"any_": [flow_run_id]}
        resp = self._request("POST", "/artifacts/filter", json=body)
        resp.raise_for_status()
        return resp.json()

    def cancel_flow_run(self, flow_run_id: str, message: str) -> None:
        """Ask for cancellation; the worker that runs it stops the process and reports Cancelled."""
        state = {"type": "CANCELLING", "name": "Cancelling", "message": message}
        resp = self._request(
            "POST", f"/flow_runs/{flow_run_id}/set_state", json={"state": state, "force": True}
        )
        resp.raise_for_status()

    def mark_cancelled(self, flow_run_id: str, message: str) -> None:
        state = {"type": "CANCELLED", "name": "Cancelled", "message": message}
        resp = self._request(
            "POST", f"/flow_runs/{flow_run_id}/set_state", json={"state": state, "force": True}
        )
        resp.raise_for_status()

    def wait_for_runs_to_finish(self, run_ids: list[str], timeout: float) -> list[str]:
        """Wait until none of ``run_ids`` is executing any more; return those still executing."""
        deadline = time.monotonic() + timeout
        pending = list(run_ids)
        while pending and time.monotonic() < deadline:
            time.sleep(0.5)
            still = {r["id"] for r in self.flow_runs(states=EXECUTING_STATES)}
            pending = [r for r in pending if r in still]
        return pending
