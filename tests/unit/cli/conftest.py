"""Shared set-up of the CLI tests."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch):
    """Render tables at full width (the runner is not a terminal, rich would truncate at 80)."""
    from copytrade.cli import common

    monkeypatch.setattr(common.console, "width", 240)
    monkeypatch.setattr(common.err_console, "width", 240)
