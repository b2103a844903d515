"""The validation gate in front of every payout (R-LED-7).

Settlement asks its gate before paying anything in a run. The production gate runs the
``ledger_integrity`` checkpoint (GX suites plus the recomputed hash chain); a failure blocks every
payout of the run's cycles and is recorded with the failed expectations. Settlement depends on
validation, never the reverse: the gate reads a ``ValidationReport`` (``passed``,
``failure_lines()``) and validation knows nothing of gates.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class GateResult:
    """Whether payouts may proceed, and if not, which checks failed (rule id and name)."""

    passed: bool
    failures: tuple[str, ...] = ()
    report: Any = field(default=None, compare=False)  # the validation report, for artifacts

    @property
    def reason(self) -> str:
        if self.passed:
            return ""
        return "ledger validation failed: " + "; ".join(self.failures or ("no detail",))


Gate = Callable[[], GateResult]


def ledger_integrity_gate(url: str, *, data_docs: bool = False) -> Gate:
    """Return a gate that runs the ``ledger_integrity`` checkpoint on the ledger at ``url``."""

    def run() -> GateResult:
        from copytrade.validation import validate_ledger  # GX is heavy: import on first use

        return gate_result(validate_ledger(url, data_docs=data_docs))

    return run


def gate_result(report: Any) -> GateResult:
    """Return the gate's answer for a ``ValidationReport``."""
    return GateResult(passed=report.passed, failures=report.failure_lines(), report=report)


def gate_from_report(report: Any) -> Gate:
    """Return a gate answering with a validation that already ran (the flow validates first)."""
    return lambda: gate_result(report)
