"""The local stack behind `copytrade up`: Prefect server, a process worker, the paper exchange,
leader bots and the deployments of prefect.yaml. `copytrade down` stops what `up` started.

Every process runs in a session of its own with its output in ``<home>/run/<name>.log``; what was
started (pid and start time) is kept in ``<home>/run/stack.json`` so that ``down`` stops exactly
that, and nothing else. Each step is idempotent: a second ``up`` finds the running processes and
leaves them alone, a second ``down`` finds nothing to stop.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from copytrade.config import PROJECT_ROOT, get_settings
from copytrade.ops.prefect_api import EXECUTING_STATES, PrefectAPI
from copytrade.ops.processes import ProcessRecord, is_running, spawn, terminate

WORK_POOL = "copytrade-process"
WORKER_NAME = "copytrade-local-worker"
ENGINE_DEPLOYMENT = "copy-engine"
LEADER_BOT = "leader-bot"
# A Prefect variable holding the digest of what was last deployed (see deploy_fingerprint).
FINGERPRINT = "copytrade_deploy_fingerprint"
LEADER_BOT_DEPOSIT = "20000"  # USDT in the bot's futures wallet, as `paper leader-bot` deposits
# The replay waits at most this long per fill (sharing the clock with the spot bot), so the
# futures leader trades for several minutes after `up` instead of replaying everything at once.
LEADER_BOT_PACE = "1"
# A spot leader too: a moving-average cross on the real ETH/BTC candles (ETHUSDT on the paper
# exchange), one candle per SPOT_BOT_PACE seconds at most, so it keeps trading and the marks keep
# moving when the replay is idle or over.
SPOT_LEADER_BOT = "spot-leader-bot"
SPOT_BOT_CANDLES = "market/spot/ETH_BTC-5m.csv"
SPOT_BOT_SYMBOL = "ETHUSDT"
SPOT_BOT_ARGS = ("--fast", "6", "--slow", "24", "--notional", "2000", "--pace", "2")
DEFAULT_PREFECT_PORT = 4200
WORKER_POLL_SECONDS = "2"


class StackError(RuntimeError):
    """A step of the stack could not be completed; the message says what and where to look.

    ``exit_code`` follows the CLI's convention: 3 a part is unavailable (busy port, a process
    that would not start), 1 the work ran and found a problem (deploying failed).
    """

    def __init__(self, message: str, exit_code: int = 3) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class Stack:
    """Where the stack keeps its state, and how its parts reach each other."""

    home: Path
    project_dir: Path = PROJECT_ROOT
    prefect_port: int = DEFAULT_PREFECT_PORT
    paper_port: int = field(default_factory=lambda: get_settings().paper_port)
    ledger_url: str = field(default_factory=lambda: get_settings().ledger_url)
    data_dir: Path = field(default_factory=lambda: get_settings().data_dir)
    shards: int = 1  # copy engine shards: `up --shards N`

    @classmethod
    def from_settings(
        cls,
        prefect_port: int | None = None,
        paper_port: int | None = None,
        shards: int | None = None,
    ) -> Stack:
        """Return the stack of this environment (COPYTRADE_HOME), ports and engine shards from
        options or state."""
        settings = get_settings()
        # A worker host may run the flows of a checkout elsewhere; the pull step of prefect.yaml
        # reads the same variable.
        project = Path(os.environ.get("COPYTRADE_PROJECT_DIR") or PROJECT_ROOT)
        stack = cls(home=settings.home.resolve(), project_dir=project.resolve())
        saved = stack.read_state()
        stack.prefect_port = prefect_port or saved.get("prefect_port") or DEFAULT_PREFECT_PORT
        stack.paper_port = paper_port or saved.get("paper_port") or settings.paper_port
        stack.shards = shards or saved.get("shards") or 1
        stack.check_ports(saved)
        return stack

    def check_ports(self, saved: dict[str, Any]) -> None:
        """Refuse other ports than those of the running stack: its processes would be orphaned."""
        running = [name for name in self.processes() if self.running(name)]
        if not running:
            return
        for option, key, wanted, what in (
            ("--port", "prefect_port", self.prefect_port, "port"),
            ("--paper-port", "paper_port", self.paper_port, "port"),
            # another layout's engines would be refused by the running shards' layout lock
            ("--shards", "shards", self.shards, "shard count"),
        ):
            if saved.get(key) not in (None, wanted):
                raise StackError(
                    f"{option}: {wanted} differs from the running stack's {what} {saved[key]} "
                    f"({', '.join(running)} running); run `copytrade down` first",
                    exit_code=2,
                )

    # -- where things are ----------------------------------------------------------------------

    @property
    def run_dir(self) -> Path:
        return self.home / "run"

    @property
    def state_file(self) -> Path:
        return self.run_dir / "stack.json"

    @property
    def prefect_home(self) -> Path:
        return self.home / "prefect"

    @property
    def prefect_api_url(self) -> str:
        return f"http://127.0.0.1:{self.prefect_port}/api"

    @property
    def prefect_ui_url(self) -> str:
        return f"http://127.0.0.1:{self.prefect_port}"

    @property
    def paper_url(self) -> str:
        return f"http://127.0.0.1:{self.paper_port}"

    @property
    def ledger_display(self) -> str:
        """The ledger URL with any password hidden (safe to print)."""
        return make_url(self.ledger_url).render_as_string(hide_password=True)

    def api(self) -> PrefectAPI:
        return PrefectAPI(self.prefect_api_url)

    def env(self) -> dict[str, str]:
        """Return the environment of every process of the stack (flow runs inherit the worker's)."""
        env = dict(os.environ)
        pythonpath = [str(self.project_dir)] + [
            p for p in env.get("PYTHONPATH", "").split(":") if p
        ]
        env.update(
            PYTHONPATH=":".join(dict.fromkeys(pythonpath)),
            PREFECT_API_URL=self.prefect_api_url,
            PREFECT_HOME=str(self.prefect_home),
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            PREFECT_LOGGING_EXTRA_LOGGERS="copytrade",
            COPYTRADE_HOME=str(self.home),
            COPYTRADE_PROJECT_DIR=str(self.project_dir),
            COPYTRADE_DATABASE_URL=self.ledger_url,
            COPYTRADE_DATA_DIR=str(Path(self.data_dir).resolve()),
            COPYTRADE_PAPER_HOST="127.0.0.1",
            COPYTRADE_PAPER_PORT=str(self.paper_port),
        )
        return env

    # -- state ---------------------------------------------------------------------------------

    def read_state(self) -> dict[str, Any]:
        try:
            return json.loads(self.state_file.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def processes(self) -> dict[str, ProcessRecord]:
        raw = self.read_state().get("processes", {})
        return {name: ProcessRecord.from_json(rec) for name, rec in raw.items()}

    def remember(self, record: ProcessRecord) -> None:
        state = self.read_state()
        state["prefect_port"] = self.prefect_port
        state["paper_port"] = self.paper_port
        state["shards"] = self.shards
        state.setdefault("processes", {})[record.name] = record.to_json()
        self._write_state(state)

    def forget(self) -> None:
        if self.state_file.exists():
            self.state_file.unlink()

    def _write_state(self, state: dict[str, Any]) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self.state_file)

    def running(self, name: str) -> ProcessRecord | None:
        record = self.processes().get(name)
        return record if record is not None and is_running(record) else None

    # -- commands ------------------------------------------------------------------------------

    def prefect_argv(self, *args: str) -> list[str]:
        return [bin_path("prefect"), *args]

    def copytrade_argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "copytrade", *args]

    def run(self, argv: Sequence[str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(argv),
            cwd=self.project_dir,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def start(
        self, name: str, argv: Sequence[str], env: dict[str, str] | None = None
    ) -> ProcessRecord:
        record = spawn(
            name,
            argv,
            cwd=self.project_dir,
            env={**self.env(), **(env or {})},
            log_dir=self.run_dir,
        )
        self.remember(record)
        return record


def bin_path(name: str) -> str:
    """Return the path of a console script installed beside this interpreter."""
    candidate = Path(sys.executable).with_name(name)
    return str(candidate) if candidate.exists() else name


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def log_tail(path: str | Path, lines: int = 15) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return ""


def wait_for(
    check: Callable[[], bool], timeout: float, what: str, record: ProcessRecord | None = None
) -> None:
    """Wait until ``check()`` holds; fail early, with the log's tail, if ``record`` dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if record is not None and not is_running(record):
            raise StackError(
                f"{what} exited during start-up; last lines of {record.log}:\n{log_tail(record.log)}"
            )
        time.sleep(0.5)
    where = f"; see {record.log}" if record else ""
    raise StackError(f"{what} did not become ready within {timeout:.0f} s{where}")


# -- the steps of `copytrade up` -----------------------------------------------------------------


def migrate_ledger(stack: Stack) -> str | None:
    """Bring the ledger database to the newest schema; return its revision."""
    from copytrade import migrate

    stack.home.mkdir(parents=True, exist_ok=True)
    return migrate.upgrade(stack.ledger_url)


def start_prefect_server(stack: Stack, timeout: float = 180) -> str:
    """Start Prefect's server (its database under <home>/prefect) unless one already answers."""
    with stack.api() as api:
        if stack.running("prefect-server") and api.healthy():
            return "running"
        if api.healthy():
            return "reused (not started by copytrade up; down leaves it alone)"
        if not port_free(stack.prefect_port):
            raise StackError(
                f"port {stack.prefect_port} is taken by something that is not a Prefect server "
                "(choose another with --port)"
            )
        stack.prefect_home.mkdir(parents=True, exist_ok=True)
        record = stack.start(
            "prefect-server",
            stack.prefect_argv(
                "server", "start", "--host", "127.0.0.1", "--port", str(stack.prefect_port)
            ),
        )
        wait_for(api.healthy, timeout, "Prefect server", record)
    return "started"


def ensure_work_pool(stack: Stack) -> str:
    """Create the process work pool of prefect.yaml if it does not exist."""
    with stack.api() as api:
        if api.work_pool(WORK_POOL) is not None:
            return "exists"
    result = stack.run(
        stack.prefect_argv("work-pool", "create", WORK_POOL, "--type", "process"), timeout=120
    )
    if result.returncode != 0:
        raise StackError(f"could not create work pool {WORK_POOL}:\n{result.stdout[-1500:]}")
    return "created"


def recover_stale_runs(stack: Stack) -> list[str]:
    """Mark runs of the pool that no worker executes any more as cancelled; return their names.

    Called only when no worker of ours was running: a run still "Running" then is a leftover of a
    stack that was killed, and it would hold the copy engine's one concurrency slot forever.
    """
    with stack.api() as api:
        stale = api.flow_runs(work_pool=WORK_POOL, states=EXECUTING_STATES)
        for run in stale:
            api.mark_cancelled(
                run["id"], "the local stack stopped while this run executed (found by copytrade up)"
            )
    return [run["name"] for run in stale]


def start_worker(stack: Stack, timeout: float = 120) -> str:
    """Start a process worker on the pool and wait until the server sees it."""
    if stack.running("worker"):
        return "running"
    recovered = recover_stale_runs(stack)
    record = stack.start(
        "worker",
        stack.prefect_argv(
            "worker", "start", "--pool", WORK_POOL, "--type", "process", "--name", WORKER_NAME
        ),
        # Poll for scheduled runs every WORKER_POLL_SECONDS (Prefect's default 10 s would eat a
        # sixth of the minute an event settlement has, R-SET-5).
        env={"PREFECT_WORKER_QUERY_SECONDS": WORKER_POLL_SECONDS},
    )
    with stack.api() as api:
        wait_for(
            lambda: (api.work_pool(WORK_POOL) or {}).get("status") == "READY",
            timeout,
            "Prefect worker",
            record,
        )
    return "started" + (f" (cancelled stale runs: {', '.join(recovered)})" if recovered else "")


def start_paper_exchange(stack: Stack, timeout: float = 120) -> str:
    """Start the paper exchange (`copytrade paper serve`) unless it already answers."""
    import httpx

    def ping() -> bool:
        try:
            return httpx.get(f"{stack.paper_url}/api/v3/ping", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    if stack.running("paper-exchange") and ping():
        return "running"
    if ping():
        return "reused (not started by copytrade up; down leaves it alone)"
    if not port_free(stack.paper_port):
        raise StackError(
            f"port {stack.paper_port} is taken by something that is not the paper exchange "
            "(choose another with --paper-port)"
        )
    record = stack.start(
        "paper-exchange",
        stack.copytrade_argv("paper", "serve", "--port", str(stack.paper_port)),
    )
    wait_for(ping, timeout, "paper exchange", record)
    return "started"


def leader_bot_available() -> bool:
    """Return True if this version has the leader bot `copytrade paper leader-bot` runs.

    Asked of the module, not of the CLI: ops sits below the command line and never imports it.
    """
    import importlib.util

    return importlib.util.find_spec("copytrade.paper.leader_bot") is not None


def leader_bot_account(stack: Stack, name: str = LEADER_BOT, market: str = "futures") -> Path:
    """Return the credentials file of the leader bot's paper account, creating the account if the
    paper exchange does not have it (it keeps accounts in memory, so after every restart).

    The key pair is generated once and kept under <home>/run (mode 0600), so a lead portfolio
    linked to it (``api_key_id`` = the key, ``credentials_ref`` = ``file:<name>.secret``) stays
    valid across restarts of the stack.
    """
    import secrets

    import httpx

    path = stack.run_dir / f"{name}.json"
    secret_path = stack.run_dir / f"{name}.secret"
    try:
        creds = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        creds = {"api_key": secrets.token_hex(32), "api_secret": secrets.token_hex(32)}
    from copytrade.paper.admin_token import resolve

    token = resolve(get_settings())
    with httpx.Client(
        base_url=stack.paper_url, headers={"X-Admin-Token": token}, timeout=10
    ) as admin:
        listed = admin.get("/admin/accounts")
        listed.raise_for_status()
        known = {a["name"]: a["account_id"] for a in listed.json()["accounts"]}
        if known.get(name) is None:
            created = admin.post(
                "/admin/accounts",
                json={
                    "name": name,
                    market: {"USDT": LEADER_BOT_DEPOSIT},
                    "api_key": creds["api_key"],
                    "api_secret": creds["api_secret"],
                },
            )
            if created.status_code >= 400:
                raise StackError(f"paper exchange refused the leader bot's account: {created.text}")
            known[name] = created.json()["account_id"]
    creds["account_id"] = known[name]
    stack.run_dir.mkdir(parents=True, exist_ok=True)
    for file, text in ((path, json.dumps(creds)), (secret_path, creds["api_secret"])):
        file.touch(mode=0o600, exist_ok=True)
        file.chmod(0o600)
        file.write_text(text)
    return path


def start_leader_bot(stack: Stack, limit: int | None = None) -> str:
    """Start a leader bot replaying the real lead trader's fills on the paper exchange (the first
    ``limit`` fills only, if given: then the leader holds what it holds and goes idle)."""
    argv = ["--strategy", "replay", "--pace", LEADER_BOT_PACE]
    if limit is not None:
        argv += ["--limit", str(limit)]
    return _start_bot(stack, LEADER_BOT, "futures", argv, "replay")


def start_spot_leader_bot(stack: Stack) -> str:
    """Start a spot leader bot: a moving-average cross on real candles (``SPOT_BOT_*``)."""
    argv = ["--strategy", "ma-cross", "--kind", "spot"]
    argv += ["--candles", str(stack.data_dir / SPOT_BOT_CANDLES), "--symbol", SPOT_BOT_SYMBOL]
    return _start_bot(
        stack, SPOT_LEADER_BOT, "spot", [*argv, *SPOT_BOT_ARGS], f"ma-cross {SPOT_BOT_SYMBOL}"
    )


def _start_bot(stack: Stack, name: str, market: str, argv: list[str], what: str) -> str:
    """Start `copytrade paper leader-bot ARGV` as ``name`` on its paper account, unless running."""
    if not leader_bot_available():
        return "skipped (`copytrade paper leader-bot` is not in this version)"
    if stack.running(name):
        return "running"
    credentials = leader_bot_account(stack, name, market)
    record = stack.start(
        name,
        stack.copytrade_argv(
            "paper",
            "leader-bot",
            *argv,
            "--url",
            stack.paper_url,
            "--credentials-file",
            str(credentials),
        ),
    )
    api_key = json.loads(credentials.read_text())["api_key"]
    return (
        f"started (pid {record.pid}, {what} {market}, api key {api_key[:12]}…, "
        f"credentials {credentials})"
    )


def stack_variables(stack: Stack) -> dict[str, Any]:
    """Return the Prefect variables prefect.yaml reads (``{{ prefect.variables.<name> }}``), with
    the local stack's values."""
    return {"copytrade_exchange": "paper"}


def set_variables(stack: Stack) -> dict[str, Any]:
    """Set the variables prefect.yaml needs, keeping any value an operator has already chosen."""
    values: dict[str, Any] = {}
    with stack.api() as api:
        for name, default in stack_variables(stack).items():
            current = api.variable(name)
            if current is None:
                api.set_variable(name, default)
                current = default
            values[name] = current
    return values


def deploy_fingerprint(stack: Stack, variables: dict[str, Any]) -> str:
    """Return a digest of what a deployment is made of: prefect.yaml, the flow files it names
    (their signatures are the parameter schemas), the variables it reads and Prefect's version.

    The flows' code is not part of a deployment (the pull step runs it from the project), so a
    change elsewhere in the project needs no new deployment.
    """
    import hashlib
    from importlib.metadata import version

    import yaml

    spec_path = stack.project_dir / "prefect.yaml"
    digest = hashlib.sha256(spec_path.read_bytes())
    spec = yaml.safe_load(spec_path.read_text())
    for entry in sorted({d["entrypoint"].split(":")[0] for d in spec.get("deployments", [])}):
        path = stack.project_dir / entry
        digest.update(entry.encode() + (path.read_bytes() if path.exists() else b"<missing>"))
    digest.update(json.dumps(variables, sort_keys=True).encode())
    digest.update(version("prefect").encode())
    digest.update(f"shards={stack.shards}".encode())
    return digest.hexdigest()


def deploy_all(
    stack: Stack, variables: dict[str, Any] | None = None, force: bool = False
) -> tuple[list[str], bool]:
    """Run `prefect deploy --all` from the project root unless the server already has exactly
    these deployments; return the deployments of the pool and whether it deployed."""
    variables = set_variables(stack) if variables is None else variables
    fingerprint = deploy_fingerprint(stack, variables)
    with stack.api() as api:
        current = sorted(
            d["name"] for d in api.deployments() if d.get("work_pool_name") == WORK_POOL
        )
        expected = deployment_names(stack)
        if not force and set(expected) <= set(current) and api.variable(FINGERPRINT) == fingerprint:
            return current, False
    argv = ["--no-prompt", "deploy", "--all"]
    if stack.shards > 1:
        argv += ["--prefect-file", str(prefect_file(stack))]
    result = stack.run(stack.prefect_argv(*argv), timeout=600)
    if result.returncode != 0:
        raise StackError(
            "prefect deploy failed:\n" + (result.stdout[-2500:] + "\n" + result.stderr[-1500:]),
            exit_code=1,
        )
    with stack.api() as api:
        api.set_variable(FINGERPRINT, fingerprint)
        current = sorted(
            d["name"] for d in api.deployments() if d.get("work_pool_name") == WORK_POOL
        )
    return current, True


def engine_deployments(shards: int) -> list[str]:
    """The copy engine's deployments: ``copy-engine`` alone, or one per shard."""
    if shards == 1:
        return [ENGINE_DEPLOYMENT]
    return [f"{ENGINE_DEPLOYMENT}-{i}" for i in range(shards)]


def sharded_spec(spec: dict[str, Any], shards: int) -> dict[str, Any]:
    """Return prefect.yaml's content with ``copy-engine`` replaced by ``copy-engine-0`` …
    ``copy-engine-N-1``: the same entry, parameters ``shard: I, shards: N`` (concurrency 1 each)."""
    import copy

    from copytrade.engine.shards import Shard

    Shard(0, shards)  # refuses a count out of range, naming the rule
    out = copy.deepcopy(spec)
    if shards == 1:
        return out
    deployments = []
    for entry in out.get("deployments", []):
        if entry["name"] != ENGINE_DEPLOYMENT:
            deployments.append(entry)
            continue
        for i, name in enumerate(engine_deployments(shards)):
            one = copy.deepcopy(entry)
            one["name"] = name
            one["description"] = f"{entry['description']} Shard {i} of {shards}."
            one["parameters"] = {**entry.get("parameters", {}), "shard": i, "shards": shards}
            deployments.append(one)
    out["deployments"] = deployments
    return out


def prefect_file(stack: Stack) -> Path:
    """The prefect.yaml to deploy: the project's, or for N shards a copy written under run/."""
    import yaml

    source = stack.project_dir / "prefect.yaml"
    if stack.shards == 1:
        return source
    spec = sharded_spec(yaml.safe_load(source.read_text()), stack.shards)
    target = stack.run_dir / f"prefect.shards-{stack.shards}.yaml"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(yaml.safe_dump(spec, sort_keys=False))
    return target


def deployment_names(stack: Stack) -> list[str]:
    import yaml

    spec = sharded_spec(
        yaml.safe_load((stack.project_dir / "prefect.yaml").read_text()), stack.shards
    )
    return sorted(d["name"] for d in spec.get("deployments", []))


def start_engine_run(stack: Stack) -> tuple[str, bool]:
    """Start a run of each copy-engine deployment unless one is active; return (names, started)."""
    names, started = [], False
    with stack.api() as api:
        for deployment in engine_deployments(stack.shards):
            found = api.deployments([deployment])
            if not found:
                raise StackError(f"deployment {deployment} not found (did deploy succeed?)")
            deployment_id = found[0]["id"]
            active = api.flow_runs(
                deployment_id=deployment_id, states=[*EXECUTING_STATES, "SCHEDULED"]
            )
            if active:
                names.append(active[0]["name"])
                continue
            run = api.create_flow_run(deployment_id)
            names.append(run["name"])
            started = True
    return ", ".join(names), started


# -- `copytrade down` ----------------------------------------------------------------------------


def cancel_runs(stack: Stack, timeout: float = 30) -> list[dict[str, Any]]:
    """Cancel the executing runs of the pool through the API; return them (id, name, …).

    Only when our worker runs and the server answers: the worker then stops each run's process
    and records it as Cancelled, so the UI shows what happened and the copy engine's concurrency
    slot is free for the next `up`.
    """
    if not stack.running("worker"):
        return []
    with stack.api() as api:
        if not api.healthy():
            return []
        runs = api.flow_runs(work_pool=WORK_POOL, states=["PENDING", "RUNNING"])
        for run in runs:
            api.cancel_flow_run(run["id"], "stopped by copytrade down")
        left = api.wait_for_runs_to_finish([r["id"] for r in runs], timeout)
        for run_id in left:
            api.mark_cancelled(run_id, "stopped by copytrade down (the worker did not confirm)")
    return runs


def stop_all(stack: Stack, timeout: float = 15) -> list[str]:
    """Stop every process `up` started, newest first, with its descendants; return their names."""
    records = list(stack.processes().values())
    stopped = terminate(reversed(records), timeout=timeout)
    stack.forget()
    return stopped
