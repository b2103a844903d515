"""SQLAlchemy 2 schema of the ledger and platform tables; import this package to register them all."""

from models.base import Base
from models.ledger import LedgerAccount, LedgerChainHead, LedgerPosting, LedgerTransfer
from models.market import MarkPrice
from models.platform import (
    AuditEntry,
    CapacityRequest,
    Copy,
    ExchangeAccount,
    LeadPortfolio,
    Person,
)
from models.settlement import SettlementCycle, SettlementPayout
from models.trading import (
    FollowerFill,
    FollowerOrder,
    FollowerOrderIntent,
    LeaderFill,
    QuarantinedEvent,
)

__all__ = [
    "AuditEntry",
    "Base",
    "CapacityRequest",
    "Copy",
    "ExchangeAccount",
    "FollowerFill",
    "FollowerOrder",
    "FollowerOrderIntent",
    "LeadPortfolio",
    "LeaderFill",
    "LedgerAccount",
    "LedgerChainHead",
    "LedgerPosting",
    "LedgerTransfer",
    "MarkPrice",
    "Person",
    "QuarantinedEvent",
    "SettlementCycle",
    "SettlementPayout",
]
