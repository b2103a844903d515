"""Faults on demand, per account or global, set through the admin endpoint.

Request faults act before the request is executed (``rate_limit`` 429, ``ban`` 418,
``error_before`` 5xx, ``slow``) or after it was executed, when the client cannot know the
outcome (``error_after`` 5xx, ``timeout_after``: the answer comes after ``delay`` seconds, later
than the client's timeout). Stream faults act on the user-data stream (``drop_stream`` closes
the websockets, ``duplicate_events`` sends events twice, ``reorder_events`` swaps neighbours).
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass

BEFORE = frozenset({"rate_limit", "ban", "error_before", "slow"})
AFTER = frozenset({"error_after", "timeout_after"})
STREAM = frozenset({"duplicate_events", "reorder_events"})
IMMEDIATE = frozenset({"drop_stream"})
KINDS = BEFORE | AFTER | STREAM | IMMEDIATE


@dataclass(slots=True)
class Fault:
    """One armed fault; ``remaining`` None means until cleared."""

    fault_id: int
    kind: str
    account_id: str | None = None
    remaining: int | None = 1
    paths: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()
    retry_after: int = 1
    delay: float = 0.0
    status: int | None = None
    body: str = "text"  # text: a plain 5xx page; binance: {"code": -1007, …} (execution unknown)

    def matches(self, account_id: str | None, path: str, method: str) -> bool:
        if self.account_id is not None and self.account_id != account_id:
            return False
        if self.paths and not any(p in path for p in self.paths):
            return False
        return not (self.methods and method not in self.methods)

    def as_dict(self) -> dict:
        data = asdict(self)
        data["paths"], data["methods"] = list(self.paths), list(self.methods)
        return data


class Faults:
    """The armed faults of one paper exchange."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._ids = itertools.count(1)

    def __bool__(self) -> bool:
        return bool(self._faults)

    def add(self, spec: dict) -> Fault:
        """Arm a fault from its admin description; refuse unknown kinds and bad values."""
        kind = spec.get("kind")
        if kind not in KINDS:
            raise ValueError(f"kind: {kind!r} is not one of {sorted(KINDS)}")
        remaining = spec.get("count", 1)
        if remaining is not None and (
            not isinstance(remaining, int) or isinstance(remaining, bool) or remaining < 1
        ):
            raise ValueError(
                f"count: {remaining!r} must be a positive integer or null (until cleared)"
            )
        methods = tuple(m.upper() for m in _strings(spec, "methods"))
        default_delay = 2.0 if kind in ("slow", "timeout_after") else 0.0
        delay = _number(spec, "delay", default_delay, 0, 600, "seconds")
        retry_after = _number(spec, "retry_after", 1, 0, 86_400, "seconds", integer=True)
        status = spec.get("status")
        if status is not None and not (
            isinstance(status, int) and not isinstance(status, bool) and 500 <= status <= 599
        ):
            raise ValueError(f"status: {status!r} must be a 5xx status")
        body = spec.get("body", "text")
        if body not in ("text", "binance"):
            raise ValueError(f"body: {body!r} is not 'text' or 'binance'")
        account_id = spec.get("account_id")
        if account_id is not None and not isinstance(account_id, str):
            raise ValueError(f"account_id: {account_id!r} must be a string")
        fault = Fault(
            fault_id=next(self._ids),
            kind=kind,
            account_id=account_id,
            remaining=remaining,
            paths=_strings(spec, "paths"),
            methods=methods,
            retry_after=int(retry_after),
            delay=float(delay),
            status=status,
            body=body,
        )
        if kind not in IMMEDIATE:
            self._faults.append(fault)
        return fault

    def clear(self, account_id: str | None = None) -> int:
        """Disarm every fault (or every fault of one account); return how many."""
        before = len(self._faults)
        if account_id is None:
            self._faults.clear()
        else:
            self._faults = [f for f in self._faults if f.account_id != account_id]
        return before - len(self._faults)

    def list(self) -> list[Fault]:
        return list(self._faults)

    def take(
        self, kinds: frozenset[str], account_id: str | None, path: str, method: str
    ) -> Fault | None:
        """Return (and count down) the first armed fault of ``kinds`` matching this request."""
        for fault in self._faults:
            if fault.kind in kinds and fault.matches(account_id, path, method):
                if fault.remaining is not None:
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                return fault
        return None


def _strings(spec: dict, name: str) -> tuple[str, ...]:
    values = spec.get(name) or ()
    if not isinstance(values, list | tuple) or not all(isinstance(v, str) for v in values):
        raise ValueError(f"{name}: {values!r} must be a list of strings")
    return tuple(values)


def _number(
    spec: dict,
    name: str,
    default: float,
    low: float,
    high: float,
    unit: str,
    *,
    integer: bool = False,
) -> float:
    value = spec.get(name, default)
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not low <= value <= high:
        kind = "an integer" if integer else "a number"
        raise ValueError(f"{name}: {value!r} must be {kind} between {low} and {high} {unit}")
    return value
