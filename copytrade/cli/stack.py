"""`copytrade up` / `copytrade down`: the whole platform on this machine, as a Prefect deployment."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import typer

from copytrade.cli.common import EXIT_UNAVAILABLE, Table, console, err_console, finite, refuse

T = TypeVar("T")


def _step(title: str, action: Callable[[], T], describe: Callable[[T], str] = str) -> T:
    """Run one step under a spinner and print its outcome on one line."""
    with console.status(f"{title}…"):
        result = action()
    console.print(f"[green]✓[/] {title}: {describe(result)}")
    return result


def up(
    port: int = typer.Option(
        None,
        "--port",
        min=1,
        max=65535,
        help="Port of the Prefect server and UI (default: 4200, or the one of the last up).",
    ),
    paper_port: int = typer.Option(
        None,
        "--paper-port",
        min=1,
        max=65535,
        help="Port of the paper exchange (default: COPYTRADE_PAPER_PORT, 8765).",
    ),
    paper: bool = typer.Option(True, "--paper/--no-paper", help="Start the paper exchange."),
    leader_bot: bool = typer.Option(
        True,
        "--leader-bot/--no-leader-bot",
        help="Start a leader bot replaying the real lead trader on the paper exchange.",
    ),
    redeploy: bool = typer.Option(
        False, "--redeploy", help="Deploy even if prefect.yaml and the flows are unchanged."
    ),
    engine: bool = typer.Option(
        True, "--engine/--no-engine", help="Start a run of the copy-engine deployment(s)."
    ),
    shards: int = typer.Option(
        None,
        "--shards",
        min=1,
        max=64,
        help="Copy engine shards: N > 1 deploys copy-engine-0 … copy-engine-N-1, each one run at "
        "a time (needs a PostgreSQL ledger); 1 keeps the single copy-engine (default: 1, or the running stack's).",
    ),
    seed: bool = typer.Option(
        True,
        "--seed/--no-seed",
        help="Link the leader bots as a futures and a spot lead portfolio and start their "
        "followers (once).",
    ),
    replay_limit: int = typer.Option(
        None,
        "--replay-limit",
        min=1,
        help="The replay leader sends only its first N fills, then holds its positions, idle "
        "(default: all, one every 2 s at most).",
    ),
) -> None:
    """Start the local stack: ledger, Prefect server, worker, paper exchange, deployments, bot.

    Idempotent: what already runs is left alone. Logs go to var/run/*.log; `copytrade down` stops
    what this started. Exit 3 if a part cannot start (busy port, unreachable database), 1 if
    deploying failed.
    """
    from sqlalchemy.engine import make_url

    from copytrade.config import get_settings
    from copytrade.ops import stack as ops

    if shards and shards > 1 and make_url(get_settings().ledger_url).get_backend_name() == "sqlite":
        raise refuse(
            f"--shards {shards}: a SQLite ledger has one writer, so one engine; shards need a "
            "PostgreSQL ledger (COPYTRADE_DATABASE_URL)"
        )
    try:
        stack = ops.Stack.from_settings(prefect_port=port, paper_port=paper_port, shards=shards)
        _step(
            "ledger database",
            lambda: ops.migrate_ledger(stack),
            lambda r: f"revision {r} ({stack.ledger_display})",
        )
        _step(
            "Prefect server",
            lambda: ops.start_prefect_server(stack),
            lambda r: f"{r} at {stack.prefect_ui_url}",
        )
        _step("work pool", lambda: ops.ensure_work_pool(stack), lambda r: f"{ops.WORK_POOL} {r}")
        _step("worker", lambda: ops.start_worker(stack))
        if paper:
            _step(
                "paper exchange",
                lambda: ops.start_paper_exchange(stack),
                lambda r: f"{r} at {stack.paper_url}",
            )
        variables = _step(
            "Prefect variables",
            lambda: ops.set_variables(stack),
            lambda r: ", ".join(f"{k}={v}" for k, v in r.items()) or "none needed",
        )
        deployed, _ = _step(
            "deployments",
            lambda: ops.deploy_all(stack, variables, force=redeploy),
            lambda r: ("deployed " if r[1] else "up to date ") + ", ".join(r[0]),
        )
        if engine:
            _step("copy engine", lambda: ops.start_engine_run(stack), _engine_outcome)
        if paper and leader_bot:
            _step("leader bot", lambda: ops.start_leader_bot(stack, replay_limit))
            _step("spot leader bot", lambda: ops.start_spot_leader_bot(stack))
            if seed and ops.leader_bot_available():
                from copytrade.ops.seed import seed as seed_platform

                _step(
                    "platform seed",
                    lambda: seed_platform(
                        stack,
                        ops.leader_bot_account(stack),
                        ops.leader_bot_account(stack, ops.SPOT_LEADER_BOT, "spot"),
                    ),
                )
    except ops.StackError as exc:
        err_console.print(f"[bold red]copytrade up failed:[/] {exc}")
        err_console.print("What did start keeps running; `copytrade down` stops it.")
        raise typer.Exit(exc.exit_code) from None
    except Exception as exc:  # the database or an HTTP endpoint was unreachable
        err_console.print(f"[bold red]copytrade up failed:[/] {exc.__class__.__name__}: {exc}")
        err_console.print("What did start keeps running; `copytrade down` stops it.")
        raise typer.Exit(EXIT_UNAVAILABLE) from None
    _where_to_look(stack, deployed)


def _engine_outcome(result: tuple[str, bool]) -> str:
    name, started = result
    return f"flow run {name} " + ("started" if started else "already active")


def _where_to_look(stack, deployed: list[str]) -> None:
    table = Table(show_header=False, box=None, padding=(0, 2))
    table.add_row("Prefect UI", stack.prefect_ui_url)
    table.add_row("Deployments", f"{stack.prefect_ui_url}/deployments ({len(deployed)})")
    table.add_row("Artifacts", f"{stack.prefect_ui_url}/artifacts")
    table.add_row("Paper exchange", stack.paper_url)
    table.add_row("Ledger", stack.ledger_display)
    table.add_row("Logs", f"{stack.run_dir}/*.log")
    table.add_row("Stop", "copytrade down")
    console.print(table)


def down(
    timeout: float = typer.Option(
        15.0, help="Seconds to wait for each process before SIGKILL.", callback=finite(0)
    ),
) -> None:
    """Stop what `copytrade up` started (and only that): runs are cancelled, processes stopped.

    Exit 0 also when nothing was running.
    """
    from copytrade.ops import stack as ops

    stack = ops.Stack.from_settings()
    with console.status("cancelling flow runs…"):
        try:
            cancelled = ops.cancel_runs(stack)
        except Exception as exc:  # the server is going away anyway; stopping must not fail on it
            err_console.print(f"[yellow]could not cancel flow runs:[/] {exc}")
            cancelled = []
    for run in cancelled:
        console.print(f"[green]✓[/] cancelled flow run {run['name']}")
    with console.status("stopping processes…"):
        stopped = ops.stop_all(stack, timeout=timeout)
    if not stopped:
        console.print("nothing was running")
    for name in stopped:
        console.print(f"[green]✓[/] stopped {name}")
