"""Kill the settlement process mid-cycle, rerun: totals identical to an uninterrupted run (R-SET-9).

The process is killed with SIGKILL (no cleanup runs) at a chosen point: between two committed
batches, or inside a batch after its transfers and payout rows were written but before commit.
The reference is the same population settled without interruption on a fresh SQLite file.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from decimal import Decimal

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

import models
from copytrade.config import PROJECT_ROOT
from copytrade.db import make_engine
from copytrade.ledger import Ledger
from copytrade.settlement import SettlementService, StaticMarks, ledger_integrity_gate
from copytrade.validation import validate_ledger
from models import LedgerTransfer, SettlementCycle, SettlementPayout
from tests.support.settlement import generate_population

pytestmark = pytest.mark.slow

BATCH = 7
KILLER = """
import os, signal, sys
from datetime import datetime
from decimal import Decimal
from sqlalchemy.orm import sessionmaker
from copytrade.db import make_engine
from copytrade.settlement import SettlementService, StaticMarks, ledger_integrity_gate

url, stage, index, marks, at = sys.argv[1:]

def die(event):
    if event.stage == stage and event.index == int(index):
        os.kill(os.getpid(), signal.SIGKILL)

SettlementService(
    sessionmaker(make_engine(url)),
    gate=ledger_integrity_gate(url),
    marks=StaticMarks({k: Decimal(v) for k, v in __import__("json").loads(marks).items()}),
    batch_size=int(os.environ["BATCH"]),
    on_batch=die,
).settle_weekly(datetime.fromisoformat(at))
sys.exit(3)
"""


def populate(url: str):
    engine = make_engine(url)
    models.Base.metadata.create_all(engine)
    with Session(engine) as session, session.begin():
        population = generate_population(
            session, copies=60, fills_per_copy=4, copies_per_portfolio=10, seed=11
        )
    engine.dispose()
    return population


def outcome(url: str) -> dict:
    engine = make_engine(url)
    with Session(engine) as session:
        payouts = sorted(
            (p.copy_id, p.kind, p.asset, p.status, p.amount)
            for p in session.scalars(select(SettlementPayout))
        )
        balances = {(b.address, b.asset): b.amount for b in Ledger(session).balances()}
        transfers = session.scalar(select(func.count()).select_from(LedgerTransfer))
        cycles = session.scalars(select(SettlementCycle)).all()
    engine.dispose()
    return {
        "payouts": payouts,
        "balances": balances,
        "transfers": transfers,
        "cycles": {c.status for c in cycles},
        "totals": [(c.summary or {}).get("cycle") for c in cycles],
    }


def settle(url: str, population) -> None:
    SettlementService(
        sessionmaker(make_engine(url)),
        gate=ledger_integrity_gate(url),
        marks=StaticMarks(population.marks),
        batch_size=BATCH,
    ).settle_weekly(population.as_of)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    url = f"sqlite:///{tmp_path_factory.mktemp('reference') / 'ledger.db'}"
    settle(url, populate(url))
    return outcome(url)


@pytest.mark.parametrize("stage,index", [("committed", 2), ("posted", 4)])
def test_killed_mid_cycle_then_rerun_pays_exactly_the_uninterrupted_totals_R_SET_9(
    stage, index, db_url, reference
):
    population = populate(db_url)
    marks = json.dumps({k: str(v) for k, v in population.marks.items()})
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "BATCH": str(BATCH)}
    killed = subprocess.run(
        [
            sys.executable,
            "-c",
            KILLER,
            db_url,
            stage,
            str(index),
            marks,
            population.as_of.isoformat(),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    interrupted = outcome(db_url)
    assert interrupted["cycles"] == {"running"}
    committed_batches = index if stage == "posted" else index + 1
    settled = {copy for copy, kind, *_ in interrupted["payouts"] if kind == "profit_share"}
    assert len(settled) == committed_batches * BATCH  # the killed batch left nothing behind

    settle(db_url, population)  # the rerun resumes the cycle
    resumed = outcome(db_url)
    assert resumed["payouts"] == reference["payouts"]
    assert resumed["balances"] == reference["balances"]
    assert resumed["transfers"] == reference["transfers"]
    assert resumed["cycles"] == {"completed"}
    assert resumed["totals"] == reference["totals"]  # the cycle's audit summary, all runs together
    assert sum(amount for *_, amount in resumed["payouts"]) > Decimal(0)
    assert validate_ledger(db_url).passed
