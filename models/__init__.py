"""SQLAlchemy 2 schema of the ledger and platform tables; import this package to register them all."""

from models.base import Base
from models.history import LeaderHistoryImport
from models.ledger import (
    LedgerAccount,
    LedgerAnchor,
    LedgerBalanceStripe,
    LedgerChainHead,
    LedgerPosting,
    LedgerTransfer,
)
from models.market import MarkPrice
from models.platform import (
    AuditEntry,
    CapacityRequest,
    Copy,
    ExchangeAccount,
    LeaderLeverageViolation,
    LeadPortfolio,
    Person,
)
from models.settlement import CopySettlementState, SettlementCycle, SettlementPayout
from models.trading import (
    CopyPosition,
    CopyStopEvent,
    FollowerFill,
    FollowerOrder,
    FollowerOrderIntent,
    LeaderFill,
    LeaderWatermark,
    QuarantinedEvent,
)
from models.validation import LedgerChainVerification

__all__ = [
    "AuditEntry",
    "Base",
    "CapacityRequest",
    "Copy",
    "CopyPosition",
    "CopySettlementState",
    "CopyStopEvent",
    "ExchangeAccount",
    "FollowerFill",
    "FollowerOrder",
    "FollowerOrderIntent",
    "LeadPortfolio",
    "LeaderFill",
    "LeaderHistoryImport",
    "LeaderLeverageViolation",
    "LeaderWatermark",
    "LedgerAccount",
    "LedgerAnchor",
    "LedgerBalanceStripe",
    "LedgerChainVerification",
    "LedgerChainHead",
    "LedgerPosting",
    "LedgerTransfer",
    "MarkPrice",
    "Person",
    "QuarantinedEvent",
    "SettlementCycle",
    "SettlementPayout",
]
