"""SQLAlchemy 2 schema of the ledger and platform tables; import this package to register them all."""

from models.base import Base
from models.ledger import LedgerAccount, LedgerChainHead, LedgerPosting, LedgerTransfer
from models.platform import (
    AuditEntry,
    CapacityRequest,
    Copy,
    ExchangeAccount,
    LeadPortfolio,
    Person,
)
from models.settlement import CopySettlementState, SettlementCycle, SettlementPayout
from models.trading import (
    FollowerFill,
    FollowerOrder,
    FollowerOrderIntent,
    LeaderFill,
    QuarantinedEvent,
)
from models.validation import LedgerChainVerification

__all__ = [
    "AuditEntry",
    "Base",
    "CapacityRequest",
    "Copy",
    "CopySettlementState",
    "ExchangeAccount",
    "FollowerFill",
    "FollowerOrder",
    "FollowerOrderIntent",
    "LeadPortfolio",
    "LeaderFill",
    "LedgerAccount",
    "LedgerChainVerification",
    "LedgerChainHead",
    "LedgerPosting",
    "LedgerTransfer",
    "Person",
    "QuarantinedEvent",
    "SettlementCycle",
    "SettlementPayout",
]
