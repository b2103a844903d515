"""Regenerate the initial migration from the models (allowed until the first release ships).

Usage: .venv/bin/python scripts/regen_initial_migration.py
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from alembic import command

from copytrade.migrate import MIGRATIONS, alembic_config

POST = """
    # Append-only ledger history and the genesis of the hash chain (R-X-4).
    bind = op.get_bind()
    for statement in models.ledger.immutability_ddl(bind.dialect.name):
        op.execute(sa.text(statement))
    op.execute(
        sa.text("insert into ledger_chain_head (id, last_seq, last_hash) values (1, 0, :h)").bindparams(
            h=models.ledger.GENESIS_HASH
        )
    )
"""


def main() -> None:
    versions = MIGRATIONS / "versions"
    for old in versions.glob("*.py"):
        old.unlink()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = alembic_config(f"sqlite:///{tmp}/empty.db")
        command.revision(cfg, message="initial schema", autogenerate=True, rev_id="0001")
    path = next(versions.glob("0001_*.py"))
    text = path.read_text()
    text = text.replace("import models.types\n", "import models.ledger\nimport models.types\n")
    text = re.sub(
        r"(def upgrade\(\) -> None:\n(?:.*\n)*?)(\n\ndef downgrade)",
        lambda m: m.group(1) + POST + m.group(2),
        text,
        count=1,
    )
    path.write_text(text)
    print(f"wrote {path.relative_to(Path.cwd())}")


if __name__ == "__main__":
    main()
