"""A long fault campaign (issue 11, R-IN-3): is any leader fill lost, any order sent twice?

    python benchmarks/fault_campaign.py [--fills 2000] [--followers 30] [--kills 12] [--seed N]

The same campaign as ``tests/e2e/test_fault_campaign.py`` (``tests/support/campaign.py``), longer:
the leader bot loops the real trader's 484 fills until ``--fills`` orders were sent (≈ 0.3 s
each), with ``--kills`` × ``kill -9`` of the engine spread over the replay, every paper-exchange
fault kind and one dropped database session. Needs the PostgreSQL server at COPYTRADE_TEST_PG_URL (a fresh schema is made and
dropped). Prints one JSON line: the figures (fills, kills, restarts, outcomes, seconds, the load
average before and after: the shared machine's load moves the duration) and the problems found
by each check (all empty when nothing was lost, doubled or left unresolved).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from copytrade.db import make_engine  # noqa: E402
from tests.support.campaign import CampaignConfig, run_campaign  # noqa: E402

PG_URL = os.environ.get(
    "COPYTRADE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fills", type=int, default=2000, help="leader orders sent (≥ 1)")
    parser.add_argument("--followers", type=int, default=30)
    parser.add_argument("--kills", type=int, default=12, help="kill -9 of the engine")
    parser.add_argument("--seed", type=int, default=20261207)
    args = parser.parse_args()
    if args.fills < 1 or args.followers < 1 or args.kills < 2:
        parser.error("--fills and --followers must be ≥ 1, --kills ≥ 2")
    spread = args.fills * 0.3 / (args.kills + 1)  # seconds between two kills
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    server = make_engine(PG_URL)
    with server.begin() as conn:
        conn.execute(text(f'create schema "{schema}"'))
    url = (
        make_url(PG_URL)
        .update_query_dict({"options": f"-csearch_path={schema}"})
        .render_as_string(hide_password=False)
    )
    try:
        with tempfile.TemporaryDirectory(prefix="fault-campaign-") as tmp:
            outcome = run_campaign(
                CampaignConfig(
                    url,
                    PG_URL,
                    Path(tmp),
                    fills=args.fills,
                    followers=args.followers,
                    kills=args.kills,
                    seed=args.seed,
                    pause=(0.7 * spread, 1.3 * spread),
                    app_name=f"ct-bench-{schema}",
                )
            )
    finally:
        with server.begin() as conn:
            conn.execute(text(f'drop schema "{schema}" cascade'))
        server.dispose()
    problems = {k: len(v) for k, v in outcome.problems.items()}
    samples = {k: v[:3] for k, v in outcome.problems.items() if v}
    print(
        json.dumps(
            {
                "benchmark": "fault_campaign",
                "passed": outcome.passed,
                **outcome.figures,
                "problems": problems,
                "problem_samples": samples,
            },
            default=str,
        )
    )


if __name__ == "__main__":
    main()
