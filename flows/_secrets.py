"""Exchange secrets from Prefect Secret blocks: ``credentials_ref = prefect:<block name>``."""

from __future__ import annotations


def prefect_secret(ref: str) -> str | None:
    """Return the secret of a ``prefect:<block>`` reference (other schemes resolve in copytrade)."""
    if not ref.startswith("prefect:"):
        return None
    from prefect.blocks.system import Secret

    return Secret.load(ref.split(":", 1)[1]).get()
