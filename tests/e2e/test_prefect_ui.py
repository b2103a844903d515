"""The platform as a Prefect deployment, seen through the Prefect UI in headless Chromium.

`copytrade up` (the real CLI, in a subprocess) brings up a Prefect server on a free port with its
database in a temporary home, the work pool, a process worker and the paper exchange, and deploys
the real `prefect.yaml`. The test then checks in the browser that the deployments page lists the
five deployments with their schedules (R-SET-4: settlement Monday 00:00 UTC), runs the
`settle-weekly` deployment on a small ledger, and checks that the run's `settlement-report`
artifact is visible in the UI. `copytrade down` must then stop everything `up` started.

With COPYTRADE_UPDATE_SCREENSHOTS=1 the test rewrites docs/prefect-ui-deployments.png and
docs/prefect-ui-artifact.png.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from copytrade.config import PROJECT_ROOT
from copytrade.ops.prefect_api import PrefectAPI
from copytrade.ops.processes import ProcessRecord, is_running
from copytrade.ops.stack import (
    LEADER_BOT,
    Stack,
    cancel_runs,
    leader_bot_available,
    start_engine_run,
)
from tests.support.local_stack import local_stack

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
DOCS = PROJECT_ROOT / "docs"
UPDATE_SCREENSHOTS = os.environ.get("COPYTRADE_UPDATE_SCREENSHOTS") == "1"

# What the UI writes for each deployment's schedule (cron descriptions are in the schedule's own
# time zone, UTC); copy-engine has none: it is started once and runs until cancelled.
SCHEDULES = {
    "copy-engine": None,
    "ingest-reconcile": re.compile(r"Every (1 )?minute"),
    "settle-weekly": re.compile(r"At 12:00 AM, only on Monday"),
    "validate-ledger-daily": re.compile(r"At 11:30 PM"),
    "build-metrics-hourly": re.compile(r"At 5 minutes past the hour"),
}


@pytest.fixture(scope="module")
def chromium() -> Path:
    """Debian's Chromium; installed with apt when missing and we are root, else skip (with why)."""
    if not CHROMIUM.exists() and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(
            ["apt-get", "install", "-y", "--no-install-recommends", "chromium"],
            capture_output=True,
            timeout=600,
            check=False,
        )
    if not CHROMIUM.exists():
        pytest.skip(
            f"{CHROMIUM} is missing and could not be installed "
            f"({'apt-get install -y chromium failed' if os.geteuid() == 0 else 'not root'}); "
            "install Debian's chromium package to run the Prefect UI test"
        )
    return CHROMIUM


def seed_ledger(url: str) -> None:
    """Write a small ledger the settlement pays from (through the settlement's own fixtures).

    Leader A (futures, 10 %) has two copies that closed BTCUSDT trades at a profit: shares
    (1,000 − 12.10) × 10 % = 98.79 and (1,000 − 6.10) × 10 % = 99.39, so 198.18 USDT in all.
    Leader B's copy closed at a loss: no share, only its fee rebate.
    """
    from sqlalchemy.orm import Session

    from copytrade import migrate
    from copytrade.db import make_engine
    from tests.support.settlement import EPOCH, Scenario

    migrate.upgrade(url)
    engine = make_engine(url)
    day = EPOCH + timedelta(days=1)
    try:
        with Session(engine) as session, session.begin():
            scenario = Scenario(session)
            leader_a = scenario.portfolio(mode="futures", ratio="0.1")
            first = scenario.copy(leader_a, allocation="5000")
            scenario.fill(first, "BTCUSDT", "buy", "1", "60000", fee="6", at=day)
            scenario.fill(first, "BTCUSDT", "sell", "1", "61000", fee="6.1", at=day)
            second = scenario.copy(leader_a, allocation="5000")
            scenario.fill(second, "BTCUSDT", "buy", "0.5", "60000", fee="3", at=day)
            scenario.fill(second, "BTCUSDT", "sell", "0.5", "62000", fee="3.1", at=day)
            leader_b = scenario.portfolio(mode="futures", ratio="0.1")
            third = scenario.copy(leader_b, allocation="5000")
            scenario.fill(third, "BTCUSDT", "buy", "1", "60000", fee="6", at=day)
            scenario.fill(third, "BTCUSDT", "sell", "1", "59000", fee="5.9", at=day)
    finally:
        engine.dispose()


SEEDED_SHARES = "198.18"  # what leader A is paid (see seed_ledger)


@dataclass
class LocalStack:
    """The stack `copytrade up` started for this module, and the environment it runs in."""

    stack: Stack
    env: dict[str, str]
    args: list[str]

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "copytrade", *args],
            env=self.env,
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """Run `copytrade up` on free ports in a temporary home; `copytrade down` afterwards."""
    home = tmp_path_factory.mktemp("stack") / "var"
    ledger_url = f"sqlite:///{home / 'ledger.db'}"
    home.mkdir(parents=True)
    seed_ledger(ledger_url)
    stack, env = local_stack(home, ledger_url)
    ports = ["--port", str(stack.prefect_port), "--paper-port", str(stack.paper_port)]
    running = LocalStack(stack, env, [*ports, "--no-engine"])
    up = running.cli("up", *running.args)
    started = stack.processes()
    try:
        assert up.returncode == 0, f"copytrade up failed:\n{up.stdout}\n{up.stderr}"
        expected = {"prefect-server", "worker", "paper-exchange"}
        if leader_bot_available():
            expected.add(LEADER_BOT)
        assert expected <= set(started), started
        yield running
    finally:
        down = running.cli("down")
        assert down.returncode == 0, f"copytrade down failed:\n{down.stdout}\n{down.stderr}"
        still: list[ProcessRecord] = [r for r in started.values() if is_running(r)]
        assert not still, f"copytrade down left processes running: {still}"
        again = running.cli("down")
        assert again.returncode == 0 and "nothing was running" in again.stdout, again.stdout


@pytest.fixture(scope="module")
def stack(local: LocalStack) -> Stack:
    return local.stack


@pytest.fixture(scope="module")
def ui_base(stack: Stack) -> str:
    """The URL of the UI that the server serves by default (v1 at /, or v2 under /v2)."""
    settings = httpx.get(f"{stack.prefect_ui_url}/ui-settings", timeout=10).json()
    assert settings["api_url"] == stack.prefect_api_url, "the UI would call another server"
    base = settings.get(f"{settings.get('default_ui', 'v1')}_base_url") or "/"
    return stack.prefect_ui_url + base.rstrip("/")


@pytest.fixture(scope="module")
def page(chromium: Path) -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        context = browser.new_context(
            viewport={"width": 1920, "height": 1000}, timezone_id="UTC", locale="en-US"
        )
        context.set_default_timeout(60_000)  # a loaded CI machine renders slowly
        yield context.new_page()
        browser.close()


def screenshot(page: Any, name: str) -> None:
    if UPDATE_SCREENSHOTS:
        page.screenshot(path=str(DOCS / name))


def run_deployment(stack: Stack, name: str, timeout: float = 480) -> dict[str, Any]:
    """Start a run of deployment ``name`` through the worker and wait for its final state."""
    with PrefectAPI(stack.prefect_api_url) as api:
        (deployment,) = api.deployments([name])
        run = api.create_flow_run(deployment["id"])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            current = api.flow_run(run["id"])
            if current["state"]["type"] in {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}:
                return current
            time.sleep(1)
    worker_log = (stack.run_dir / "worker.log").read_text()[-3000:]
    raise AssertionError(
        f"run of {name} did not finish in {timeout:.0f} s; worker log:\n{worker_log}"
    )


def test_up_again_leaves_the_running_stack_alone(local: LocalStack) -> None:
    before = local.stack.processes()
    again = local.cli("up", *local.args)
    assert again.returncode == 0, f"{again.stdout}\n{again.stderr}"
    output = " ".join(again.stdout.split())
    parts = ("Prefect server: running", "worker: running", "paper exchange: running")
    for part in (*parts, "deployments: up to date"):
        assert part in output, output
    assert local.stack.processes() == before, "a second up must not start anything"


def test_deployment_parameters_come_from_prefect_variables(stack: Stack) -> None:
    """prefect.yaml holds no literal exchange: `up` set the variable, deploying resolved it."""
    with PrefectAPI(stack.prefect_api_url) as api:
        assert api.variable("copytrade_exchange") == "paper"
        deployments = {d["name"]: d for d in api.deployments()}
    assert set(SCHEDULES) <= set(deployments)
    for name in ("copy-engine", "ingest-reconcile"):
        assert deployments[name]["parameters"]["exchange"] == "paper", deployments[name]
    engine = deployments["copy-engine"]
    assert (engine.get("global_concurrency_limit") or {}).get("limit") == 1, engine
    assert (engine.get("concurrency_options") or {}).get("collision_strategy") == "CANCEL_NEW"


def test_deployments_page_lists_the_five_deployments_with_schedules_R_SET_4(
    stack: Stack, ui_base: str, page: Any
) -> None:
    page.goto(ui_base + "/")
    page.get_by_role("link", name="Deployments").first.click()
    for name in SCHEDULES:
        page.get_by_text(name, exact=True).first.wait_for()
    for name, schedule in SCHEDULES.items():
        row = page.locator("tr", has=page.get_by_text(name, exact=True)).first
        text = row.inner_text()
        if schedule is None:
            assert not re.search(r"Every|At \d", text), f"{name} shows a schedule: {text!r}"
        else:
            assert schedule.search(text), f"{name}: schedule {schedule.pattern!r} not in {text!r}"
    screenshot(page, "prefect-ui-deployments.png")


def test_settlement_report_artifact_is_visible_after_a_settle_run(
    stack: Stack, ui_base: str, page: Any
) -> None:
    run = run_deployment(stack, "settle-weekly")
    assert run["state"]["type"] == "COMPLETED", run["state"]
    with PrefectAPI(stack.prefect_api_url) as api:
        artifacts = api.artifacts("settlement-report", flow_run_id=run["id"])
    assert artifacts, "the settle run published no settlement-report artifact"
    artifact = artifacts[0]

    # The run's page lists the artifact under its stable key ...
    page.goto(f"{ui_base}/runs/flow-run/{run['id']}")
    page.get_by_text(run["name"]).first.wait_for()
    page.get_by_role("tab", name="Artifacts").click()
    page.get_by_text("settlement-report", exact=True).first.wait_for()
    # ... and the artifact's page renders the report.
    # Tall enough for the whole report; set before loading (a resize re-renders the page).
    page.set_viewport_size({"width": 1920, "height": 1500})
    page.goto(f"{ui_base}/artifacts/artifact/{artifact['id']}")
    page.get_by_text("settlement-report", exact=True).first.wait_for()
    assert SEEDED_SHARES in artifact["data"], artifact["data"]
    page.get_by_role("cell", name=SEEDED_SHARES).first.wait_for()
    screenshot(page, "prefect-ui-artifact.png")


def test_failed_validation_fails_the_run_with_the_reason_in_the_ui_R_LED_7(
    stack: Stack, ui_base: str, page: Any
) -> None:
    """Break R-LED-2 behind the ledger's back: the daily validation run ends Failed, and the UI
    shows the failed check as the run's reason (runs after the settle test, which needs a whole
    ledger)."""
    from sqlalchemy import create_engine

    engine = create_engine(stack.ledger_url)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "update ledger_accounts set balance = balance + 1 where address = 'platform:fees'"
        )
    engine.dispose()
    run = run_deployment(stack, "validate-ledger-daily")
    assert run["state"]["type"] == "FAILED", run["state"]
    assert "balances_equal_sum_of_postings" in run["state"]["message"], run["state"]

    page.goto(f"{ui_base}/runs/flow-run/{run['id']}")
    page.get_by_text("Failed", exact=True).first.wait_for()
    page.get_by_text("balances_equal_sum_of_postings").first.wait_for()


def test_engine_runs_one_at_a_time_and_down_cancels_it(stack: Stack) -> None:
    """`up` starts one copy-engine run (a second request finds it active); `down` cancels it
    through the API, so the worker stops it and the UI shows it Cancelled, not Running."""
    name, started = start_engine_run(stack)
    again, started_again = start_engine_run(stack)
    assert started and not started_again and again == name
    with PrefectAPI(stack.prefect_api_url) as api:
        (deployment,) = api.deployments(["copy-engine"])
        (run,) = api.flow_runs(deployment_id=deployment["id"])
        deadline = time.monotonic() + 360
        while api.flow_run(run["id"])["state"]["type"] != "RUNNING":
            assert time.monotonic() < deadline, api.flow_run(run["id"])["state"]
            time.sleep(1)
        cancelled = cancel_runs(stack, timeout=60)
        assert run["id"] in [r["id"] for r in cancelled], (name, cancelled)
        final = api.flow_run(run["id"])["state"]
    assert final["type"] == "CANCELLED", final
