"""`copytrade paper …` commands against a running paper exchange (issue 11: every failure a
clear error — exit 2 naming field, value and rule; exit 3 for an unreachable exchange)."""

from __future__ import annotations

import json
import os
import pty
import stat
import subprocess
import sys
import time

import httpx
import pytest
from typer.testing import CliRunner

from copytrade.cli import app
from copytrade.config import get_settings
from tests.support.paper_exchange import bound_socket


@pytest.fixture
def admin_env(paper, monkeypatch):
    """The CLI talks to the session's paper exchange with its admin token."""
    monkeypatch.setenv("COPYTRADE_PAPER_ADMIN_TOKEN", paper.admin_token)
    get_settings.cache_clear()
    yield paper
    get_settings.cache_clear()


def _flat(output: str) -> str:
    return " ".join(output.split())


def test_help_lists_serve_and_leader_bot():
    result = CliRunner().invoke(app, ["paper", "--help"])
    assert result.exit_code == 0
    assert "serve" in result.output and "leader-bot" in result.output


def test_create_account_writes_the_secret_to_a_private_file_only(admin_env, tmp_path):
    paper = admin_env
    file = tmp_path / "leader.json"
    result = CliRunner().invoke(
        app,
        [
            "paper",
            "create-account",
            "--spot",
            "USDT=1000",
            "--futures",
            "USDT=500",
            "--credentials-file",
            str(file),
            "--url",
            paper.base_url,
        ],
    )
    assert result.exit_code == 0, result.output
    creds = json.loads(file.read_text())
    assert creds["api_secret"] not in result.output
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    view = paper.admin.account(creds["account_id"])
    assert view["spot"]["USDT"]["free"] == "1000" and view["futures"]["USDT"] == "500"
    bad = CliRunner().invoke(
        app, ["paper", "create-account", "--spot", "USDT", "--url", paper.base_url]
    )
    assert bad.exit_code == 2 and "ASSET=AMOUNT" in bad.output


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["create-account", "--futures", "USDT=abc"], "--futures USDT: 'abc' is not a number"),
        (["create-account", "--spot", "USDT=-5"], "--spot USDT: '-5' must be positive"),
        (["fault", "meteor"], "kind: 'meteor' is not one of"),
        (["fault", "rate_limit", "--count", "-1"], "--count: -1 must be ≥ 0"),
        (["fault", "slow", "--delay", "9999"], "--delay: 9999.0 must be between 0 and 600"),
        (["leader-bot", "--deposit", "lots"], "--deposit: 'lots' is not a number"),
    ],
)
def test_bad_values_are_refused_with_exit_2_naming_field_value_and_rule(admin_env, args, says):
    accounts_before = admin_env.admin.health()["accounts"]
    result = CliRunner().invoke(app, ["paper", *args, "--url", admin_env.base_url])
    assert result.exit_code == 2, result.output
    assert says in _flat(result.output)
    assert "Traceback" not in result.output
    assert admin_env.admin.health()["accounts"] == accounts_before  # nothing changed
    assert admin_env.admin.faults() == []


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ({"kind": "slow", "delay": "abc"}, "delay: 'abc' must be a number"),
        ({"kind": "rate_limit", "count": -1}, "count: -1 must be a positive integer"),
        ({"kind": "rate_limit", "retry_after": 1.5}, "retry_after: 1.5 must be an integer"),
        ({"kind": "error_before", "status": 200}, "status: 200 must be a 5xx status"),
        ({"kind": "rate_limit", "paths": "/order"}, "paths: '/order' must be a list"),
    ],
)
def test_admin_fault_requests_with_bad_values_get_a_clear_400(paper, spec, says):
    response = httpx.post(
        f"{paper.base_url}/admin/faults", json=spec, headers={"X-Admin-Token": paper.admin_token}
    )
    assert response.status_code == 400
    assert says in response.json()["error"]


@pytest.mark.parametrize(
    ("path", "body", "says"),
    [
        ("/admin/accounts", {"spot": {"USDT": "lots"}}, "spot.USDT: 'lots' is not a number"),
        ("/admin/accounts", {"futures": {"USDT": 1.5}}, "futures.USDT: 1.5 is a float"),
        ("/admin/clock", {"advance_seconds": "soon"}, "advance_seconds: 'soon' is not a number"),
        ("/admin/clock", {"speed": -1}, "speed: -1 must be a number ≥ 0"),
        ("/admin/book", {"levels": "many"}, "levels: 'many' must be an integer"),
        ("/admin/book", {"spread_bps": "wide"}, "spread_bps: 'wide' is not a number"),
        ("/admin/prices", {"price": "1"}, "symbol: missing (required)"),
        ("/admin/prices", {"symbol": "ETHUSDT", "price": "-3"}, "price: -3 must be positive"),
    ],
)
def test_admin_requests_with_bad_values_get_a_clear_400_and_change_nothing(paper, path, body, says):
    before = paper.admin.clock()
    response = httpx.post(
        f"{paper.base_url}{path}", json=body, headers={"X-Admin-Token": paper.admin_token}
    )
    assert response.status_code == 400, response.text
    assert says in response.json()["error"]
    assert paper.admin.clock()["speed"] == before["speed"]


def test_admin_deposit_without_an_asset_is_refused(paper, account):
    response = httpx.post(
        f"{paper.base_url}/admin/accounts/{account.account_id}/deposit",
        json={"amount": "5"},
        headers={"X-Admin-Token": paper.admin_token},
    )
    assert response.status_code == 400
    assert response.json()["error"] == "asset: missing (required)"


def test_unreachable_exchange_exits_3_with_one_line(admin_env):
    result = CliRunner().invoke(
        app, ["paper", "create-account", "--spot", "USDT=1", "--url", "http://127.0.0.1:9"]
    )
    assert result.exit_code == 3
    assert "paper exchange unreachable at http://127.0.0.1:9" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_serve_without_a_token_generates_one_prints_it_once_and_keeps_it_private(tmp_path):
    """Issue 11: no well-known admin token; a random one in a 0600 file, never in a log."""
    sock = bound_socket("127.0.0.1")
    port = sock.getsockname()[1]
    sock.close()
    env = {k: v for k, v in os.environ.items() if k != "COPYTRADE_PAPER_ADMIN_TOKEN"}
    env["COPYTRADE_HOME"] = str(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "copytrade", "paper", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{base_url}/api/v3/ping", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        token_file = tmp_path / "paper-admin-token"
        token = token_file.read_text().strip()
        assert len(token) >= 32
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        assert httpx.get(f"{base_url}/admin/health").status_code == 401
        assert (
            httpx.get(
                f"{base_url}/admin/health", headers={"X-Admin-Token": "paper-admin"}
            ).status_code
            == 401
        )
        cli = subprocess.run(
            [sys.executable, "-m", "copytrade", "paper", "clear-faults", "--url", base_url],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert cli.returncode == 0, cli.stderr
        assert token not in cli.stdout + cli.stderr
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=10)
    printed = " ".join((out + err).decode().split())
    # stderr is a pipe here, as under `copytrade up` (a log file): where it is, never the token
    assert token not in printed
    assert f"admin token kept in {token_file}" in printed


def test_serve_at_a_terminal_shows_the_generated_token_once(tmp_path):
    sock = bound_socket("127.0.0.1")
    port = sock.getsockname()[1]
    sock.close()
    env = {k: v for k, v in os.environ.items() if k != "COPYTRADE_PAPER_ADMIN_TOKEN"}
    env["COPYTRADE_HOME"] = str(tmp_path)
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "copytrade", "paper", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=slave,
    )
    os.close(slave)
    try:
        for _ in range(300):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/v3/ping", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        token = (tmp_path / "paper-admin-token").read_text().strip()
        shown = os.read(master, 65536).decode()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        os.close(master)
    assert shown.count(token) == 1
