"""``python -m demo [--fast]``: run the demo and print its summary.

Exit codes as the ``copytrade`` command's: 0 the story ran and every check passed; 1 it ran and
found a problem; 2 bad input (nothing changed); 3 something it needs could not be reached.
"""

from __future__ import annotations

import argparse
import sys

from rich.console import Console

from copytrade.domain.errors import RuleViolation

EXIT_OK, EXIT_PROBLEM, EXIT_BAD_INPUT, EXIT_UNAVAILABLE = 0, 1, 2, 3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m demo",
        description="Run the demo: leaders apply, followers copy real trades on the paper "
        "exchange, the ledger is validated and settled, metrics build, and a summary is printed "
        "(<COPYTRADE_HOME>/demo.db, recreated).",
    )
    parser.add_argument(
        "--fast", action="store_true", help="a small slice (a few dozen fills, few followers)"
    )
    args = parser.parse_args(argv)
    console, errors = Console(), Console(stderr=True)
    from demo.story import run_demo

    try:
        result = run_demo(console=console, fast=args.fast)
    except (RuleViolation, ValueError) as exc:
        errors.print(f"[bold red]refused:[/] {exc}")
        return EXIT_BAD_INPUT
    except OSError as exc:
        errors.print(f"[bold red]unavailable:[/] {exc}")
        return EXIT_UNAVAILABLE
    return EXIT_OK if result.ok else EXIT_PROBLEM


if __name__ == "__main__":
    sys.exit(main())
