"""`copytrade up --shards 2` on a PostgreSQL ledger, as an operator runs it (the real CLI).

It deploys `copy-engine-0` and `copy-engine-1` (shard parameters, one run at a time each)
instead of `copy-engine`, starts a run of each, and the two runs hold their shards' advisory
locks; `copytrade down` cancels both and the locks go with their sessions.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from sqlalchemy import text

from copytrade.db import make_engine
from copytrade.engine.shards import lock_space
from copytrade.ops.prefect_api import PrefectAPI
from copytrade.ops.stack import WORK_POOL
from tests.support.local_stack import free_port

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def shard_locks(pg_url: str) -> list[int]:
    """The shard indexes whose advisory lock is held on this ledger (its schema)."""
    db = make_engine(pg_url)
    with db.connect() as conn:
        schema = conn.execute(text("select current_schema()")).scalar()
        held = conn.execute(
            text(
                "select objid::bigint from pg_locks where locktype = 'advisory' and granted "
                "and objsubid = 2 and classid::bigint = :space order by 1"
            ),
            {"space": lock_space(schema, "shard")},
        ).scalars()
        held = list(held)
    db.dispose()
    return held


def test_up_with_two_shards_runs_one_engine_per_shard_and_down_cancels_them(pg_url, tmp_path):
    prefect_port, paper_port = free_port(), free_port()
    env = dict(
        os.environ,
        COPYTRADE_HOME=str(tmp_path / "home"),
        COPYTRADE_DATABASE_URL=pg_url,
    )

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "copytrade", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )

    try:
        up = cli(
            "up",
            "--port",
            str(prefect_port),
            "--paper-port",
            str(paper_port),
            "--shards",
            "2",
            "--no-leader-bot",
        )
        assert up.returncode == 0, up.stdout + up.stderr
        with PrefectAPI(f"http://127.0.0.1:{prefect_port}/api") as api:
            names = {d["name"]: d for d in api.deployments() if d["work_pool_name"] == WORK_POOL}
            assert {"copy-engine-0", "copy-engine-1"} <= set(names)
            assert "copy-engine" not in names
            runs = {}
            for i in (0, 1):
                deployment = names[f"copy-engine-{i}"]
                assert deployment["parameters"]["shard"] == i
                assert deployment["parameters"]["shards"] == 2
                (runs[i],) = api.flow_runs(deployment_id=deployment["id"])
            deadline = time.monotonic() + 360
            while shard_locks(pg_url) != [0, 1]:  # both engines started and hold their shard
                assert time.monotonic() < deadline, (
                    shard_locks(pg_url),
                    [api.flow_run(r["id"])["state"] for r in runs.values()],
                )
                time.sleep(1)
        down = cli("down")
        assert down.returncode == 0, down.stdout + down.stderr
        said = " ".join(down.stdout.split())
        for i in (0, 1):
            assert f"cancelled flow run copy-engine-paper-shard-{i}-of-2" in said, said
        assert shard_locks(pg_url) == []  # gone with the engines' sessions
    finally:
        cli("down")
