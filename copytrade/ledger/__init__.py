"""Double-entry posting on SQLAlchemy sessions: balances, idempotency keys, the hash chain (R-LED, R-X-4)."""

from copytrade.ledger.accounts import account_policy
from copytrade.ledger.errors import (
    IdempotencyConflict,
    LedgerError,
    NegativeBalance,
    UnbalancedTransfer,
)
from copytrade.ledger.service import Balance, ChainReport, Ledger, Leg, PostResult, TransferSpec

__all__ = [
    "Balance",
    "ChainReport",
    "IdempotencyConflict",
    "Leg",
    "Ledger",
    "LedgerError",
    "NegativeBalance",
    "PostResult",
    "TransferSpec",
    "UnbalancedTransfer",
    "account_policy",
]
