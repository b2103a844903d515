"""Weekly and event settlement of profit shares and fee rebates (R-SET-*, R-FEE-3/4, R-LED-7)."""

from copytrade.settlement.cycles import CycleSpec, event_cycle, parse_week, weekly_cycle
from copytrade.settlement.decide import CopyFacts, ShareDecision, decide_share
from copytrade.settlement.gate import Gate, GateResult, ledger_integrity_gate
from copytrade.settlement.marks import (
    LeaderFillsUnrealised,
    MarkPrices,
    PortfolioUnrealised,
    RecordedMarks,
    SnapshotMarks,
    StaticMarks,
    StaticPortfolioUnrealised,
)
from copytrade.settlement.report import RunReport
from copytrade.settlement.service import BatchEvent, SettlementBlocked, SettlementService

__all__ = [
    "BatchEvent",
    "CopyFacts",
    "CycleSpec",
    "Gate",
    "GateResult",
    "LeaderFillsUnrealised",
    "MarkPrices",
    "PortfolioUnrealised",
    "RecordedMarks",
    "RunReport",
    "SettlementBlocked",
    "SettlementService",
    "ShareDecision",
    "SnapshotMarks",
    "StaticMarks",
    "StaticPortfolioUnrealised",
    "decide_share",
    "event_cycle",
    "ledger_integrity_gate",
    "parse_week",
    "weekly_cycle",
]
