"""Smoke test of prefect.yaml: every entrypoint imports and is a flow, every schedule parses (UTC),
the deployments are the ones issue 8 names, and nothing secret is written as a literal.

Schedules are parsed with Prefect's own schedule models, the way `prefect deploy` builds them, and
their next dates are computed with Prefect's server-side schedule code (R-SET-4: Monday 00:00 UTC).
"""

from __future__ import annotations

import importlib.util
import inspect
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from prefect import Flow
from prefect.client.schemas.schedules import CronSchedule, IntervalSchedule
from prefect.server.schemas import schedules as server_schedules

from copytrade.config import PROJECT_ROOT
from copytrade.ops.stack import WORK_POOL, Stack, stack_variables

PREFECT_YAML = PROJECT_ROOT / "prefect.yaml"
DEPLOYMENTS = {
    "copy-engine",
    "ingest-reconcile",
    "settle-weekly",
    "settle-event",
    "validate-ledger-daily",
    "build-metrics-hourly",
}
PLACEHOLDER = re.compile(r"\{\{\s*([^}]+?)\s*\}\}")


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    return yaml.safe_load(PREFECT_YAML.read_text())


@pytest.fixture(scope="module")
def deployments(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {d["name"]: d for d in config["deployments"]}


def load_entrypoint(entrypoint: str) -> Any:
    """Import ``path/to/file.py:function`` the way a worker does (from the project root)."""
    path, _, attr = entrypoint.partition(":")
    module_name = "prefect_yaml_smoke_" + Path(path).stem
    spec = importlib.util.spec_from_file_location(module_name, PROJECT_ROOT / path)
    assert spec and spec.loader, f"entrypoint {entrypoint}: {path} is not importable"
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return getattr(module, attr)


def parse_schedule(config: dict[str, Any]) -> CronSchedule | IntervalSchedule:
    """Build the schedule `prefect deploy` would build from one `schedules:` entry."""
    if "cron" in config:
        return CronSchedule(cron=config["cron"], timezone=config.get("timezone"))
    if "interval" in config:
        return IntervalSchedule(
            interval=timedelta(seconds=config["interval"]), timezone=config.get("timezone")
        )
    raise AssertionError(f"schedule {config} is neither cron nor interval")


async def next_dates(schedule: CronSchedule | IntervalSchedule, n: int = 3) -> list[datetime]:
    """Return the next ``n`` fire times after a fixed Wednesday, as the Prefect scheduler sees them."""
    start = datetime(2025, 1, 29, 12, 0, tzinfo=UTC)
    if isinstance(schedule, CronSchedule):
        server = server_schedules.CronSchedule(cron=schedule.cron, timezone=schedule.timezone)
    else:
        server = server_schedules.IntervalSchedule(
            interval=schedule.interval, anchor_date=start, timezone=schedule.timezone
        )
    return await server.get_dates(n=n, start=start)


def test_deployments_are_those_of_issues_8_and_13(deployments: dict[str, dict[str, Any]]) -> None:
    assert set(deployments) == DEPLOYMENTS


@pytest.mark.parametrize("name", sorted(DEPLOYMENTS))
def test_entrypoint_imports_and_is_a_flow(deployments: dict, name: str) -> None:
    deployment = deployments[name]
    flow = load_entrypoint(deployment["entrypoint"])
    assert isinstance(flow, Flow), f"{deployment['entrypoint']} is not a Prefect flow"
    # Parameters fixed by the deployment must be parameters of the flow, or every run fails.
    accepted = inspect.signature(flow.fn).parameters
    for param in deployment.get("parameters") or {}:
        assert param in accepted, f"{name}: parameter {param!r} is not one of {list(accepted)}"


@pytest.mark.parametrize("name", sorted(DEPLOYMENTS))
def test_every_schedule_parses_in_utc(deployments: dict, name: str) -> None:
    for entry in deployments[name].get("schedules") or []:
        schedule = parse_schedule(entry)
        assert schedule.timezone == "UTC", f"{name}: schedule {entry} is not in UTC"


async def test_settle_weekly_fires_monday_midnight_utc_R_SET_4(deployments: dict) -> None:
    (entry,) = deployments["settle-weekly"]["schedules"]
    assert entry["cron"] == "0 0 * * 1"
    dates = await next_dates(parse_schedule(entry))
    assert all(d.astimezone(UTC).weekday() == 0 and (d.hour, d.minute) == (0, 0) for d in dates), (
        dates
    )
    assert [b - a for a, b in zip(dates, dates[1:], strict=False)] == [timedelta(days=7)] * 2


async def test_ingest_every_minute_metrics_hourly_validation_daily(deployments: dict) -> None:
    expected = {
        "ingest-reconcile": timedelta(minutes=1),
        "build-metrics-hourly": timedelta(hours=1),
        "validate-ledger-daily": timedelta(days=1),
    }
    for name, period in expected.items():
        (entry,) = deployments[name]["schedules"]
        dates = await next_dates(parse_schedule(entry))
        assert [b - a for a, b in zip(dates, dates[1:], strict=False)] == [period] * 2, name


def test_copy_engine_is_long_running_one_at_a_time(deployments: dict) -> None:
    engine = deployments["copy-engine"]
    assert not engine.get("schedules"), "the engine is started once, not on a schedule"
    assert engine["concurrency_limit"] == {"limit": 1, "collision_strategy": "CANCEL_NEW"}


def test_aliases_come_from_the_definitions_block(config: dict, deployments: dict) -> None:
    # YAML aliases load as the very same object as their anchor in `definitions:`.
    pool = config["definitions"]["work_pools"]["process_pool"]
    assert pool["name"] == WORK_POOL
    schedules = list(config["definitions"]["schedules"].values())
    for name, deployment in deployments.items():
        assert deployment["work_pool"] is pool, f"{name} does not use the work pool alias"
        for entry in deployment.get("schedules") or []:
            assert any(entry is alias for alias in schedules), f"{name}: schedule is no alias"


def test_no_literal_secrets_and_every_placeholder_is_provided(config: dict) -> None:
    """Secrets come from Secret blocks or the environment; variables are set by `copytrade up`."""
    provided_env = set(Stack(home=Path("/nonexistent")).env())
    provided_vars = set(stack_variables(Stack(home=Path("/nonexistent"))))
    suspicious = re.compile(r"(secret|password|api[_-]?key|token|://[^/\s]*@)", re.I)

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if suspicious.search(str(key)) and isinstance(value, str | int):
                    assert PLACEHOLDER.fullmatch(str(value)), f"{where}.{key} is a literal secret"
                walk(value, f"{where}.{key}")
        elif isinstance(node, list):
            for i, item in enumerate(node):
                walk(item, f"{where}[{i}]")
        elif isinstance(node, str):
            for placeholder in PLACEHOLDER.findall(node):
                if placeholder.startswith("$"):
                    assert placeholder[1:] in provided_env, f"{where}: ${placeholder} unset"
                elif placeholder.startswith("prefect.variables."):
                    name = placeholder.removeprefix("prefect.variables.")
                    assert name in provided_vars, f"{where}: variable {name} is not set by up"
                elif ".triggers[" in where and placeholder.startswith("event."):
                    pass  # rendered from the triggering event when the automation fires
                else:
                    assert placeholder.startswith("prefect.blocks.secret."), (
                        f"{where}: unexpected placeholder {placeholder}"
                    )
            if PLACEHOLDER.search(node) is None:
                assert not suspicious.search(node), f"{where}: {node!r} looks like a secret"

    walk(config, "prefect.yaml")


def test_pull_step_runs_flows_from_the_project_dir(config: dict) -> None:
    (step,) = config["pull"]
    directory = step["prefect.deployments.steps.set_working_directory"]["directory"]
    assert directory == "{{ $COPYTRADE_PROJECT_DIR }}"
    assert Stack(home=Path("/nonexistent")).env()["COPYTRADE_PROJECT_DIR"] == str(PROJECT_ROOT)


# Issue 8, monitoring: each deployment's flow publishes these artifact keys (the UI keeps the
# latest per key) and names its runs from a template showing what the run is about.
ARTIFACT_KEYS = {
    "copy-engine": set(),
    "ingest-reconcile": {"reconciliation-report"},
    "settle-weekly": {"settlement-report"},
    "settle-event": {"settlement-report"},
    "validate-ledger-daily": {"validation-summary"},
    "build-metrics-hourly": {"leaderboard", "copy-quality"},
}
RUN_NAME_PARAMETER = {
    "settle-weekly": "cycle",
    "settle-event": "cycle",
    "build-metrics-hourly": "period",
    "validate-ledger-daily": "scope",
}


def artifact_keys(flow: Flow) -> set[str]:
    """Return the literal artifact keys (``key="…"``) in the flow's module."""
    import ast

    tree = ast.parse(inspect.getsource(inspect.getmodule(flow.fn)))
    return {
        kw.value.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        for kw in node.keywords
        if kw.arg == "key"
        and isinstance(kw.value, ast.Constant)
        and isinstance(kw.value.value, str)
    }


@pytest.mark.parametrize("name", sorted(DEPLOYMENTS))
def test_flow_names_its_runs_and_publishes_its_artifacts(deployments: dict, name: str) -> None:
    flow = load_entrypoint(deployments[name]["entrypoint"])
    template = flow.flow_run_name
    assert isinstance(template, str) and "{" in template, f"{name}: run name {template!r}"
    if name in RUN_NAME_PARAMETER:
        assert "{" + RUN_NAME_PARAMETER[name] in template, f"{name}: run name {template!r}"
        # Never the database URL: it may hold a password, and run names are shown everywhere.
        assert "database_url" not in template, f"{name}: run name {template!r}"
    missing = ARTIFACT_KEYS[name] - artifact_keys(flow)
    assert not missing, f"{name}: no artifact with key {sorted(missing)}"


def test_up_with_n_shards_deploys_one_engine_per_shard_one_run_each(config: dict) -> None:
    """`copytrade up --shards 3`: copy-engine-0 … copy-engine-2 with their shard parameters,
    each one run at a time; the other deployments unchanged; 1 shard keeps `copy-engine`."""
    from copytrade.ops.stack import engine_deployments, sharded_spec

    assert sharded_spec(config, 1) == config
    assert engine_deployments(1) == ["copy-engine"]
    spec = sharded_spec(config, 3)
    by_name = {d["name"]: d for d in spec["deployments"]}
    assert engine_deployments(3) == ["copy-engine-0", "copy-engine-1", "copy-engine-2"]
    assert set(by_name) == DEPLOYMENTS - {"copy-engine"} | set(engine_deployments(3))
    flow = load_entrypoint(by_name["copy-engine-0"]["entrypoint"])
    accepted = set(inspect.signature(flow.fn).parameters)
    for i, name in enumerate(engine_deployments(3)):
        engine = by_name[name]
        assert engine["parameters"]["shard"] == i and engine["parameters"]["shards"] == 3
        assert set(engine["parameters"]) <= accepted
        assert engine["concurrency_limit"] == {"limit": 1, "collision_strategy": "CANCEL_NEW"}
        assert not engine.get("schedules")
    with pytest.raises(ValueError, match="--shard"):
        sharded_spec(config, 0)
