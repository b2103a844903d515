"""The paper exchange's admin token: configured, or generated at start and kept in a private file.

There is no well-known default: a server started without ``COPYTRADE_PAPER_ADMIN_TOKEN`` makes a
random token, writes it to ``<home>/paper-admin-token`` (mode 0600) and prints it once; the admin
commands on the same machine read it from there.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from copytrade.config import Settings


class AdminTokenMissing(RuntimeError):
    """No token is configured and no server has written one."""


def configured(settings: Settings) -> str | None:
    token = settings.paper_admin_token
    return token.get_secret_value() if token is not None and token.get_secret_value() else None


def generate(path: Path) -> str:
    """Write a fresh random token to ``path`` (created 0600, never readable by others)."""
    token = secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)  # a new file gets the mode below; an old one might not have it
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    return token


def resolve(settings: Settings) -> str:
    """Return the token a client sends: the configured one, else the one the server wrote."""
    token = configured(settings)
    if token:
        return token
    path = settings.paper_admin_token_file
    try:
        token = path.read_text().strip()
    except FileNotFoundError:
        token = ""
    if not token:
        raise AdminTokenMissing(
            f"paper admin token: COPYTRADE_PAPER_ADMIN_TOKEN is not set and {path} does not "
            "exist (start `copytrade paper serve` on this machine, or set the token)"
        )
    return token
